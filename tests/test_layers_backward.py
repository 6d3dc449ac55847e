"""The hand-derived backward passes of minis2s.layernorm and minis2s.mha against JAX autodiff
through the same forward (float64, to 1e-10) and against central finite differences.

Each case is one small compiled program; float64 is switched on for the test only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from minis2s import layernorm, mha
from minis2s.gradcheck import _float64

TOL = 1e-10


def _close(a, b, tol=TOL):
    """Every leaf: ``max |a - b| <= tol * max(1, max |b|)``, and b not all zero."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == np.float64 and x.shape == y.shape
        assert np.max(np.abs(y)) > 0, "comparing zeros proves nothing"
        assert np.max(np.abs(x - y)) <= tol * max(1.0, np.max(np.abs(y))), np.max(np.abs(x - y))


def _ln_problem():
    ks = jax.random.split(jax.random.PRNGKey(11), 4)
    d = 5
    x = 3.0 * jax.random.normal(ks[0], (2, 3, d), jnp.float64) + 1.0
    x = x.at[0, 0].set(0.01 * x[0, 0])  # a row with variance near epsilon: epsilon matters there
    params = {"gamma": 1.0 + 0.5 * jax.random.normal(ks[1], (d,), jnp.float64),
              "beta": jax.random.normal(ks[2], (d,), jnp.float64)}
    w = jax.random.normal(ks[3], (2, 3, d), jnp.float64)
    return params, x, w


def test_layer_norm_backward_matches_autodiff_and_finite_differences_float64():
    with _float64():
        params, x, w = _ln_problem()

        def loss(f):
            return lambda p, x: jnp.sum(w * jnp.sin(f(p, x)))

        ours = jax.jit(jax.grad(loss(layernorm.layer_norm), argnums=(0, 1)))(params, x)
        ref = jax.jit(jax.grad(loss(layernorm.layer_norm_autodiff), argnums=(0, 1)))(params, x)
        _close(ours, ref)
        np.testing.assert_allclose(layernorm.layer_norm(params, x), layernorm.layer_norm_autodiff(params, x),
                                   rtol=0, atol=1e-14)
        # central differences on x, one coordinate at a time (30 of them)
        f = lambda x: loss(layernorm.layer_norm)(params, x)  # noqa: E731
        eps = 1e-6
        steps = eps * jnp.eye(x.size, dtype=jnp.float64).reshape(x.size, *x.shape)
        fd = jax.jit(lambda x: (jax.vmap(f)(x + steps) - jax.vmap(f)(x - steps)) / (2 * eps))(x)
        np.testing.assert_allclose(np.asarray(ours[1]).ravel(), np.asarray(fd), rtol=1e-7, atol=1e-8)


def _attention_problem():
    B, Tq, Tk, h, dk, dv = 3, 4, 5, 2, 3, 2
    ks = jax.random.split(jax.random.PRNGKey(5), 6)
    q = jax.random.normal(ks[0], (B, Tq, h, dk), jnp.float64)
    k = jax.random.normal(ks[1], (B, Tk, h, dk), jnp.float64)
    v = jax.random.normal(ks[2], (B, Tk, h, dv), jnp.float64)
    # ragged keys, a causal-style band, and one padded query with no real key at all
    mask = mha.attention_mask(mha.padding_mask(jnp.array([5, 3, 2]), Tk), mha.padding_mask(jnp.array([4, 4, 3]), Tq))
    mask = mask & (jnp.arange(Tk)[None, :] <= jnp.arange(Tq)[:, None] + 1)[None]
    w_o = jax.random.normal(ks[3], (B, Tq, h, dv), jnp.float64)
    w_a = jax.random.normal(ks[4], (B, h, Tq, Tk), jnp.float64)
    return q, k, v, mask, w_o, w_a


def test_attention_backward_matches_autodiff_and_finite_differences_float64():
    with _float64():
        q, k, v, mask, w_o, w_a = _attention_problem()

        def loss(f):
            def g(q, k, v):
                o, a = f(q, k, v, mask)
                # a cotangent on both outputs: the weights are returned and may be used
                return jnp.sum(w_o * jnp.tanh(o)) + jnp.sum(w_a * a * a)
            return g

        ours = jax.jit(jax.grad(loss(mha.scaled_dot_product_attention), argnums=(0, 1, 2)))(q, k, v)
        ref = jax.jit(jax.grad(loss(mha.scaled_dot_product_attention_autodiff), argnums=(0, 1, 2)))(q, k, v)
        _close(ours, ref)
        o1, a1 = mha.scaled_dot_product_attention(q, k, v, mask)
        o2, a2 = mha.scaled_dot_product_attention_autodiff(q, k, v, mask)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(a1, a2)
        # the padded query (row 2, position 3) has no real key: zero weights, zero gradient
        assert not np.any(np.asarray(a1)[2, :, 3]) and not np.any(np.asarray(ours[0])[2, 3])
        # central differences on every input coordinate, all three inputs at once
        flat, unravel = ravel_pytree((q, k, v))
        f = lambda z: loss(mha.scaled_dot_product_attention)(*unravel(z))  # noqa: E731
        eps = 1e-6
        steps = eps * jnp.eye(flat.size, dtype=jnp.float64)
        fd = jax.jit(lambda z: (jax.vmap(f)(z + steps) - jax.vmap(f)(z - steps)) / (2 * eps))(flat)
        np.testing.assert_allclose(ravel_pytree(ours)[0], fd, rtol=1e-7, atol=1e-8)


def test_multi_head_attention_gradients_match_autodiff_float64():
    """The whole layer (projections, core, merge) with the derived core vs all autodiff."""
    with _float64():
        ks = jax.random.split(jax.random.PRNGKey(8), 4)
        params = mha.init_mha(ks[0], 6, 2, 3, dtype=jnp.float64)
        params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(ks[1], a.shape, jnp.float64), params)
        x = jax.random.normal(ks[2], (2, 4, 6), jnp.float64)
        mask = mha.attention_mask(mha.padding_mask(jnp.array([4, 2]), 4), causal=True)

        def loss(attend):
            def g(p, x):
                y, _ = mha.multi_head_attention(p, x, x, mask=mask, attend=attend)
                return jnp.sum(jnp.tanh(y) * y)
            return g

        ours = jax.jit(jax.grad(loss(mha.scaled_dot_product_attention), argnums=(0, 1)))(params, x)
        ref = jax.jit(jax.grad(loss(mha.scaled_dot_product_attention_autodiff), argnums=(0, 1)))(params, x)
        # the key bias gradient is exactly 0 in exact arithmetic (a shift of each score row)
        ours[0]["key"]["bias"] = ref[0]["key"]["bias"] = jnp.ones(1, jnp.float64)
        _close(ours, ref)
