"""Bahdanau: additive attention inside the decoder's recurrence.

At every decoder step the previous decoder state looks at all encoder outputs, and the
context it reads becomes part of the decoder's input, beside the previous character.

Parameters (Keras names; shown for the LSTM cell; ``H`` = latent, ``A = H`` attention units)::

    {"encoder":   {"kernel" (V_in, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "decoder":   {"kernel" (V_out + H, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "query":     {"kernel" (H, A)},          W_q
     "key":       {"kernel" (H, A)},          W_k
     "attention": {"scale" (A,)},             v
     "dense":     {"kernel" (H, V_out), "bias" (V_out,)}}

The decoder's ``kernel`` has ``V_out`` rows for the one-hot previous character, then
``H`` rows for the context: the input is ``x_t = [onehot(y_{t-1}); c_t]``, as a Keras
LSTM fed the concatenation would hold it.

Training (teacher forcing)::

    h_1..h_Te, s_0 = encoder over the English tokens; the state stops at the sentence's
                     length (it holds still over the padding), so s_0 never reads padding
    k_j   = h_j W_k                                   (B, Te, A)   once, before the loop
    for t = 1..Td (one lax.scan):
        e_tj  = v^T tanh(s_{t-1}^h W_q + k_j)         (B, Te)
        a_t   = masked_softmax(e_t, j < length)       (B, Te)      padding weight exactly 0
        c_t   = sum_j a_tj h_j                        (B, H)
        s_t   = cell([onehot(y_{t-1}); c_t], s_{t-1}) (B, H) each
    probs = softmax(s_t^h W_dense + b_dense)          (B, Td, V_out)

``s^h`` is the first entry of the cell's state (the LSTM's ``h``). The head reads the
state alone, as the PyTorch tutorial and d2l do (docs/math.md: a side-by-side run with a
head reading ``[s_t; c_t]`` measured no gain from it). The gradient is JAX's autodiff of
the two scans (the decoder's steps rematerialised, :data:`REMAT_POLICY`).

For a cell with a ``core`` (:class:`minis2s.cells.Cell`; the LSTM's) the loop runs the same
step with fewer multiply-adds: ``[onehot(y); c_t] W = W_y[y] + a_t P`` with
``P = H_enc W_c`` formed once per sentence (:func:`project_values`, :func:`projected_step`);
a cell without one takes :func:`recurrent_step`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .. import additive, attention
from ..cells import Cell
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense

# The backward pass of the decoder's scan recomputes each step's element-wise work (the
# ``tanh`` of the ``(B, Te, A)`` scores, the softmax, the gates) from the saved matmul
# results instead of storing it per step and reading it back: less memory traffic, same
# numbers. ``python scripts/bahdanau_remat.py`` times a jitted value_and_grad on the bench
# shapes (B 64, Te 16, Td 59, H 256), both ways interleaved: 0.81x the CPU time of storing
# everything (456 against 561 ms per call, measured under load).
REMAT_POLICY = jax.checkpoint_policies.dots_with_no_batch_dims_saveable


def init_params(key: jax.Array, config: ModelConfig, cell: Cell, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of every layer from one key (split, never reused)."""
    k_enc, k_dec, k_att, k_dense = jax.random.split(key, 4)
    h, v_in, v_out = config.latent_dim, config.num_encoder_tokens, config.num_decoder_tokens
    return {
        "encoder": cell.init(k_enc, v_in, h, dtype),
        "decoder": cell.init(k_dec, v_out + h, h, dtype),
        **additive.init_additive(k_att, h, h, h, dtype),
        "dense": init_dense(k_dense, h, v_out, dtype),
    }


def encode(params: Params, encoder_tokens: jax.Array, encoder_lengths: jax.Array, cell: Cell) -> tuple[Memory, State]:
    """The encoder outputs and their mask (``memory``) and the state at each sentence's end.

    One ``lax.scan`` of ``cell.step``; at steps ``j >= length`` the state is carried
    unchanged, so the final state is the state after the last real character and
    appending padding changes nothing. Outputs at padding positions (the held ``h``) are
    masked out of the attention.

    Returns ``({"values": hs (B, Te, H), "keys": hs W_k (B, Te, A), "mask": (B, Te) bool}, state)``.
    """
    mask = attention.length_mask(encoder_lengths, encoder_tokens.shape[1])  # (B, Te)
    hs, state = attention.masked_encoder(cell, params["encoder"], encoder_tokens, mask)  # (B, Te, H)
    keys = hs @ params["key"]["kernel"]  # (B, Te, A): W_k h_j, once per sentence
    memory = {"values": hs, "keys": keys, "mask": mask}
    if cell.core is not None:  # the fast path's P (projected_step)
        memory["projected"] = project_values(params, hs)
    return memory, state


