"""Layer normalisation over the last axis, as Keras ``LayerNormalization`` computes it, with a
hand-derived backward pass.

For one row ``x`` of width ``d`` (docs/math.md section 17)::

    mu     = (1/d) sum_i x_i                                   (..., 1)
    var    = (1/d) sum_i (x_i - mu)^2                          (..., 1)  population variance
    r      = 1 / sqrt(var + epsilon)                           (..., 1)
    xhat_i = (x_i - mu) r                                      (..., d)
    y_i    = g_i xhat_i + c_i                                  (..., d)  g = gamma, c = beta

and backwards, from ``dy`` (derived in docs/math.md section 17.5)::

    dxhat = dy * g
    dx    = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat))    means over the last axis
    dg    = sum over the leading axes of dy xhat
    dc    = sum over the leading axes of dy

The ``epsilon`` inside the square root does not change the form of ``dx``: ``var`` depends
on ``x`` the same way with or without it.

:func:`layer_norm` uses the derived backward (``jax.custom_vjp``);
:func:`layer_norm_autodiff` is the same forward differentiated by JAX, the reference the
tests compare it with.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]

EPSILON = 1e-3  # Keras LayerNormalization's default (not PyTorch's 1e-5)


def init_layer_norm(dim: int, dtype=jnp.float32) -> Params:
    """Keras ``LayerNormalization(axis=-1)``'s weights: ``gamma`` ones ``(d,)``, ``beta`` zeros ``(d,)``."""
    return {"gamma": jnp.ones((dim,), dtype), "beta": jnp.zeros((dim,), dtype)}


def _normalise(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
    """``(xhat (..., d), r (..., 1))``: the row centred and divided by ``sqrt(var + epsilon)``."""
    mu = jnp.mean(x, axis=-1, keepdims=True)  # (..., 1)
    centred = x - mu  # (..., d)
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)  # (..., 1)
    r = jax.lax.rsqrt(var + epsilon)  # (..., 1)
    return centred * r, r


def layer_norm_autodiff(params: Params, x: jax.Array, epsilon: float = EPSILON) -> jax.Array:
    """``y = gamma * xhat + beta`` over the last axis, ``(..., d) -> (..., d)``; JAX differentiates it."""
    xhat, _ = _normalise(x, epsilon)
    return xhat * params["gamma"] + params["beta"]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(gamma: jax.Array, beta: jax.Array, x: jax.Array, epsilon: float) -> jax.Array:
    xhat, _ = _normalise(x, epsilon)
    return xhat * gamma + beta


def _layer_norm_fwd(gamma, beta, x, epsilon):
    xhat, r = _normalise(x, epsilon)
    return xhat * gamma + beta, (gamma, xhat, r)  # saved: xhat (..., d), r (..., 1)


def _layer_norm_bwd(epsilon, saved, dy):
    gamma, xhat, r = saved
    lead = tuple(range(dy.ndim - 1))  # every axis but the normalised one
    dgamma = jnp.sum(dy * xhat, axis=lead)  # (d,)
    dbeta = jnp.sum(dy, axis=lead)  # (d,)
    dxhat = dy * gamma  # (..., d)
    # The Jacobian of xhat w.r.t. x is r (I - 1/d - xhat xhat^T / d): its transpose applied
    # to dxhat is the line below (docs/math.md section 17.5).
    dx = r * (
        dxhat
        - jnp.mean(dxhat, axis=-1, keepdims=True)
        - xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True)
    )
    return dgamma, dbeta, dx


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(params: Params, x: jax.Array, epsilon: float = EPSILON) -> jax.Array:
    """Keras ``LayerNormalization(epsilon=epsilon)`` over the last axis, ``(..., d) -> (..., d)``,
    with the hand-derived backward pass (same values as :func:`layer_norm_autodiff`)."""
    return _layer_norm(params["gamma"], params["beta"], x, float(epsilon))
