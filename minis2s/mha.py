"""Multi-head scaled dot-product attention, as Keras ``MultiHeadAttention`` computes it, as
small pure functions, with a hand-derived backward pass for the attention core.

Names follow docs/math.md section 17. For ``n_h`` heads of key width ``d_k`` and value
width ``d_v`` over a model width ``d_m``::

    Q = X_q W^Q + b^Q      project   (B, Tq, n_h, d_k)    W^Q (d_m, n_h, d_k)
    K = X_k W^K + b^K      project   (B, Tk, n_h, d_k)
    V = X_v W^V + b^V      project   (B, Tk, n_h, d_v)
    S = (Q / sqrt(d_k)) K^T           per head           (B, n_h, Tq, Tk)
    A = softmax(S masked)             over Tk            (B, n_h, Tq, Tk)
    O = A V                                              (B, Tq, n_h, d_v)
    Y = sum_heads O W^O + b^O         merge              (B, Tq, d_m)    W^O (n_h, d_v, d_m)

The mask is bool, True where a query may attend to a key. As Keras' ``Softmax(mask=...)``
does, masked scores are replaced by ``-1e9`` before the softmax and the weights are set to 0
where masked after it: a masked key gets weight ``exp(-1e9 - max) = 0`` exactly (in float32
and float64) whenever its row has one real key, and a row with no real key at all (a padded
query) gets all-zero weights, so its ``O`` is 0 and its ``Y`` is the bias ``b^O`` (not NaN,
not the uniform weights the ``-1e9`` alone would give).

:func:`scaled_dot_product_attention` has a hand-derived backward pass (``jax.custom_vjp``,
docs/math.md section 17.5); :func:`scaled_dot_product_attention_autodiff` is the same
forward differentiated by JAX, the reference.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Params = dict[str, dict]

NEG = -1e9  # Keras' "large negative number" for masked scores (float32 and float64)


# --------------------------------------------------------------------------- parameters


def _glorot(key: jax.Array, shape: tuple[int, ...], fan_in: int, fan_out: int, dtype) -> jax.Array:
    """Keras ``GlorotUniform`` with the fans ``EinsumDense`` gives it: U(-limit, limit),
    ``limit = sqrt(6 / (fan_in + fan_out))``, where the fans are the products of the kernel's
    input and output axes (not the last two axes, as for a convolution)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def init_mha(
    key: jax.Array, model_dim: int, heads: int, key_dim: int, value_dim: int | None = None, dtype=jnp.float32
) -> Params:
    """Keras ``MultiHeadAttention(num_heads=heads, key_dim=key_dim, value_dim=value_dim)``'s
    weights for queries, keys and values of width ``model_dim``:

    ``query``/``key``: ``kernel (d_m, n_h, d_k)`` (fans ``d_m`` and ``n_h d_k``), ``bias (n_h, d_k)``;
    ``value``: ``kernel (d_m, n_h, d_v)``, ``bias (n_h, d_v)``;
    ``attention_output``: ``kernel (n_h, d_v, d_m)`` (fans ``n_h d_v`` and ``d_m``), ``bias (d_m,)``.

    Glorot-uniform kernels, zero biases; ``value_dim`` defaults to ``key_dim`` as in Keras.
    """
    value_dim = key_dim if value_dim is None else value_dim
    kq, kk, kv, ko = jax.random.split(key, 4)
    d, h = model_dim, heads

    def dense(k, width):
        return {
            "kernel": _glorot(k, (d, h, width), d, h * width, dtype),
            "bias": jnp.zeros((h, width), dtype),
        }

    return {
        "query": dense(kq, key_dim),
        "key": dense(kk, key_dim),
        "value": dense(kv, value_dim),
        "attention_output": {
            "kernel": _glorot(ko, (h, value_dim, d), h * value_dim, d, dtype),
            "bias": jnp.zeros((d,), dtype),
        },
    }


# --------------------------------------------------------------------------- masks


def padding_mask(lengths: jax.Array, T: int) -> jax.Array:
    """``(B, T)`` bool: ``m[b, j] = j < lengths[b]``, True on real characters."""
    return jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None]


def causal_mask(T: int) -> jax.Array:
    """``(T, T)`` bool: ``m[i, j] = j <= i``, position ``i`` may attend to itself and the past."""
    return jnp.arange(T)[None, :] <= jnp.arange(T)[:, None]


def attention_mask(key_valid: jax.Array, query_valid: jax.Array | None = None, causal: bool = False) -> jax.Array:
    """The ``(B, Tq, Tk)`` mask Keras builds from its inputs' masks: ``key_valid (B, Tk)`` AND
    ``query_valid (B, Tq)`` (if given) AND, if ``causal``, :func:`causal_mask` (``Tq == Tk``)."""
    m = key_valid[:, None, :]  # (B, 1, Tk)
    if query_valid is not None:
        m = m & query_valid[:, :, None]  # (B, Tq, Tk)
    if causal:
        m = m & causal_mask(key_valid.shape[1])[None]
    return m


# --------------------------------------------------------------------------- projections


