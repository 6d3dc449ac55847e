"""The hand-derived BPTT layer (minis2s.bptt) against JAX autodiff through the reference scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minis2s import bptt, lstm, model, train
from tests.conftest import assert_trees_equal, split_tiers
from minis2s.cli import build_parser

# (batch, time, input dim, units, token inputs?) -- includes batch 1 and length 1.
SHAPES = [
    (1, 1, 5, 3, True),
    (1, 7, 4, 2, True),
    (3, 1, 6, 4, False),
    (4, 5, 9, 6, True),
]


def _problem(key, B, T, D, H, tokens, dtype):
    """Random layer params (non-trivial bias), inputs, initial state and output weights."""
    ks = jax.random.split(key, 8)
    params = lstm.init_lstm(ks[0], D, H, dtype)
    params["bias"] = params["bias"] + 0.3 * jax.random.normal(ks[1], (4 * H,), dtype)
    if tokens:
        x = jax.random.randint(ks[2], (B, T), 0, D)
    else:
        x = jax.random.normal(ks[2], (B, T, D), dtype)
    state = (0.5 * jax.random.normal(ks[3], (B, H), dtype), jax.random.normal(ks[4], (B, H), dtype))
    # Weights on every output so that hs, h_T and c_T all receive a cotangent.
    w = [jax.random.normal(k, s, dtype) for k, s in zip(ks[5:], [(B, T, H), (B, H), (B, H)])]
    return params, x, state, w


def _loss(layer, w):
    w_hs, w_h, w_c = w

    def f(params, state, x):
        hs, (h, c) = layer(params, x, state)
        return jnp.sum(w_hs * jnp.tanh(hs)) + jnp.sum(w_h * h) + jnp.sum(w_c * jnp.sin(c))

    return f


def _value_and_grads(layer, params, x, state, w, tokens):
    argnums = (0, 1) if tokens else (0, 1, 2)
    return jax.jit(jax.value_and_grad(_loss(layer, w), argnums=argnums))(params, state, x)


def _assert_trees_close(a, b, tol):
    assert_trees_equal(a, b, rtol=tol, atol=tol)


# Each shape is a compilation: the fast tier keeps one per kind of input between the float32
# and the float64 test, the slow tier the others.
@pytest.mark.parametrize("B,T,D,H,tokens", split_tiers(SHAPES, fast=(0, 3)))
def test_layer_grads_match_autodiff_float32(B, T, D, H, tokens):
    params, x, state, w = _problem(jax.random.PRNGKey(B * 100 + T), B, T, D, H, tokens, jnp.float32)
    ref = _value_and_grads(lstm.layer, params, x, state, w, tokens)
    got = _value_and_grads(bptt.layer, params, x, state, w, tokens)
    _assert_trees_close(got, ref, 1e-5)
    # The forward values too (hs and the final state).
    _assert_trees_close(jax.jit(bptt.layer)(params, x, state), jax.jit(lstm.layer)(params, x, state), 1e-6)


@pytest.mark.parametrize("B,T,D,H,tokens", split_tiers([SHAPES[2], SHAPES[3]], fast=(0,)))
def test_layer_grads_match_autodiff_float64(B, T, D, H, tokens):
    with jax.enable_x64(True):  # scoped: leaves the rest of the suite in float32
        params, x, state, w = _problem(jax.random.PRNGKey(7 + T), B, T, D, H, tokens, jnp.float64)
        assert params["kernel"].dtype == jnp.float64
        ref = _value_and_grads(lstm.layer, params, x, state, w, tokens)
        got = _value_and_grads(bptt.layer, params, x, state, w, tokens)
        _assert_trees_close(got, ref, 1e-10)
    assert jnp.zeros(()).dtype == jnp.float32


def test_zero_initial_state_and_time_major():
    params, x, _, _ = _problem(jax.random.PRNGKey(3), 2, 4, 5, 3, True, jnp.float32)
    hs_tm, state_tm = bptt.layer_time_major(params, x)
    hs, state = lstm.layer(params, x)
    np.testing.assert_allclose(np.swapaxes(hs_tm, 0, 1), hs, atol=1e-6)
    _assert_trees_close(state_tm, state, 1e-6)


def test_token_kernel_gradient_is_scatter_add_of_one_hot():
    """Tokens and their one-hot floats give the same kernel gradient (gather == one-hot matmul)."""
    params, tok, state, w = _problem(jax.random.PRNGKey(5), 3, 4, 6, 3, True, jnp.float32)
    onehot = jax.nn.one_hot(tok, 6)
    g_tok = jax.grad(_loss(bptt.layer, w))(params, state, tok)
    g_hot = jax.grad(_loss(bptt.layer, w))(params, state, onehot)
    _assert_trees_close(g_tok, g_hot, 1e-5)
    # Repeated tokens must accumulate: the gradient row of an unused token is exactly zero.
    unused = sorted(set(range(6)) - set(np.asarray(tok).ravel().tolist()))
    for k in unused:
        assert np.all(np.asarray(g_tok["kernel"][k]) == 0.0)


# --------------------------------------------------------------------------- whole model


def _batch(key, B, t_enc, t_dec, v_in, v_out):
    k1, k2, k3 = jax.random.split(key, 3)
    weight = jnp.ones((B,), jnp.float32)
    if B > 1:
        weight = weight.at[-1].set(0.0)  # a padding row, as in the last batch of an epoch
    return {
        "encoder_tokens": jax.random.randint(k1, (B, t_enc), 0, v_in),
        "decoder_tokens": jax.random.randint(k2, (B, t_dec), 0, v_out),
        "target_tokens": jax.random.randint(k3, (B, t_dec), 0, v_out),
        "weight": weight,
    }


@pytest.mark.parametrize("B,t_enc,t_dec", [(1, 1, 1), (5, 3, 7)])
def test_model_loss_and_grads_match(B, t_enc, t_dec):
    cfg = model.ModelConfig(num_encoder_tokens=7, num_decoder_tokens=9, latent_dim=6)
    params = model.init_params(jax.random.PRNGKey(B), cfg)
    batch = _batch(jax.random.PRNGKey(10 + B), B, t_enc, t_dec, 7, 9)
    results = {}
    for grad in ("autodiff", "bptt"):
        fn = jax.jit(jax.value_and_grad(train.loss_fn, has_aux=True), static_argnums=2)
        results[grad] = fn(params, batch, model.make_apply(grad))
    _assert_trees_close(results["bptt"], results["autodiff"], 1e-5)


@pytest.mark.slow  # a training: the slow tier
def test_training_steps_give_same_params():
    cfg = model.ModelConfig(num_encoder_tokens=8, num_decoder_tokens=10, latent_dim=8)
    params0 = model.init_params(jax.random.PRNGKey(0), cfg)
    optimizer = optax.rmsprop(1e-3, decay=0.9, eps=1e-7)
    batches = [_batch(jax.random.PRNGKey(20 + i), 6, 4, 9, 8, 10) for i in range(3)]
    final = {}
    for grad in ("autodiff", "bptt"):
        step = train.make_train_step(optimizer, grad=grad)
        params, opt_state = params0, optimizer.init(params0)
        for b in batches:
            params, opt_state, metrics = step(params, opt_state, b)
        final[grad] = params
    # RMSprop divides by sqrt(v): early steps amplify tiny gradient differences, so compare
    # at 1e-5 after 3 steps of lr 1e-3 (differences seen: ~1e-7).
    _assert_trees_close(final["bptt"], final["autodiff"], 1e-5)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(final["bptt"]), jax.tree.leaves(params0)))
    assert moved > 1e-3  # the steps really trained


@pytest.mark.slow  # a training: the slow tier
def test_epoch_runner_equals_step_loop(tiny_pairs):
    """make_train_epoch (a lax.scan over batches) == the jitted step called per batch."""
    from minis2s import data

    ds = data.build_dataset([e for e, _ in tiny_pairs], [f for _, f in tiny_pairs])
    optimizer = optax.rmsprop(1e-3, decay=0.9, eps=1e-7)
    params0 = model.init_params(jax.random.PRNGKey(1), model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 8))
    perm = np.array([5, 2, 7, 0, 3, 6, 1], np.int64)  # 7 rows, batch 3: last batch padded
    step = train.make_train_step(optimizer, grad="bptt")
    params, opt_state, totals = params0, optimizer.init(params0), None
    for b in train.batches(ds, perm, 3):
        params, opt_state, m = step(params, opt_state, b)
        totals = m if totals is None else jax.tree.map(jnp.add, totals, m)
    index, weight = train.batch_plan(perm, 3)
    assert index.shape == (3, 3) and weight.tolist()[-1] == [1.0, 0.0, 0.0]
    epoch = train.make_train_epoch(optimizer, grad="bptt")
    p2, _, t2, step_losses = epoch(params0, optimizer.init(params0), train.device_data(ds), index, weight)
    assert step_losses.shape == (3,)
    np.testing.assert_allclose(float(jnp.sum(step_losses)), float(t2["loss_sum"]), rtol=1e-6)
    _assert_trees_close(p2, params, 1e-6)
    assert float(t2["count"]) == 7.0
    _assert_trees_close(t2, totals, 1e-6)


def test_grad_option_validated_and_on_cli():
    with pytest.raises(ValueError, match="grad must be one of autodiff, bptt"):
        train.Config(grad="numeric").validate()
    with pytest.raises(ValueError, match="grad must be one of"):
        model.make_apply("numeric")
    args = build_parser().parse_args(["train", "--grad", "autodiff"])
    assert args.grad == "autodiff"
    # Unset flags stay None: run_train fills them from Config() or from the run being resumed.
    assert build_parser().parse_args(["train"]).grad is None
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--grad", "numeric"])
    assert e.value.code == 2
