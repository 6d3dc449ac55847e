"""The seed: the Keras example's encoder-decoder, two recurrent layers and a softmax head.

Parameters (Keras names; shown for the LSTM cell)::

    {"encoder": {"kernel" (V_in, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "decoder": {"kernel" (V_out, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "dense":   {"kernel" (H, V_out), "bias" (V_out,)}}

Training (teacher forcing)::

    s_0     = final state of the encoder over the English tokens      (h, c), each (B, H)
    hs      = decoder over the target tokens, starting from s_0        (B, T, H)
    probs   = softmax(hs W_dense + b_dense)                            (B, T, V_out)

The encoder's outputs are discarded: all the decoder knows of the input is ``s_0``. The
encoder runs over the padding spaces too (as the Keras example does), so ``s_0`` has read
them; ``encoder_lengths`` is not used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..cells import Cell
from .base import Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense


def init_params(key: jax.Array, config: ModelConfig, cell: Cell, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of the three layers from one key (split, never reused)."""
    k_enc, k_dec, k_dense = jax.random.split(key, 3)
    h, v_out = config.latent_dim, config.num_decoder_tokens
    return {
        "encoder": cell.init(k_enc, config.num_encoder_tokens, h, dtype),
        "decoder": cell.init(k_dec, v_out, h, dtype),
        "dense": init_dense(k_dense, h, v_out, dtype),
    }


def encode(params: Params, encoder_tokens: jax.Array, cell: Cell) -> State:
    """The encoder's final state (each ``(B, H)``); its outputs are discarded."""
    _, state = cell.layer(params["encoder"], encoder_tokens)
    return state


def apply(params: Params, encoder_tokens: jax.Array, decoder_tokens: jax.Array, cell: Cell) -> jax.Array:
    """Teacher-forced probabilities ``(B, T_dec, V_out)``; tokens are int ``(B, T)`` (or
    one-hot floats ``(B, T, V)``)."""
    state = encode(params, encoder_tokens, cell)
    hs, _ = cell.layer(params["decoder"], decoder_tokens, state)  # (B, T_dec, H)
    return dense_softmax(params["dense"], hs)


def encode_stepwise(params: Params, encoder_tokens: jax.Array, cell: Cell) -> State:
    """:func:`encode` with the input rows gathered one step at a time (inference).

    The same numbers (``kernel[x_t] + bias``, then the same cell), but the ``(T, B, 4H)``
    projection of the whole batch is never materialised: for a few hundred sentences it
    does not fit in cache, and this scan runs about twice as fast on CPU.
    """
    enc = params["encoder"]
    state0 = cell.zero_state(enc, encoder_tokens.shape[0])
    state, _ = jax.lax.scan(lambda s, x_t: (cell.step(enc, x_t, s), None), state0, encoder_tokens.T)
    return state


def decode_step(params: Params, token: jax.Array, state: State, cell: Cell) -> tuple[jax.Array, State]:
    """One inference step: previous token ``(B,)`` and state -> probabilities ``(B, V_out)``.

    Equal to one timestep of :func:`apply`'s decoder, fed its own previous prediction.
    """
    state = cell.step(params["decoder"], token, state)
    return dense_softmax(params["dense"], state[0]), state


def build(config: ModelConfig, cell: Cell) -> Model:
    """The seed's :class:`~minis2s.models.base.Model` for ``config`` with ``cell``."""

    def model_encode(params: Params, encoder_tokens: jax.Array, encoder_lengths: jax.Array) -> tuple[Memory, State]:
        return {}, encode_stepwise(params, encoder_tokens, cell)

    def model_decode_step(params: Params, memory: Memory, token: jax.Array, state: State):
        probs, state = decode_step(params, token, state, cell)
        return probs, state, {}

    return Model(
        config=config,
        init=lambda key: init_params(key, config, cell),
        apply=lambda params, batch: apply(params, batch["encoder_tokens"], batch["decoder_tokens"], cell),
        encode=model_encode,
        decode_step=model_decode_step,
    )
