"""Additive (Bahdanau) attention: score, masked softmax and context, as pure functions.

For one decoder query ``s`` (the previous decoder state) and the encoder outputs
``h_1 .. h_T``::

    q      = s W_q                              (B, A)      query projection
    k_j    = h_j W_k                            (B, T, A)   key projections, computed once
    e_j    = v^T tanh(q + k_j)                  (B, T)      additive score
    a      = masked_softmax(e, mask)            (B, T)      a_j = 0 exactly where mask_j is False
    c      = sum_j a_j h_j                      (B, H)      context

``v`` is Keras ``AdditiveAttention``'s ``scale`` weight: Keras computes
``sum(scale * tanh(q + k), axis=-1)``, which is ``v^T tanh(q + k)``. ``W_q`` and ``W_k``
are two bias-free ``Dense`` kernels (a bias in each would only add ``b_q + b_k`` inside
the ``tanh``; Bahdanau et al. and d2l leave them out).

Parameters (Keras names; ``A`` = attention units)::

    {"query": {"kernel" (H_dec, A)}, "key": {"kernel" (H_enc, A)}, "attention": {"scale" (A,)}}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .attention import context, masked_softmax
from .lstm import glorot_uniform

Params = dict[str, dict[str, jax.Array]]


def init_additive(key: jax.Array, query_dim: int, key_dim: int, units: int, dtype=jnp.float32) -> Params:
    """Keras initialisers: glorot-uniform ``W_q``, ``W_k``, and ``v`` (``scale``), whose
    glorot limit for a 1-D shape ``(A,)`` is ``sqrt(6 / (A + A))`` (Keras takes
    ``fan_in = fan_out = A``)."""
    k_q, k_k, k_v = jax.random.split(key, 3)
    limit = jnp.sqrt(3.0 / units)
    return {
        "query": {"kernel": glorot_uniform(k_q, (query_dim, units), dtype)},
        "key": {"kernel": glorot_uniform(k_k, (key_dim, units), dtype)},
        "attention": {"scale": jax.random.uniform(k_v, (units,), dtype, -limit, limit)},
    }


def additive_scores(query: jax.Array, keys: jax.Array, scale: jax.Array) -> jax.Array:
    """``e_j = v^T tanh(q + k_j)``: query ``(B, A)``, keys ``(B, T, A)``, ``v`` ``(A,)`` -> ``(B, T)``."""
    return jnp.tanh(query[:, None, :] + keys) @ scale  # (B, T)


def attend(params: Params, query_state: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array):
    """One query against the encoder outputs: ``(context (B, H), weights (B, T))``.

    ``keys = values @ W_k`` is precomputed by the caller (once per sentence, not per step).
    """
    q = query_state @ params["query"]["kernel"]  # (B, A)
    a = masked_softmax(additive_scores(q, keys, params["attention"]["scale"]), mask)  # (B, T)
    return context(a, values), a
