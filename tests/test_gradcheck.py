"""The gradient checker: it passes correct gradients, catches planted wrong ones and names
the leaf, runs in float64 without leaking x64 to the caller, and the model's loss gradient
passes on every leaf."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import cli, lstm, model, train
from minis2s.data import build_dataset, parse_pairs
from minis2s.gradcheck import GradcheckError, assert_grads, check_grads, leaf_paths

from tests.conftest import ROOT, TINY_PAIRS

H = 6  # latent size of the tiny models below


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_problem():
    """A tiny model and one padded batch (6 real rows of 8) of the TINY_PAIRS corpus."""
    ds = build_dataset(*parse_pairs("".join(f"{e}\t{f}\n" for e, f in TINY_PAIRS), None))
    params = model.init_params(jax.random.PRNGKey(3), model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), H))
    batch = next(train.batches(ds, np.arange(6), 8))
    assert batch["weight"].tolist() == [1.0] * 6 + [0.0] * 2
    return params, batch


def model_loss(apply_fn, batch):
    """The training loss of ``apply_fn(params, encoder_tokens, decoder_tokens)``."""
    on_batch = lambda p, b: apply_fn(p, b["encoder_tokens"], b["decoder_tokens"])  # noqa: E731
    return lambda p: train.loss_fn(p, batch, on_batch)[0]


# --------------------------------------------------------------------------- a hand-written LSTM backward


def make_cell(drop_forget_term: bool = False):
    """``lstm.cell`` with its backward pass written out by hand (``jax.custom_vjp``).

    Backward equations (cotangents ``dh``, ``dc_in`` of ``h_t``, ``c_t``)::

        do = dh * tanh(c)            dc = dc_in + dh * o * (1 - tanh(c)^2)
        di = dc * g    df = dc * c_prev    dg = dc * i    dc_prev = dc * f
        dz = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
        dU = h_prev^T dz             dh_prev = dz U^T

    ``drop_forget_term=True`` plants a classic bug: ``df = 0`` (the forget gate's own
    gradient forgotten).
    """

    @jax.custom_vjp
    def cell(recurrent_kernel, zx_t, h_prev, c_prev):
        return lstm.cell({"recurrent_kernel": recurrent_kernel}, zx_t, (h_prev, c_prev))

    def fwd(recurrent_kernel, zx_t, h_prev, c_prev):
        z = zx_t + h_prev @ recurrent_kernel
        z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)
        c = f * c_prev + i * g
        tanh_c = jnp.tanh(c)
        return (o * tanh_c, c), (recurrent_kernel, h_prev, c_prev, i, f, g, o, tanh_c)

    def bwd(res, cotangents):
        recurrent_kernel, h_prev, c_prev, i, f, g, o, tanh_c = res
        dh, dc_in = cotangents
        do = dh * tanh_c
        dc = dc_in + dh * o * (1.0 - tanh_c**2)
        di, dg, dc_prev = dc * g, dc * i, dc * f
        df = jnp.zeros_like(dc) if drop_forget_term else dc * c_prev
        dz = jnp.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=-1)
        return h_prev.T @ dz, dz, dz @ recurrent_kernel.T, dc_prev

    cell.defvjp(fwd, bwd)
    return cell


def layer_with(cell_fn):
    def layer(params, inputs, initial_state=None):
        zx = lstm.input_projection(params, inputs)  # (T, B, 4H)
        if initial_state is None:
            zeros = jnp.zeros((zx.shape[1], params["recurrent_kernel"].shape[0]), zx.dtype)
            initial_state = (zeros, zeros)

        def step(state, zx_t):
            h, c = cell_fn(params["recurrent_kernel"], zx_t, *state)
            return (h, c), h

        final, hs = jax.lax.scan(step, initial_state, zx)
        return jnp.swapaxes(hs, 0, 1), final

    return layer


def apply_with(encoder_cell, decoder_cell):
    enc_layer, dec_layer = layer_with(encoder_cell), layer_with(decoder_cell)

    def apply(params, encoder_tokens, decoder_tokens):
        _, state = enc_layer(params["encoder"], encoder_tokens)
        hs, _ = dec_layer(params["decoder"], decoder_tokens, state)
        return model.dense_softmax(params["dense"], hs)

    return apply


# --------------------------------------------------------------------------- basics


def test_simple_function_passes_and_reports_every_leaf():
    params = {"a": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": [jnp.arange(3.0), jnp.ones(())]}
    fn = lambda p: jnp.sum(jnp.sin(p["a"]) * p["b"][0]) * p["b"][1] ** 2
    report = assert_grads(fn, params, entries="all", directions=3)
    assert [leaf.path for leaf in report.leaves] == leaf_paths(params) == ["a", "b/0", "b/1"]
    assert [leaf.entries for leaf in report.leaves] == [6, 3, 1]
    assert all(leaf.directions == 3 for leaf in report.leaves)
    assert report.max_rel_err < 1e-9 and report.max_abs_err < 1e-11
    assert report.value == pytest.approx(float(fn(params)), rel=1e-6)
    assert "b/1" in report.table() and "0 failed" in report.table()


@pytest.mark.parametrize("order", [2, 4])
def test_both_stencils_resolve_a_smooth_gradient(order):
    w = jnp.array([[0.3, -1.2], [2.0, 0.7]])
    report = check_grads(lambda p: jnp.sum(jnp.exp(p @ p)), w, entries="all", order=order, eps=1e-5 if order == 2 else 1e-3)
    assert report.ok and report.leaves[0].path == "" and report.max_rel_err < 1e-7


def test_x64_is_enabled_only_inside_the_check():
    assert not jax.config.jax_enable_x64
    seen = []
    params = {"w": jnp.ones(3)}

    def fn(p):
        seen.append(p["w"].dtype)
        return jnp.sum(p["w"] ** 3)

    assert check_grads(jax.jit(fn), params).ok  # a function jitted in float32 is retraced in float64
    assert seen and all(d == jnp.float64 for d in seen)
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(2).dtype == jnp.float32 and params["w"].dtype == jnp.float32
    with jax.enable_x64(True):  # a caller that already runs in x64 keeps it
        check_grads(fn, params)
        assert jax.config.jax_enable_x64
    assert not jax.config.jax_enable_x64


def test_entry_selection():
    params = {"w": jnp.ones((4, 5)), "b": jnp.ones(3)}
    fn = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 3)
    r = check_grads(fn, params, entries=4, directions=0)
    assert (r["w"].entries, r["b"].entries) == (4, 3)  # random subset; all of a smaller leaf
    r = check_grads(fn, params, entries={"w": [(0, 1), (3, 4), 7]}, directions=1)
    assert (r["w"].entries, r["b"].entries, r["b"].directions) == (3, 0, 1)
    with pytest.raises(ValueError, match="unknown leaves"):
        check_grads(fn, params, entries={"decoder/w": 1})
    with pytest.raises(ValueError, match="outside leaf w"):
        check_grads(fn, params, entries={"w": [(4, 0)]})


def test_refuses_functions_it_cannot_check():
    with pytest.raises(GradcheckError, match="float32"):
        check_grads(lambda p: jnp.sum(p.astype(jnp.float32) ** 2), jnp.ones(3))
    with pytest.raises(GradcheckError, match="scalar"):
        check_grads(lambda p: p**2, jnp.ones(3))


def test_readme_example():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    x = jnp.arange(6.0).reshape(2, 3)
    assert_grads(lambda p: jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2), params)


# --------------------------------------------------------------------------- planted bugs


@jax.custom_vjp
def add_bias(x, b):
    return x + b


def _add_bias_fwd(x, b):
    return x + b, None


def _add_bias_bwd(_, g):
    # Planted bug: the bias gradient should be g summed over the leading axes, not half of it.
    return g, 0.5 * jnp.sum(g, axis=tuple(range(g.ndim - 1)))


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def apply_wrong_dense_bias(params, encoder_tokens, decoder_tokens):
    state = model.encode(params, encoder_tokens)
    hs, _ = lstm.layer(params["decoder"], decoder_tokens, state)
    return jax.nn.softmax(add_bias(hs @ params["dense"]["kernel"], params["dense"]["bias"]), axis=-1)


def test_wrong_custom_vjp_fails_and_names_the_leaf(tiny_problem):
    params, batch = tiny_problem
    with pytest.raises(GradcheckError, match="dense/bias") as e:
        assert_grads(model_loss(apply_wrong_dense_bias, batch), params, entries=8)
    assert isinstance(e.value, AssertionError)
    report = e.value.report
    assert [leaf.path for leaf in report.failures] == ["dense/bias"]
    assert report["dense/bias"].max_rel_err > 0.3  # half the gradient: rel err 0.5
    assert report["dense/kernel"].max_rel_err < 1e-6


def test_hand_written_lstm_backward_passes(tiny_problem):
    params, batch = tiny_problem
    good = make_cell()
    report = assert_grads(model_loss(apply_with(good, good), batch), params, entries=12)
    assert report.value == pytest.approx(float(model_loss(model.apply, batch)(params)), rel=1e-6)


def test_missing_forget_gate_term_fails_and_names_the_encoder(tiny_problem):
    params, batch = tiny_problem
    bad, good = make_cell(drop_forget_term=True), make_cell()
    # Element-wise: 6 random entries per leaf, and for encoder/bias its forget slice [H:2H].
    forget = [(k,) for k in range(H, 2 * H)]
    entries = {path: 6 for path in leaf_paths(params)} | {"encoder/bias": forget}
    report = check_grads(model_loss(apply_with(bad, good), batch), params, entries=entries)
    assert {leaf.path for leaf in report.failures} == {"encoder/kernel", "encoder/recurrent_kernel", "encoder/bias"}
    # The buggy backward gives the forget slice of the bias no gradient at all.
    assert report["encoder/bias"].analytic == 0.0 and report["encoder/bias"].worst.startswith("entry")
    # Random directions alone (no element-wise checks) catch the bug in the decoder too.
    r = check_grads(model_loss(apply_with(good, bad), batch), params, entries=0, directions=2)
    assert {"decoder/kernel", "decoder/recurrent_kernel", "decoder/bias"} <= {leaf.path for leaf in r.failures}
    assert not any(leaf.path.startswith("dense") for leaf in r.failures)


# --------------------------------------------------------------------------- the model


def test_model_loss_gradient_every_leaf_every_entry(tiny_problem):
    params, batch = tiny_problem
    # Float64 rounding of the loss leaves ~1e-12 of noise in each difference quotient
    # (|f| eps_mach / h), so relative errors are judged down to gradients of atol/rtol = 1e-5.
    report = assert_grads(model_loss(model.apply, batch), params, entries="all", directions=4, atol=1e-11)
    assert {leaf.path for leaf in report.leaves} == {
        f"{layer}/{name}" for layer in ("encoder", "decoder") for name in ("kernel", "recurrent_kernel", "bias")
    } | {"dense/kernel", "dense/bias"}
    for leaf in report.leaves:
        assert leaf.entries == int(np.prod(leaf.shape))
        assert leaf.max_rel_err < 1e-6 and leaf.max_abs_err < 1e-11, leaf
    print(f"\nmodel loss gradcheck: max abs err {report.max_abs_err:.2e}, max rel err {report.max_rel_err:.2e}")


@pytest.mark.slow
def test_cli_gradcheck(capsys):
    assert cli.main(["gradcheck", "--latent-dim", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "decoder/recurrent_kernel" in out and "8 leaves, 0 failed" in out
    assert "model seed, lstm cell, bptt gradient" in out  # what training uses by default
    assert cli.main(["gradcheck", "--latent-dim", "4", "--grad", "autodiff", "--entries", "4"]) == 0
    assert "lstm cell, autodiff gradient" in capsys.readouterr().out
    # A tolerance no finite difference can meet: non-zero exit, failing leaves named.
    assert cli.main(["gradcheck", "--latent-dim", "4", "--entries", "3", "--rtol", "1e-30", "--atol", "0"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "gradcheck: FAILED for" in captured.err


@pytest.mark.slow
def test_package_import_does_not_load_keras():
    """Keras and h5py are test-time oracles: importing minis2s (converter included) must not load them."""
    code = (
        "import sys, minis2s, minis2s.cli, minis2s.convert, minis2s.gradcheck, minis2s.train; "
        "bad = [m for m in ('keras', 'h5py', 'tensorflow', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