def project(params_dense: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """``x W + b`` per head: ``x (B, T, d_m)``, ``kernel (d_m, n_h, d_k)`` -> ``(B, T, n_h, d_k)``."""
    return jnp.einsum("btm,mhk->bthk", x, params_dense["kernel"]) + params_dense["bias"]


def merge(params_out: dict[str, jax.Array], o: jax.Array) -> jax.Array:
    """``sum_h o_h W^O_h + b^O``: ``o (B, T, n_h, d_v)``, ``kernel (n_h, d_v, d_m)`` -> ``(B, T, d_m)``."""
    return jnp.einsum("bthv,hvm->btm", o, params_out["kernel"]) + params_out["bias"]


# --------------------------------------------------------------------------- the attention core


def _head_mask(mask: jax.Array | None) -> jax.Array:
    """A ``(B, Tq, Tk)``, ``(Tq, Tk)`` or broadcastable bool mask as ``(B|1, 1, Tq|1, Tk|1)``,
    to broadcast against the ``(B, n_h, Tq, Tk)`` scores (every head sees the same mask)."""
    if mask is None:
        return jnp.ones((1, 1, 1, 1), bool)
    mask = jnp.asarray(mask, bool)
    while mask.ndim < 3:
        mask = mask[None]
    return mask[:, None]


def _scaled(q: jax.Array) -> jax.Array:
    """``Q / sqrt(d_k)``: Keras scales the queries (``T_q d_k`` products), not the ``T_q T_k`` scores."""
    return q * (1.0 / math.sqrt(q.shape[-1]))


def _weights(q_scaled: jax.Array, k: jax.Array, m: jax.Array) -> jax.Array:
    """``A (B, n_h, Tq, Tk)`` from the scaled queries: the scores, then Keras' masked softmax."""
    s = jnp.einsum("bqhk,bshk->bhqs", q_scaled, k)  # (B, n_h, Tq, Tk)
    return jnp.where(m, jax.nn.softmax(jnp.where(m, s, NEG), axis=-1), 0.0)


def _forward(q, k, v, m):
    """The core's forward on a head-shaped mask ``m``: ``(O (B, Tq, n_h, d_v), A (B, n_h, Tq, Tk))``."""
    a = _weights(_scaled(q), k, m)
    return jnp.einsum("bhqs,bshv->bqhv", a, v), a


@jax.custom_vjp
def _attention(q, k, v, m):
    return _forward(q, k, v, m)


def _attention_fwd(q, k, v, m):
    q_scaled = _scaled(q)
    a = _weights(q_scaled, k, m)
    o = jnp.einsum("bhqs,bshv->bqhv", a, v)  # (B, Tq, n_h, d_v)
    return (o, a), (q_scaled, k, v, a)  # A is 0 wherever m is False: the mask need not be saved


def _attention_bwd(saved, cotangents):
    """From ``dO`` and ``dA`` (the weights are an output too) to ``dQ, dK, dV``
    (docs/math.md section 17.5)::

        dV  = A^T dO                           per head
        dA' = dO V^T + dA
        dS  = A * (dA' - rowsum(A * dA'))      softmax's Jacobian-vector product
        dQ  = dS K / sqrt(d_k),   dK = dS^T (Q / sqrt(d_k))

    A masked score is the constant -1e9, so its ``dS`` must be 0: the product with the saved
    ``A``, exactly 0 there, gives it without a select. ``A`` is the masked weights: it equals
    the softmax's output except on rows with no real key, where both it and the true ``dS``
    are 0.
    """
    q_scaled, k, v, a = saved
    do, da = cotangents
    dv = jnp.einsum("bhqs,bqhv->bshv", a, do)  # (B, Tk, n_h, d_v)
    da = jnp.einsum("bqhv,bshv->bhqs", do, v) + da  # (B, n_h, Tq, Tk)
    ds = a * (da - jnp.sum(a * da, axis=-1, keepdims=True))  # (B, n_h, Tq, Tk), 0 where masked
    dq = _scaled(jnp.einsum("bhqs,bshk->bqhk", ds, k))  # (B, Tq, n_h, d_k)
    dk = jnp.einsum("bhqs,bqhk->bshk", ds, q_scaled)  # (B, Tk, n_h, d_k)
    return dq, dk, dv, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def scaled_dot_product_attention_autodiff(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """:func:`scaled_dot_product_attention` differentiated by JAX (the reference)."""
    return _forward(q, k, v, _head_mask(mask))


def scaled_dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """``O = softmax(Q K^T / sqrt(d_k), masked) V`` per head, with the hand-derived backward.

    Args: ``q (B, Tq, n_h, d_k)``, ``k (B, Tk, n_h, d_k)``, ``v (B, Tk, n_h, d_v)``, ``mask``
    bool ``(B, Tq, Tk)`` or broadcastable to it (``(Tq, Tk)``, ``(B, 1, Tk)``), True = may
    attend, None = no mask. Returns ``(O (B, Tq, n_h, d_v), A (B, n_h, Tq, Tk))``.
    """
    return _attention(q, k, v, _head_mask(mask))


def multi_head_attention(
    params: Params, query: jax.Array, value: jax.Array, key: jax.Array | None = None, mask: jax.Array | None = None,
    attend=scaled_dot_product_attention,
) -> tuple[jax.Array, jax.Array]:
    """Keras ``MultiHeadAttention(...)(query, value, key, attention_mask=mask,
    return_attention_scores=True)``: project, attend, merge.

    ``query (B, Tq, d_m)``, ``value (B, Tk, d_m)``, ``key`` defaults to ``value``; ``mask`` as
    for :func:`scaled_dot_product_attention`. Returns ``(Y (B, Tq, d_m), A (B, n_h, Tq, Tk))``.
    ``attend`` picks the core (the autodiff reference in tests).
    """
    key = value if key is None else key
    q = project(params["query"], query)  # (B, Tq, n_h, d_k)
    k = project(params["key"], key)  # (B, Tk, n_h, d_k)
    v = project(params["value"], value)  # (B, Tk, n_h, d_v)
    o, a = attend(q, k, v, mask)
    return merge(params["attention_output"], o), a
