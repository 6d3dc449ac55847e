"""Dot-product (Luong) attention over the encoder outputs, as small pure functions, and the
whole attention block with a hand-derived backward pass.

Names follow docs/math.md section 16. For queries ``q_t`` (the decoder outputs), values
``v_j`` (the encoder outputs) and the padding mask ``m_j = [j < length]``::

    s_tj = g (q_t . v_j)                            dot_scores      (B, Td, Te)
    a_tj = m_j e^{s_tj} / sum_k m_k e^{s_tk}        masked_softmax  (B, Td, Te), 0 on padding
    c_t  = sum_j a_tj v_j                           context         (B, Td, H)
    o_t  = tanh([c_t ; q_t] W_c + b_c)              combine         (B, Td, H_c)

``g`` is Keras ``Attention(use_scale=True)``'s learnt scalar ``scale`` (1 without it).
Every function also takes one query per row, ``(B, H)`` instead of ``(B, Td, H)`` (a
decoder step at inference).

:func:`luong_attention` composes them (JAX differentiates it: the reference);
:func:`luong_block` computes the same ``o`` with the context's projection reassociated
(``A (V W_1)`` for ``C W_1``, fewer multiply-adds) and the backward pass written out by
hand (``jax.custom_vjp``, derived in docs/math.md section 16.2), which training uses.
:func:`masked_encoder` builds the memory the attention reads: the encoder outputs, with
the state held still over the padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
State = tuple[jax.Array, ...]


# --------------------------------------------------------------------------- the memory


def length_mask(lengths: jax.Array, width: int) -> jax.Array:
    """``(B, width)`` bool: ``m[b, j] = j < lengths[b]``, True on real characters."""
    return jnp.arange(width)[None, :] < jnp.asarray(lengths)[:, None]


def masked_encoder(cell, params: Params, inputs: jax.Array, mask: jax.Array) -> tuple[jax.Array, State]:
    """Run ``cell`` over ``inputs`` from the zero state, holding the state still where
    ``mask`` is False (the padding after each sentence), as a Keras RNN given a mask does.

    .. math::  s_j = s_{j-1} + m_j\\,(\\mathrm{cell}(x_j, s_{j-1}) - s_{j-1})

    so the final state is the state after the sentence's last character, whatever the
    padding. Args: ``inputs`` ``(B, Te)`` int tokens (or ``(B, Te, V)`` one-hot floats),
    ``mask`` ``(B, Te)`` bool. Returns the outputs ``(B, Te, H)`` (the held ``h`` on
    padding, which the attention masks out) and the final state. JAX differentiates the
    scan.
    """
    batch = inputs.shape[0]

    def step(state, xs):
        x_t, real_t = xs  # (B,) or (B, V); (B,)
        new = cell.step(params, x_t, state)
        state = tuple(jnp.where(real_t[:, None], n, s) for n, s in zip(new, state))
        return state, state[0]

    state, hs = jax.lax.scan(step, cell.zero_state(params, batch), (jnp.swapaxes(inputs, 0, 1), mask.T))
    return jnp.swapaxes(hs, 0, 1), state


# --------------------------------------------------------------------------- the pieces


def _per_row(mask: jax.Array, ndim: int) -> jax.Array:
    """``(B, Te)`` -> ``(B, 1, ..., 1, Te)`` with ``ndim`` axes, to broadcast against scores."""
    return mask.reshape(mask.shape[0], *([1] * (ndim - 2)), mask.shape[-1])


def dot_scores(query: jax.Array, values: jax.Array, scale: jax.Array | float = 1.0) -> jax.Array:
    """``s_tj = g (q_t . v_j)``: query ``(B, [Td,] H)``, values ``(B, Te, H)`` -> ``(B, [Td,] Te)``."""
    return scale * jnp.einsum("b...h,bjh->b...j", query, values)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis (``Te``) where ``mask`` ``(B, Te)`` is True; exactly 0 elsewhere.

    .. math::  a_j = \\frac{m_j\\, e^{s_j - M}}{\\sum_k m_k\\, e^{s_k - M}},\\qquad M = \\max_{k: m_k} s_k

    Padding scores never enter the exponential (no ``inf - inf``, no gradient). A row with
    no real position (length 0) gets all-zero weights, not NaN.
    """
    m = _per_row(mask, scores.ndim)
    top = jnp.max(jnp.where(m, scores, -jnp.inf), axis=-1, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))  # any shift: same softmax
    ex = jnp.where(m, jnp.exp(jnp.where(m, scores, top) - top), 0.0)
    total = jnp.sum(ex, axis=-1, keepdims=True)
    return ex / jnp.where(total > 0, total, 1.0)


def context(weights: jax.Array, values: jax.Array) -> jax.Array:
    """``c_t = sum_j a_tj v_j``: weights ``(B, [Td,] Te)``, values ``(B, Te, H)`` -> ``(B, [Td,] H)``."""
    return jnp.einsum("b...j,bjh->b...h", weights, values)


def combine(params: Params, ctx: jax.Array, query: jax.Array) -> jax.Array:
    """``o_t = tanh([c_t ; q_t] W_c + b_c)``: Keras ``Concatenate()([context, query])`` then
    ``Dense(H_c, activation="tanh")``; ``W_c`` is ``(2H, H_c)``, the context's rows first."""
    return jnp.tanh(jnp.concatenate([ctx, query], axis=-1) @ params["kernel"] + params["bias"])