def project_values(params: Params, hs: jax.Array) -> jax.Array:
    """``P = H W_c`` ``(B, Te, G)``: the encoder outputs through the decoder kernel's context rows.

    The context enters the decoder as ``c_t W_c`` with ``c_t = sum_j a_tj h_j``; by
    linearity ``c_t W_c = sum_j a_tj (h_j W_c) = a_t P``. ``P`` is computed once per
    sentence, so each step costs a ``(Te,)``-weighted sum of ``G``-vectors instead of an
    ``(H, G)`` matmul (``Te`` is 16 for the seed's data, ``H`` 256).
    """
    dec = params["decoder"]
    w_c = dec["kernel"][dec["kernel"].shape[0] - hs.shape[-1] :]  # (H, G): the context rows
    return hs @ w_c  # (B, Te, G)


def token_rows(params: Params, tokens: jax.Array) -> jax.Array:
    """``onehot(y) W_y + b``: the token rows of the decoder kernel plus the bias, gathered
    for int tokens ``(...,)`` (one-hot floats ``(..., V)`` are multiplied), ``(..., G)``."""
    dec = params["decoder"]
    if jnp.issubdtype(tokens.dtype, jnp.integer):
        return dec["kernel"][tokens] + dec["bias"]
    return tokens @ dec["kernel"][: tokens.shape[-1]] + dec["bias"]


def projected_step(params: Params, memory: Memory, zx_token: jax.Array, state: State, core: Callable):
    """:func:`recurrent_step` through the cell's ``core``: ``zx_t = zx_token + a_t P``.

    Returns ``(state s_t, weights a_t (B, Te))``.
    """
    q = state[0] @ params["query"]["kernel"]  # (B, A)
    a = attention.masked_softmax(additive.additive_scores(q, memory["keys"], params["attention"]["scale"]), memory["mask"])
    zx = zx_token + jnp.einsum("bj,bjg->bg", a, memory["projected"])  # (B, G)
    return core(params["decoder"], zx, state), a


def _one_hot(tokens: jax.Array, vocab: int, dtype) -> jax.Array:
    """``(B,)`` int tokens -> ``(B, V)`` one-hot; one-hot floats pass through."""
    if jnp.issubdtype(tokens.dtype, jnp.integer):
        return jax.nn.one_hot(tokens, vocab, dtype=dtype)
    return tokens.astype(dtype)


def recurrent_step(params: Params, memory: Memory, token: jax.Array, state: State, cell: Cell):
    """One decoder step: attend with ``s_{t-1}``, then the cell on ``[onehot(y_{t-1}); c_t]``.

    Returns ``(state s_t, context c_t (B, H), weights a_t (B, Te))``.
    """
    dec = params["decoder"]
    c, a = additive.attend(params, state[0], memory["keys"], memory["values"], memory["mask"])
    vocab = dec["kernel"].shape[0] - c.shape[-1]
    x = jnp.concatenate([_one_hot(token, vocab, c.dtype), c], axis=-1)  # (B, V_out + H)
    return cell.step(dec, x, state), c, a


def apply(params: Params, batch: Batch, cell: Cell, remat: bool = True) -> jax.Array:
    """Teacher-forced probabilities ``(B, T_dec, V_out)``: the encoder, then one ``lax.scan``
    of :func:`recurrent_step` over the target tokens, then the head on every step at once.

    ``remat``: the backward pass recomputes each step's element-wise work
    (:data:`REMAT_POLICY`); ``False`` stores it. Same values either way."""
    def checkpointed(step):
        return jax.checkpoint(step, policy=REMAT_POLICY) if remat else step

    memory, state = encode(params, batch["encoder_tokens"], batch["encoder_lengths"], cell)
    tokens = jnp.swapaxes(batch["decoder_tokens"], 0, 1)  # (Td, B) (or (Td, B, V) one-hot)
    if cell.core is not None:
        def step(state, zx_t):
            state, _ = projected_step(params, memory, zx_t, state, cell.core)
            return state, state[0]

        _, hs = jax.lax.scan(checkpointed(step), state, token_rows(params, tokens))  # (Td, B, H)
    else:
        def step(state, token_t):
            state, _, _ = recurrent_step(params, memory, token_t, state, cell)
            return state, state[0]

        _, hs = jax.lax.scan(checkpointed(step), state, tokens)  # (Td, B, H)
    probs = dense_softmax(params["dense"], hs)  # (Td, B, V_out)
    return jnp.swapaxes(probs, 0, 1)


def decode_step(params: Params, memory: Memory, token: jax.Array, state: State, cell: Cell):
    """One inference step: equal to one timestep of :func:`apply`, fed its own prediction.

    Returns ``(probs (B, V_out), state, {"attention": a_t (B, Te)})``.
    """
    if cell.core is not None:
        state, a = projected_step(params, memory, token_rows(params, token), state, cell.core)
    else:
        state, _, a = recurrent_step(params, memory, token, state, cell)
    return dense_softmax(params["dense"], state[0]), state, {"attention": a}


def build(config: ModelConfig, cell: Cell) -> Model:
    """The Bahdanau :class:`~minis2s.models.base.Model` for ``config`` with ``cell``."""
    return Model(
        config=config,
        init=lambda key: init_params(key, config, cell),
        apply=lambda params, batch: apply(params, batch, cell),
        encode=lambda params, encoder_tokens, encoder_lengths: encode(params, encoder_tokens, encoder_lengths, cell),
        decode_step=lambda params, memory, token, state: decode_step(params, memory, token, state, cell),
    )
