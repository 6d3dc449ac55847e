"""What every model is: its sizes (:class:`ModelConfig`) and its functions (:class:`Model`).

A model is four pure functions over a parameter dict (the ``stax`` pattern: ``init`` and
``apply``, plus the two halves inference needs)::

    params              = init(key)
    probs (B, T, V_out) = apply(params, batch)                   # teacher forcing
    memory, state       = encode(params, encoder_tokens, encoder_lengths)
    probs, state, extra = decode_step(params, memory, token, state)   # one character

``memory`` is what the decoder may look back at (a dict of ``(B, ...)`` arrays: empty for
the seed, the encoder outputs and their mask for attention); ``state`` a tuple of
``(B, H)`` arrays; ``extra`` a dict of per-step ``(B, ...)`` arrays worth showing (the
attention weights). Every array in ``memory`` and ``state`` has the batch first, so beam
search tiles and gathers them without knowing what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from .. import cells, lstm

Params = dict[str, dict]
Batch = dict[str, jax.Array]
Memory = dict[str, jax.Array]
State = tuple[jax.Array, ...]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and kind of a model: vocabularies come from the data, the rest from the user.

    ``model`` names an entry of :data:`minis2s.models.MODELS`, ``cell`` one of
    :data:`minis2s.cells.CELLS`. Models without attention ignore ``attention_scale``; models other than luong ignore
    ``input_feeding`` (:meth:`minis2s.config.Config.validate` rejects both there).
    """

    num_encoder_tokens: int
    num_decoder_tokens: int
    latent_dim: int = 256
    model: str = "seed"
    cell: str = cells.DEFAULT
    attention_scale: bool = False  # luong: Keras Attention(use_scale=True), a learnt scalar on the scores
    # The transformer's sizes (minis2s/models/transformer.py; the other models ignore them).
    # Chosen side by side on the seed recipe's 10,000 pairs, 7 epochs each, 4 heads: best
    # val_loss 0.495 (epoch 6) with layers 2 / d 128 / F 512, 0.531 (6) with d 64 / F 256,
    # 0.551 (5) with one layer (the seed LSTM's best: 0.46, at epoch 49). The smaller d ran
    # its epochs in about 2/3 of the time of the other two (20 s against 32 s at epoch 7,
    # shared CPU): the chosen sizes buy 0.036 of val_loss for that.
    layers: int = 2  # blocks on each side
    heads: int = 4  # attention heads, each of embed_dim / heads
    embed_dim: int = 128  # d, the width of every block
    ff_dim: int = 512  # F, the feed-forward's hidden width
    max_positions: int = 128  # P, learned positions: the longest encoder input or decoded output
    input_feeding: bool = False  # luong: the previous attentional vector joins the decoder's input
    # The transformer: the rate of its dropout in training (minis2s/dropout.py; 0: none). A
    # model whose ``Model.dropout`` is False has none (Config.validate refuses a rate there).
    # On the seed recipe's 10,000 pairs, 0.1 ended 10 epochs at val_loss 0.463 against none's
    # best 0.482 (epoch 8; it rose after). The default stays none: the whole-corpus model's
    # validation loss fell at all 14 of its epochs without dropout, and the documented runs
    # had none (docs/performance.md, "Dropout").
    dropout: float = 0.0


@dataclass(frozen=True)
class Model:
    """The functions of one model, built for one :class:`ModelConfig` and gradient.

    Frozen and cached by :func:`minis2s.models.build`, so it can be a static argument of
    ``jax.jit``.
    """

    config: ModelConfig
    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, Batch], jax.Array]
    encode: Callable[[Params, jax.Array, jax.Array], tuple[Memory, State]]
    decode_step: Callable[[Params, Memory, jax.Array, State], tuple[jax.Array, State, dict]]
    max_steps: int | None = None  # the most decode_step calls a sentence may take (None: no limit)
    # The finite-difference step ``h`` that checks this model's loss gradient (minis2s gradcheck):
    # a smooth loss takes 1e-3; ReLU kinks (the transformer's feed-forward) lie closer than a
    # 1e-3 stencil reaches on the tiny problem, so such a model asks for 1e-5.
    fd_step: float = 1e-3
    # How a figure or a log names this model's size; empty: the recurrent models' own words,
    # ``LSTM, latent 256`` (:func:`describe`).
    sizes: str = ""
    # ``activations(t_enc, t_dec)``: float32 values one batch row keeps for the backward pass,
    # for the memory check before training (minis2s/resources.py); None: the recurrent
    # models' figure, 6H per time step. ``size_flags``: the flags that shrink the model, for
    # that check's message.
    activations: Callable[[int, int], int] | None = None
    size_flags: str = "--latent-dim"
    # Whether ``apply`` drops at ``config.dropout`` when the batch carries a ``dropout_key``
    # (training's batches do: minis2s/dropout.py).
    dropout: bool = False

    def describe(self) -> str:
        """The model's size in words, e.g. ``LSTM, latent 256``."""
        return self.sizes or f"{self.config.cell.upper()}, latent {self.config.latent_dim}"


def init_dense(key: jax.Array, fan_in: int, fan_out: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Keras ``Dense``: glorot-uniform ``kernel (fan_in, fan_out)``, zero ``bias (fan_out,)``."""
    return {"kernel": lstm.glorot_uniform(key, (fan_in, fan_out), dtype), "bias": jnp.zeros((fan_out,), dtype)}


def dense_softmax(params: dict[str, jax.Array], hs: jax.Array) -> jax.Array:
    """``softmax(hs W + b)`` over the last axis: ``(..., H) -> (..., V_out)``."""
    return jax.nn.softmax(hs @ params["kernel"] + params["bias"], axis=-1)