def luong_attention(
    params: Params, query: jax.Array, values: jax.Array, mask: jax.Array, scale: jax.Array | float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """The attention block from its pieces: ``(o (B, [Td,] H_c), a (B, [Td,] Te))``.

    ``params`` is the ``combine`` Dense. Autodiff differentiates this; it is the reference
    for :func:`luong_block` and the function a decoder step calls.
    """
    weights = masked_softmax(dot_scores(query, values, scale), mask)
    return combine(params, context(weights, values), query), weights


def project_values(params: Params, values: jax.Array) -> jax.Array:
    """``P = V W_1``, the context rows of ``W_c`` applied to each encoder output ``(B, Te, H_c)``:
    ``c_t W_1 = a_t P``, so a decoder computes it once per sentence, not once per step."""
    return values @ params["kernel"][: values.shape[-1]]


def luong_step(
    params: Params, query: jax.Array, values: jax.Array, projected: jax.Array, mask: jax.Array,
    scale: jax.Array | float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """:func:`luong_attention` for one query per row, ``(B, H)``, from ``projected`` =
    :func:`project_values`: ``o = tanh(a P + q W_2 + b_c)``; returns ``(o (B, H_c), a (B, Te))``."""
    weights = masked_softmax(dot_scores(query, values, scale), mask)
    w_query = params["kernel"][query.shape[-1] :]
    return jnp.tanh(context(weights, projected) + query @ w_query + params["bias"]), weights


# --------------------------------------------------------------------------- hand-derived backward


@jax.custom_vjp
def luong_block(params: Params, query: jax.Array, values: jax.Array, mask: jax.Array, scale: jax.Array) -> jax.Array:
    """``o`` of :func:`luong_attention` (queries ``(B, Td, H)``), computed with the context
    projected first and with the hand-derived backward pass of docs/math.md section 16.2.

    Split ``W_c`` into its context rows ``W_1`` and query rows ``W_2`` (``(H, H_c)`` each):
    ``[C ; Q] W_c = A (V W_1) + Q W_2``. ``P = V W_1`` has ``Te`` rows per sentence where
    ``C W_1`` has ``Td`` (16 against 59 for the seed's data), so the same ``o`` costs a
    third fewer multiply-adds, forward and backward::

        dz  = do * (1 - o^2)                          through the tanh
        dW_2 = Q^T dz,  db_c = sum dz,  dQ = dz W_2^T
        dA  = dz P^T,   dP = A^T dz                   through A P
        dW_1 = V^T dP,  dV = dP W_1^T                 through P = V W_1
        dS  = A * (dA - rowsum(A * dA))               through the softmax (0 on padding)
        dg  = sum(dS * Q V^T),  dQ += g dS V,  dV += g dS^T Q    through the scores

    No cotangent flows to ``mask`` (booleans).
    """
    return luong_attention(params, query, values, mask, scale)[0]


def _luong_block_fwd(params, query, values, mask, scale):
    units = query.shape[-1]
    w_ctx, w_query = params["kernel"][:units], params["kernel"][units:]  # W_1, W_2 (H, H_c) each
    raw = jnp.einsum("btk,bjk->btj", query, values)  # Q V^T (B, Td, Te), before the scale
    weights = masked_softmax(scale * raw, mask)  # A (B, Td, Te)
    projected = values @ w_ctx  # P = V W_1 (B, Te, H_c): once per sentence
    z = jnp.einsum("btj,bjc->btc", weights, projected) + query @ w_query + params["bias"]
    out = jnp.tanh(z)  # O (B, Td, H_c)
    return out, (params["kernel"], query, values, scale, raw, weights, projected, out)


def _luong_block_bwd(residuals, d_out):
    kernel, query, values, scale, raw, weights, projected, out = residuals
    units = query.shape[-1]
    w_ctx, w_query = kernel[:units], kernel[units:]
    dz = d_out * (1.0 - out * out)  # (B, Td, H_c)
    dz_rows = dz.reshape(-1, dz.shape[-1])  # (B*Td, H_c)
    d_w_query = query.reshape(-1, units).T @ dz_rows  # (H, H_c): Q^T dZ, one matmul
    d_bias = jnp.sum(dz_rows, axis=0)  # (H_c,)
    d_query = dz @ w_query.T  # (B, Td, H)
    d_weights = jnp.einsum("btc,bjc->btj", dz, projected)  # dA = dZ P^T (B, Td, Te)
    d_projected = jnp.einsum("btj,btc->bjc", weights, dz)  # dP = A^T dZ (B, Te, H_c)
    d_w_ctx = values.reshape(-1, units).T @ d_projected.reshape(-1, d_projected.shape[-1])  # V^T dP
    d_values = d_projected @ w_ctx.T  # (B, Te, H)
    d_scores = weights * (d_weights - jnp.sum(weights * d_weights, axis=-1, keepdims=True))  # dS
    d_scale = jnp.sum(d_scores * raw)
    d_raw = scale * d_scores  # (B, Td, Te)
    d_query = d_query + jnp.einsum("btj,bjh->bth", d_raw, values)
    d_values = d_values + jnp.einsum("btj,bth->bjh", d_raw, query)
    d_params = {"kernel": jnp.concatenate([d_w_ctx, d_w_query], axis=0), "bias": d_bias}
    return d_params, d_query, d_values, None, jnp.asarray(d_scale, jnp.result_type(scale)).reshape(jnp.shape(scale))


luong_block.defvjp(_luong_block_fwd, _luong_block_bwd)

__all__ = [
    "combine", "context", "dot_scores", "length_mask", "luong_attention", "luong_block", "luong_step",
    "masked_encoder", "masked_softmax", "project_values",
]
