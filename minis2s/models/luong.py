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

Input feeding (``ModelConfig.input_feeding``; Luong et al. 2015, section 3.3;
docs/math.md section 16)::

    x_t  = [onehot(y_t) ; o_{t-1}],  o_0 = 0        the decoder's input    (B, V_out + H)
    s_t  = cell(x_t, s_{t-1})                       q_t = s_t^h
    o_t  = tanh(a_t P + q_t W_2 + b_c)              as above, P = V W_1    (B, H)

so ``decoder/kernel`` is ``(V_out + H, 4H)``: the one-hot rows first, then ``H`` rows for
the previous attentional vector ``o_{t-1}`` (the paper's ``h~_{t-1}``). Step ``t`` needs
``o_{t-1}``, so the recurrence, the attention and the combine run in one ``lax.scan``
(:func:`feed_apply`) instead of the recurrence first and the attention over all steps at
once; JAX differentiates that scan (autodiff through it: the cotangent of ``o_{t-1}``
reaches step ``t - 1`` through ``x_t``). ``decode_step``'s state is the cell's state with
``o_{t-1}`` appended (batch-first, so beam search tiles and gathers it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import attention
from ..cells import Cell
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense


def init_params(key: jax.Array, config: ModelConfig, cell: Cell, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of the four layers from one key (split, never reused);
    with ``config.attention_scale`` also ``{"attention": {"scale": 1.0}}`` (Keras' ``ones``).
    With ``config.input_feeding`` the decoder's input is ``V_out + H`` wide (glorot over that fan-in)."""
    k_enc, k_dec, k_combine, k_dense = jax.random.split(key, 4)
    h, v_out = config.latent_dim, config.num_decoder_tokens
    params = {
        "encoder": cell.init(k_enc, config.num_encoder_tokens, h, dtype),
        "decoder": cell.init(k_dec, v_out + h if config.input_feeding else v_out, h, dtype),
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


# --------------------------------------------------------------------------- input feeding


def _one_hot(tokens: jax.Array, vocab: int, dtype) -> jax.Array:
    """``(B,)`` int tokens -> ``(B, V)`` one-hot; one-hot floats pass through."""
    if jnp.issubdtype(tokens.dtype, jnp.integer):
        return jax.nn.one_hot(tokens, vocab, dtype=dtype)
    return tokens.astype(dtype)


def token_rows(params: Params, tokens: jax.Array) -> jax.Array:
    """``onehot(y) W_y + b``: the decoder kernel's token rows plus its bias, gathered for int
    tokens ``(...,)`` (one-hot floats ``(..., V)`` are multiplied): ``(..., 4H)``. Only for
    a cell with a ``core`` (its ``zx_t = x_t W + b``)."""
    dec = params["decoder"]
    if jnp.issubdtype(tokens.dtype, jnp.integer):
        return dec["kernel"][tokens] + dec["bias"]
    return tokens @ dec["kernel"][: tokens.shape[-1]] + dec["bias"]


def feed_step(params: Params, memory: Memory, token_t: jax.Array, state: State, fed: jax.Array, cell: Cell):
    """One input-fed decoder step from ``s_{t-1}`` and ``o_{t-1}`` (``fed`` ``(B, H)``).

    ``token_t`` is the token's input rows :func:`token_rows` ``(B, 4H)`` for a cell with a
    ``core`` (``zx_t = W_y[y_t] + b + o_{t-1} W_o``, the kernel's last ``H`` rows ``W_o``),
    else the token itself (``(B,)`` int or ``(B, V)`` one-hot; the cell's ``step`` on
    ``[onehot(y_t) ; o_{t-1}]``). Returns ``(s_t, o_t (B, H), a_t (B, Te))``.
    """
    dec = params["decoder"]
    if cell.core is not None:
        w_fed = dec["kernel"][dec["kernel"].shape[0] - fed.shape[-1] :]  # W_o (H, 4H)
        state = cell.core(dec, token_t + fed @ w_fed, state)
    else:
        vocab = dec["kernel"].shape[0] - fed.shape[-1]
        state = cell.step(dec, jnp.concatenate([_one_hot(token_t, vocab, fed.dtype), fed], axis=-1), state)
    out, weights = attention.luong_step(  # (B, H), (B, Te)
        params["combine"], state[0], memory["values"], memory["projected"], memory["mask"], _scale(params)
    )
    return state, out, weights


def feed_apply(params: Params, batch: Batch, cell: Cell) -> jax.Array:
    """Teacher-forced probabilities ``(B, Td, V_out)`` with input feeding: the encoder, then one
    ``lax.scan`` of :func:`feed_step` from ``(s_0, o_0 = 0)``, then the head on every step."""
    memory, state = encode(params, batch["encoder_tokens"], batch["encoder_lengths"], cell)
    tokens = jnp.swapaxes(batch["decoder_tokens"], 0, 1)  # (Td, B) (or (Td, B, V) one-hot)
    xs = token_rows(params, tokens) if cell.core is not None else tokens  # (Td, B, 4H): gathered once

    def step(carry, token_t):
        state, fed = carry
        state, out, _ = feed_step(params, memory, token_t, state, fed, cell)
        return (state, out), out

    _, outs = jax.lax.scan(step, (state, jnp.zeros_like(state[0])), xs)  # (Td, B, H)
    return jnp.swapaxes(dense_softmax(params["dense"], outs), 0, 1)


def feed_encode(params: Params, encoder_tokens: jax.Array, encoder_lengths: jax.Array, cell: Cell):
    """:func:`encode`, with ``o_0 = 0`` appended to the state for :func:`feed_decode_step`."""
    memory, state = encode(params, encoder_tokens, encoder_lengths, cell)
    return memory, (*state, jnp.zeros_like(state[0]))


def feed_decode_step(params: Params, memory: Memory, token: jax.Array, state: State, cell: Cell):
    """One input-fed inference step; ``state`` is the cell's with ``o_{t-1}`` last. Equal to one
    timestep of :func:`feed_apply` fed its own previous prediction."""
    token_t = token_rows(params, token) if cell.core is not None else token
    cell_state, out, weights = feed_step(params, memory, token_t, state[:-1], state[-1], cell)
    return dense_softmax(params["dense"], out), (*cell_state, out), {"attention": weights}


def build(config: ModelConfig, cell: Cell) -> Model:
    """The Luong model's :class:`~minis2s.models.base.Model` for ``config`` with ``cell``
    (with ``config.input_feeding``, the input-fed functions)."""
    if config.input_feeding:
        fwd, enc, step = feed_apply, feed_encode, feed_decode_step
    else:
        fwd, enc, step = apply, encode, decode_step
    return Model(
        config=config,
        init=lambda key: init_params(key, config, cell),
        apply=lambda params, batch: fwd(params, batch, cell),
        encode=lambda params, tokens, lengths: enc(params, tokens, lengths, cell),
        decode_step=lambda params, memory, token, state: step(params, memory, token, state, cell),
    )
