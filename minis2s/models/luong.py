"""Luong: global dot-product attention after the decoder, as this Keras model computes it::

    enc_out, h, c = LSTM(H, return_sequences=True, return_state=True)(x, mask=m)
    dec_out       = LSTM(H, return_sequences=True)(y, initial_state=[h, c])
    ctx           = Attention()([dec_out, enc_out], mask=[None, m])
    out           = Dense(H, activation="tanh")(Concatenate()([ctx, dec_out]))
    probs         = Dense(V_out, activation="softmax")(out)

(:func:`minis2s.convert.keras_luong_model` builds it; it is the test oracle.)

Parameters (Keras names; shown for the LSTM cell)::

    {"encoder": {"kernel" (V_in, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "decoder": {"kernel" (V_out, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "combine": {"kernel" (2H, H), "bias" (H,)},         Dense tanh over [context ; h_t]
     "dense":   {"kernel" (H, V_out), "bias" (V_out,)}}
    (+ "attention": {"scale" ()}   with --attention-scale: Attention(use_scale=True)'s g)

Training (teacher forcing)::

    v_1..v_Te, s_0 = encoder over the English tokens; the state holds still over the
                     padding (j >= length), so s_0 is the state after the last character
    q_1..q_Td      = decoder over the target tokens from s_0                (B, Td, H)
    o_t            = tanh([c_t ; q_t] W_c + b_c),  c_t = sum_j a_tj v_j,
                     a_t = masked_softmax(q_t . v_j)  (padding weight exactly 0)
    probs          = softmax(o_t W_dense + b_dense)                         (B, Td, V_out)

The attention block's gradient is hand-derived (:func:`minis2s.attention.luong_block`);
the decoder's is the cell's (BPTT for the LSTM); the masked encoder's is JAX's autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import attention
from ..cells import Cell
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense


def init_params(key: jax.Array, config: ModelConfig, cell: Cell, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of the four layers from one key (split, never reused);
    with ``config.attention_scale`` also ``{"attention": {"scale": 1.0}}`` (Keras' ``ones``)."""
    k_enc, k_dec, k_combine, k_dense = jax.random.split(key, 4)
    h, v_out = config.latent_dim, config.num_decoder_tokens
    params = {
        "encoder": cell.init(k_enc, config.num_encoder_tokens, h, dtype),
        "decoder": cell.init(k_dec, v_out, h, dtype),
        "combine": init_dense(k_combine, 2 * h, h, dtype),
        "dense": init_dense(k_dense, h, v_out, dtype),
    }
    if config.attention_scale:
        params["attention"] = {"scale": jnp.ones((), dtype)}
    return params


def _scale(params: Params):
    """Keras ``Attention(use_scale=True)``'s scalar, if the model has one; else 1."""
    return params["attention"]["scale"] if "attention" in params else jnp.ones((), params["dense"]["bias"].dtype)


def encode(params: Params, encoder_tokens: jax.Array, encoder_lengths: jax.Array, cell: Cell) -> tuple[Memory, State]:
    """``({"values": encoder outputs V (B, Te, H), "projected": V W_1 (B, Te, H), "mask": (B, Te) bool},
    state after the last character)``; ``projected`` serves the decoder steps
    (:func:`minis2s.attention.project_values`; unused, and dropped by ``jit``, in training)."""
    mask = attention.length_mask(encoder_lengths, encoder_tokens.shape[1])  # (B, Te)
    values, state = attention.masked_encoder(cell, params["encoder"], encoder_tokens, mask)
    projected = attention.project_values(params["combine"], values)
    return {"values": values, "projected": projected, "mask": mask}, state


def apply(params: Params, batch: Batch, cell: Cell) -> jax.Array:
    """Teacher-forced probabilities ``(B, Td, V_out)``; tokens int ``(B, T)`` or one-hot floats."""
    memory, state = encode(params, batch["encoder_tokens"], batch["encoder_lengths"], cell)
    queries, _ = cell.layer(params["decoder"], batch["decoder_tokens"], state)  # (B, Td, H)
    out = attention.luong_block(params["combine"], queries, memory["values"], memory["mask"], _scale(params))
    return dense_softmax(params["dense"], out)


def decode_step(params: Params, memory: Memory, token: jax.Array, state: State, cell: Cell):
    """One inference step: ``(probs (B, V_out), state, {"attention": a (B, Te)})``; equal to
    one timestep of :func:`apply` fed its own previous prediction."""
    state = cell.step(params["decoder"], token, state)
    out, weights = attention.luong_step(  # one query per row: (B, H) -> (B, H), (B, Te)
        params["combine"], state[0], memory["values"], memory["projected"], memory["mask"], _scale(params)
    )
    return dense_softmax(params["dense"], out), state, {"attention": weights}


def build(config: ModelConfig, cell: Cell) -> Model:
    """The Luong model's :class:`~minis2s.models.base.Model` for ``config`` with ``cell``."""
    return Model(
        config=config,
        init=lambda key: init_params(key, config, cell),
        apply=lambda params, batch: apply(params, batch, cell),
        encode=lambda params, tokens, lengths: encode(params, tokens, lengths, cell),
        decode_step=lambda params, memory, token, state: decode_step(params, memory, token, state, cell),
    )
