"""The GRU (minis2s.gru): NumPy float64 reference, hand-derived backward vs autodiff,
Keras initialisation, the cell registry and the seed model built on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import cells, gru, models, train
from minis2s.models import ModelConfig
from tests import reference as ref

# (batch, time, input dim, units, token inputs?): batch 1 and length 1; tokens and floats.
from tests.conftest import split_tiers

SHAPES = [(1, 1, 5, 3, True), (4, 5, 9, 6, True), (2, 6, 3, 5, False)]


def _problem(key, B, T, D, H, tokens, dtype):
    """Random GRU params with non-zero biases, inputs, an initial state, output weights."""
    ks = jax.random.split(key, 6)
    params = gru.init_gru(ks[0], D, H, dtype)
    params["bias"] = 0.4 * jax.random.normal(ks[1], (2, 3 * H), dtype)
    x = jax.random.randint(ks[2], (B, T), 0, D) if tokens else jax.random.normal(ks[2], (B, T, D), dtype)
    h0 = 0.7 * jax.random.normal(ks[3], (B, H), dtype)
    w_hs = jax.random.normal(ks[4], (B, T, H), dtype)
    w_h = jax.random.normal(ks[5], (B, H), dtype)
    return params, x, h0, (w_hs, w_h)


def _loss(layer, w):
    w_hs, w_h = w

    def f(params, h0, x):
        hs, (h,) = layer(params, x, (h0,))
        return jnp.sum(w_hs * jnp.tanh(hs)) + jnp.sum(w_h * jnp.sin(h))

    return f


def _value_and_grads(layer, params, x, h0, w, tokens):
    argnums = (0, 1) if tokens else (0, 1, 2)
    return jax.jit(jax.value_and_grad(_loss(layer, w), argnums=argnums))(params, h0, x)


def _assert_trees_close(a, b, tol):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for u, v in zip(la, lb):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _onehot(x, D):
    x = np.asarray(x)
    return np.eye(D)[x] if x.ndim == 2 else x.astype(np.float64)


@pytest.mark.parametrize("B,T,D,H,tokens", split_tiers(SHAPES, fast=(1,)))
def test_layers_match_numpy_reference_float64(B, T, D, H, tokens):
    with jax.enable_x64(True):
        params, x, h0, _ = _problem(jax.random.PRNGKey(B + 10 * T), B, T, D, H, tokens, jnp.float64)
        p = {k: np.asarray(v) for k, v in params.items()}
        want_hs, (want_h,) = ref.gru_layer(_onehot(x, D), p["kernel"], p["recurrent_kernel"], p["bias"], np.asarray(h0))
        for layer in (gru.layer, gru.bptt_layer):
            hs, (h,) = jax.jit(layer)(params, x, (h0,))
            assert hs.shape == (B, T, H) and hs.dtype == jnp.float64
            np.testing.assert_allclose(hs, want_hs, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(h, want_h, rtol=1e-12, atol=1e-12)
        # The zero initial state is Keras' default.
        hs, _ = gru.layer(params, x)
        np.testing.assert_allclose(hs, ref.gru_layer(_onehot(x, D), p["kernel"], p["recurrent_kernel"], p["bias"])[0], atol=1e-12)


@pytest.mark.parametrize("B,T,D,H,tokens", split_tiers(SHAPES, fast=(1, 2)))
def test_hand_derived_backward_matches_autodiff_float64(B, T, D, H, tokens):
    with jax.enable_x64(True):
        params, x, h0, w = _problem(jax.random.PRNGKey(7 + T + B), B, T, D, H, tokens, jnp.float64)
        want = _value_and_grads(gru.layer, params, x, h0, w, tokens)
        got = _value_and_grads(gru.bptt_layer, params, x, h0, w, tokens)
        _assert_trees_close(got, want, 1e-10)
        # Every parameter really receives a gradient (a zero gradient would compare trivially).
        for name, g in got[1][0].items():
            assert float(jnp.max(jnp.abs(g))) > 1e-3, name
    assert jnp.zeros(()).dtype == jnp.float32


def test_hand_derived_backward_float32_and_finite_differences():
    params, x, h0, w = _problem(jax.random.PRNGKey(3), 3, 4, 5, 4, False, jnp.float32)
    _assert_trees_close(
        _value_and_grads(gru.bptt_layer, params, x, h0, w, False), _value_and_grads(gru.layer, params, x, h0, w, False), 2e-5
    )
    # An oracle that is not autodiff: central differences in float64 along a random direction.
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x64, h64, w64 = x.astype(jnp.float64), h0.astype(jnp.float64), tuple(a.astype(jnp.float64) for a in w)
        f = jax.jit(_loss(gru.bptt_layer, w64))  # one program each, not one per operation
        grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(p64, h64, x64)
        direction = jax.tree.map(lambda a: jnp.asarray(np.random.default_rng(0).normal(size=a.shape)), (p64, h64, x64))
        eps = 1e-6
        plus = jax.tree.map(lambda a, d: a + eps * d, (p64, h64, x64), direction)
        minus = jax.tree.map(lambda a, d: a - eps * d, (p64, h64, x64), direction)
        numeric = (f(*plus) - f(*minus)) / (2 * eps)
        analytic = sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        assert abs(float(numeric - analytic)) < 1e-7 * max(1.0, abs(float(analytic)))


def test_token_kernel_gradient_is_scatter_add_of_one_hot():
    params, tok, h0, w = _problem(jax.random.PRNGKey(5), 3, 4, 6, 3, True, jnp.float32)
    g_tok = jax.grad(_loss(gru.bptt_layer, w))(params, h0, tok)
    g_hot = jax.grad(_loss(gru.bptt_layer, w))(params, h0, jax.nn.one_hot(tok, 6))
    _assert_trees_close(g_tok, g_hot, 1e-5)
    for k in sorted(set(range(6)) - set(np.asarray(tok).ravel().tolist())):
        assert np.all(np.asarray(g_tok["kernel"][k]) == 0.0)


def test_keras_initialisation():
    p = gru.init_gru(jax.random.PRNGKey(0), 40, 16)
    assert {k: v.shape for k, v in p.items()} == {"kernel": (40, 48), "recurrent_kernel": (16, 48), "bias": (2, 48)}
    np.testing.assert_array_equal(p["bias"], 0.0)  # no forget-gate style offset in a GRU
    u = np.asarray(p["recurrent_kernel"])
    np.testing.assert_allclose(u @ u.T, np.eye(16), atol=1e-5)  # orthonormal rows
    limit = np.sqrt(6.0 / (40 + 48))
    assert 0.95 * limit < float(jnp.max(jnp.abs(p["kernel"]))) <= limit


def test_cell_registry_step_and_zero_state():
    assert set(cells.CELLS["gru"]) == {"autodiff", "bptt"}
    cell = cells.get("gru")
    assert cell.name == "gru" and cell.layer is gru.bptt_layer
    params, tok, h0, _ = _problem(jax.random.PRNGKey(9), 3, 5, 7, 4, True, jnp.float32)
    hs, (h_T,) = cell.layer(params, tok, (h0,))
    state = (h0,)
    for t in range(tok.shape[1]):  # step by step with token rows == the scan
        state = cell.step(params, tok[:, t], state)
        np.testing.assert_allclose(state[0], hs[:, t], atol=1e-6)
    onehot_state = cell.step(params, jax.nn.one_hot(tok[:, 0], 7), (h0,))
    np.testing.assert_allclose(onehot_state[0], hs[:, 0], atol=1e-6)
    (z,) = cell.zero_state(params, 3)
    assert z.shape == (3, 4) and not np.any(np.asarray(z))


# --------------------------------------------------------------------------- the seed model with a GRU


def _batch(rng, cfg, b=3, t_enc=4, t_dec=5):
    dec = rng.integers(0, cfg.num_decoder_tokens, (b, t_dec)).astype(np.int32)
    return {
        "encoder_tokens": rng.integers(0, cfg.num_encoder_tokens, (b, t_enc)).astype(np.int32),
        "encoder_lengths": np.full((b,), t_enc, np.int32),
        "decoder_tokens": dec,
        "target_tokens": np.concatenate([dec[:, 1:], np.zeros((b, 1), np.int32)], 1),
        "weight": np.ones(b, np.float32),
    }


GRU_CFG = ModelConfig(num_encoder_tokens=6, num_decoder_tokens=7, latent_dim=5, cell="gru")


def test_seed_model_with_gru_matches_numpy_reference_and_steps():
    m = models.build(GRU_CFG)
    p = m.init(jax.random.PRNGKey(1))
    assert jax.tree.map(lambda a: a.shape, p)["encoder"] == {"kernel": (6, 15), "recurrent_kernel": (5, 15), "bias": (2, 15)}
    p["decoder"]["bias"] = p["decoder"]["bias"] + 0.3  # non-zero biases reach the output
    bt = _batch(np.random.default_rng(0), GRU_CFG)
    probs = m.apply(p, bt)
    want = ref.seed_model(p, np.eye(6)[bt["encoder_tokens"]], np.eye(7)[bt["decoder_tokens"]], cell="gru")
    np.testing.assert_allclose(probs, want, atol=1e-6)
    # encode + decode_step fed the true previous tokens == teacher-forced apply.
    memory, state = m.encode(p, bt["encoder_tokens"], bt["encoder_lengths"])
    assert len(state) == 1  # the GRU hands the decoder one vector
    for t in range(bt["decoder_tokens"].shape[1]):
        step_probs, state, _ = m.decode_step(p, memory, jnp.asarray(bt["decoder_tokens"][:, t]), state)
        np.testing.assert_allclose(step_probs, probs[:, t], atol=1e-6)


def test_seed_model_gru_loss_gradient_bptt_equals_autodiff():
    bt = _batch(np.random.default_rng(1), GRU_CFG, b=4, t_enc=3, t_dec=6)
    bt["weight"][-1] = 0.0
    p = models.build(GRU_CFG).init(jax.random.PRNGKey(2))
    results = {}
    for grad in ("autodiff", "bptt"):
        fn = jax.jit(jax.value_and_grad(train.loss_fn, has_aux=True), static_argnums=2)
        results[grad] = fn(p, bt, models.build(GRU_CFG, grad).apply)
    _assert_trees_close(results["bptt"], results["autodiff"], 1e-5)


# The seed's sizes (docs/math.md, section 1) and what each cell costs in parameters.
SEED_SIZES = dict(num_encoder_tokens=70, num_decoder_tokens=93, latent_dim=256)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_parameter_counts_of_the_seed_model(cell):
    """The counts in docs/math.md's table: LSTM 4H(D + H + 1) per layer, GRU 3H(D + H + 2),
    counted from the shapes ``init`` makes and checked against the table's row."""
    import re
    from pathlib import Path

    shapes = models.param_shapes(ModelConfig(**SEED_SIZES, cell=cell))
    count = lambda role: sum(int(np.prod(s)) for p, s in shapes.items() if p.startswith(role + "/"))  # noqa: E731
    v_in, v, h = 70, 93, 256
    gates, biases = {"lstm": (4, 1), "gru": (3, 2)}[cell]
    assert count("encoder") == gates * h * (v_in + h + biases)
    assert count("decoder") == gates * h * (v + h + biases)
    assert count("dense") == h * v + v
    total = sum(int(np.prod(s)) for s in shapes.values())
    doc = (Path(__file__).resolve().parent.parent / "docs" / "math.md").read_text()
    row = re.search(rf"^\| {cell.upper()} \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", doc, re.M)
    assert row, f"docs/math.md has no parameter-count row for {cell}"
    assert [int(x.replace(",", "")) for x in row.groups()] == [count("encoder"), count("decoder"), total]
