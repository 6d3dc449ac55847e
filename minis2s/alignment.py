"""What each output character looked at: the attention weights behind a translation.

For a model whose ``decode_step`` returns ``{"attention": (B, Te)}`` in its ``extra``
(:mod:`minis2s.models.luong`), :func:`attention_weights` replays the decoder over a
translation it produced, feeding the start token and then its own characters, and keeps
each step's weights: row ``t`` is what output character ``t`` was computed from, the same
numbers greedy or beam search saw when they chose it. ``minis2s translate --attention-plot``
draws them (:func:`minis2s.plot.plot_attention`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .bucketing import encoder_pad_width
from .data import START
from .models import Model
from .translate import model_of


class NoAttention(ValueError):
    """The model computes no attention weights (the seed)."""


def has_attention(model: Model) -> bool:
    """Whether ``model.decode_step`` returns attention weights (traced, nothing computed)."""
    params = jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    one = jax.ShapeDtypeStruct((1,), jnp.int32)
    memory, state = jax.eval_shape(model.encode, params, jax.ShapeDtypeStruct((1, 2), jnp.int32), one)
    _, _, extra = jax.eval_shape(model.decode_step, params, memory, one, state)
    return "attention" in extra


@functools.partial(jax.jit, static_argnums=0)
def _replay(model: Model, params, encoder_tokens, encoder_lengths, previous):
    """``(S, B, Te)`` weights of the decoder fed ``previous`` ``(B, S)`` (teacher forcing)."""
    memory, state = model.encode(params, encoder_tokens, encoder_lengths)

    def step(state, token):
        _, state, extra = model.decode_step(params, memory, token, state)
        return state, extra["attention"]

    _, weights = jax.lax.scan(step, state, previous.T)
    return weights


def attention_weights(trained, pairs: Sequence[tuple[str, str]]) -> list[np.ndarray]:
    """For each ``(english, output_chars)``, the weights ``(len(output_chars), len(english))``.

    ``output_chars`` are a hypothesis' characters as the decoder emitted them (the end
    token included when it stopped by itself); ``english`` is the text the encoder read.
    Raises :class:`NoAttention` for a model without attention.
    """
    model = model_of(trained)
    if not has_attention(model):
        raise NoAttention(f"the {model.config.model} model has no attention weights to plot; "
                          "train one with --model luong")
    start = trained.target_vocab.index[START]
    max_enc = trained.max_encoder_seq_length
    out = []
    for english, chars in pairs:
        width = encoder_pad_width(len(english), max_enc) if getattr(trained.config, "bucket", False) else max_enc
        enc = jnp.asarray(trained.input_vocab.encode([english], width))
        previous = [start] + [trained.target_vocab.index[c] for c in chars[:-1]]
        weights = _replay(model, trained.params, enc, jnp.array([len(english)], jnp.int32),
                          jnp.asarray([previous], jnp.int32))  # (S, 1, Te)
        out.append(np.asarray(weights[:, 0, : len(english)]))
    return out


__all__ = ["NoAttention", "attention_weights", "has_attention"]
