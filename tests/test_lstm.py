"""LSTM: NumPy float64 reference, scan vs Python loop, gather vs one-hot matmul, initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import lstm
from tests import reference as ref

B, T, D, H = 3, 7, 5, 4


def random_params(rng, d=D, h=H, dtype=np.float64):
    return {
        "kernel": rng.normal(0, 0.5, (d, 4 * h)).astype(dtype),
        "recurrent_kernel": rng.normal(0, 0.5, (h, 4 * h)).astype(dtype),
        "bias": rng.normal(0, 0.5, (4 * h,)).astype(dtype),
    }


def test_cell_matches_numpy_float32():
    rng = np.random.default_rng(0)
    p = random_params(rng)
    x, h, c = rng.normal(size=(B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    want_h, want_c = ref.lstm_cell(x, h, c, p["kernel"], p["recurrent_kernel"], p["bias"])
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
    zx = jnp.asarray(x, jnp.float32) @ p32["kernel"] + p32["bias"]
    got_h, got_c = lstm.cell(p32, zx, (jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)))
    np.testing.assert_allclose(got_h, want_h, atol=1e-6)
    np.testing.assert_allclose(got_c, want_c, atol=1e-6)


def test_layer_matches_numpy_float64():
    rng = np.random.default_rng(1)
    p = random_params(rng)
    xs = rng.normal(size=(B, T, D))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    want_hs, (want_h, want_c) = ref.lstm_layer(xs, p["kernel"], p["recurrent_kernel"], p["bias"], h0, c0)
    with jax.enable_x64(True):
        hs, (h, c) = lstm.layer(jax.tree.map(jnp.asarray, p), jnp.asarray(xs), (jnp.asarray(h0), jnp.asarray(c0)))
        assert hs.dtype == jnp.float64
        np.testing.assert_allclose(hs, want_hs, atol=1e-12, rtol=0)
        np.testing.assert_allclose(h, want_h, atol=1e-12, rtol=0)
        np.testing.assert_allclose(c, want_c, atol=1e-12, rtol=0)


def test_layer_matches_numpy_float32():
    rng = np.random.default_rng(2)
    p = random_params(rng)
    xs = rng.normal(size=(B, T, D))
    want_hs, (want_h, want_c) = ref.lstm_layer(xs, p["kernel"], p["recurrent_kernel"], p["bias"])
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
    hs, (h, c) = lstm.layer(p32, jnp.asarray(xs, jnp.float32))
    np.testing.assert_allclose(hs, want_hs, atol=1e-6)
    np.testing.assert_allclose(c, want_c, atol=1e-6)


def test_scan_equals_python_loop_over_cell():
    rng = np.random.default_rng(3)
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), random_params(rng))
    xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    hs, (h_T, c_T) = lstm.layer(p, xs)
    h = c = jnp.zeros((B, H))
    loop_hs = []
    for t in range(T):
        h, c = lstm.cell(p, xs[:, t] @ p["kernel"] + p["bias"], (h, c))
        loop_hs.append(h)
    np.testing.assert_allclose(hs, jnp.stack(loop_hs, 1), atol=1e-6)
    np.testing.assert_allclose(h_T, h, atol=1e-6)
    np.testing.assert_allclose(c_T, c, atol=1e-6)


def test_token_gather_equals_one_hot_matmul():
    rng = np.random.default_rng(4)
    V = 9
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), random_params(rng, d=V))
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
    one_hot = jax.nn.one_hot(tokens, V, dtype=jnp.float32)
    zx_gather = lstm.input_projection(p, jnp.asarray(tokens))
    zx_matmul = lstm.input_projection(p, one_hot)
    assert zx_gather.shape == (T, B, 4 * H)
    np.testing.assert_allclose(zx_gather, zx_matmul, atol=1e-6)
    hs_g, _ = lstm.layer(p, jnp.asarray(tokens))
    hs_m, _ = lstm.layer(p, one_hot)
    np.testing.assert_allclose(hs_g, hs_m, atol=1e-6)


# --------------------------------------------------------------------------- init


def test_init_shapes_bounds_orthogonality_and_bias():
    d, h = 70, 64
    p = lstm.init_lstm(jax.random.PRNGKey(0), d, h)
    assert p["kernel"].shape == (d, 4 * h)
    assert p["recurrent_kernel"].shape == (h, 4 * h)
    assert p["bias"].shape == (4 * h,)
    limit = np.sqrt(6.0 / (d + 4 * h))
    k = np.asarray(p["kernel"])
    assert np.abs(k).max() <= limit
    assert np.abs(k).max() > 0.95 * limit  # fills the interval, not a narrower one
    assert abs(k.std() - limit / np.sqrt(3)) < 0.05 * limit  # std of U(-a, a) is a / sqrt(3)
    U = np.asarray(p["recurrent_kernel"], np.float64)
    np.testing.assert_allclose(U @ U.T, np.eye(h), atol=1e-5)  # (H, 4H): orthonormal rows
    b = np.asarray(p["bias"])
    np.testing.assert_array_equal(b[h : 2 * h], 1.0)
    np.testing.assert_array_equal(b[:h], 0.0)
    np.testing.assert_array_equal(b[2 * h :], 0.0)


def test_orthogonal_square_and_tall():
    q = np.asarray(lstm.orthogonal(jax.random.PRNGKey(1), (16, 16)), np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(16), atol=1e-5)
    q = np.asarray(lstm.orthogonal(jax.random.PRNGKey(1), (20, 8)), np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(8), atol=1e-5)  # tall: orthonormal columns


def test_init_is_deterministic_per_key():
    a = lstm.init_lstm(jax.random.PRNGKey(0), 5, 4)
    b = lstm.init_lstm(jax.random.PRNGKey(0), 5, 4)
    c = lstm.init_lstm(jax.random.PRNGKey(1), 5, 4)
    for name in ("kernel", "recurrent_kernel"):
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.allclose(a[name], c[name])
