"""The Bahdanau model: a NumPy float64 reference, finite differences on every leaf, Keras
``AdditiveAttention`` as the oracle of the score and weights, padding invariance, and
decoding (``decode_step`` is one step of ``apply``; greedy and beam search run)."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import require_module, split_tiers
from minis2s import additive, cli, models, search, train
from minis2s.gradcheck import assert_grads
from minis2s.models import bahdanau

from tests.reference_bahdanau import bahdanau_model

V_IN, V_OUT, H = 7, 9, 6


def make_batch(seed: int = 0, lengths=(5, 3, 1), t_enc: int = 5, t_dec: int = 4, pad_token: int = 0):
    """Random tokens; every position at or past a row's length holds ``pad_token``."""
    rng = np.random.default_rng(seed)
    enc = rng.integers(1, V_IN, (len(lengths), t_enc)).astype(np.int32)
    for b, n in enumerate(lengths):
        enc[b, n:] = pad_token
    return {
        "encoder_tokens": enc,
        "encoder_lengths": np.asarray(lengths, np.int32),
        "decoder_tokens": rng.integers(0, V_OUT, (len(lengths), t_dec)).astype(np.int32),
        "target_tokens": rng.integers(0, V_OUT, (len(lengths), t_dec)).astype(np.int32),
        "weight": np.array([1.0] * (len(lengths) - 1) + [0.0], np.float32),
    }


# The LSTM has a core and takes the projected path; the same cell without its core takes
# the plain path, [onehot(y); c_t] through cell.step.
assert models.cells.get("lstm").core is not None
PLAIN_LSTM = dataclasses.replace(models.cells.get("lstm"), name="lstm-plain", core=None)


def make_model(latent: int = H, cell=None):
    return bahdanau.build(models.ModelConfig(V_IN, V_OUT, latent, "bahdanau"), cell or models.cells.get("lstm"))


def f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def teacher_forced_steps(model, params, batch):
    """``decode_step`` fed the true previous tokens: probs ``(B, T, V)``, attention ``(B, T, Te)``."""
    memory, state = jax.jit(model.encode)(params, jnp.asarray(batch["encoder_tokens"]), jnp.asarray(batch["encoder_lengths"]))
    step = jax.jit(model.decode_step)
    probs, att = [], []
    for t in range(batch["decoder_tokens"].shape[1]):
        p, state, extra = step(params, memory, jnp.asarray(batch["decoder_tokens"][:, t]), state)
        probs.append(p)
        att.append(extra["attention"])
    return np.stack(probs, 1), np.stack(att, 1)


# --------------------------------------------------------------------------- forward


def test_registered_with_keras_like_shapes():
    cfg = models.ModelConfig(V_IN, V_OUT, H, "bahdanau")
    assert "bahdanau" in models.MODELS
    assert models.param_shapes(cfg) == {
        "attention/scale": (H,),
        "decoder/bias": (4 * H,), "decoder/kernel": (V_OUT + H, 4 * H), "decoder/recurrent_kernel": (H, 4 * H),
        "dense/bias": (V_OUT,), "dense/kernel": (H, V_OUT),
        "encoder/bias": (4 * H,), "encoder/kernel": (V_IN, 4 * H), "encoder/recurrent_kernel": (H, 4 * H),
        "key/kernel": (H, H), "query/kernel": (H, H),
    }


@pytest.mark.parametrize("path", split_tiers(["projected", "plain", "gru"], fast=(0, 2)))
def test_forward_matches_numpy_float64_reference(path):
    cell = {"projected": None, "plain": PLAIN_LSTM, "gru": models.cells.get("gru")}[path]
    model = make_model(cell=cell)
    batch = make_batch(1, lengths=(5, 2, 4, 1))
    with jax.enable_x64(True):
        params = f64(model.init(jax.random.PRNGKey(1)))
        # larger random weights than the initialiser's, so attention is far from uniform
        params["query"]["kernel"] = params["query"]["kernel"] * 4
        params["attention"]["scale"] = params["attention"]["scale"] * 4
        for i, layer in enumerate(("encoder", "decoder")):  # non-zero biases (the GRU's start at zero)
            bias = params[layer]["bias"]
            params[layer]["bias"] = bias + 0.3 * jax.random.normal(jax.random.PRNGKey(10 + i), bias.shape, bias.dtype)
        probs = np.asarray(model.apply(params, {k: jnp.asarray(v) for k, v in batch.items()}))
        step_probs, att = teacher_forced_steps(model, params, batch)
        assert probs.dtype == np.float64
    ref_probs, ref_att = bahdanau_model(params, batch["encoder_tokens"], batch["encoder_lengths"], batch["decoder_tokens"],
                                       "gru" if path == "gru" else "lstm")
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(step_probs, ref_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(att, ref_att, rtol=0, atol=1e-12)
    assert att.std() > 0.05, "the attention should not be uniform for this test to mean much"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradient_matches_float64_finite_differences_on_every_leaf(cell):
    model = make_model(cell=models.cells.get(cell))
    batch = make_batch(2)
    params = model.init(jax.random.PRNGKey(2))
    report = assert_grads(lambda p: train.loss_fn(p, batch, model.apply)[0], params, entries=8, directions=2)
    assert len(report.leaves) == 11 and report.max_rel_err < 1e-7


@pytest.mark.parametrize("path", split_tiers(["projected", "plain"], fast=(1,)))
def test_rematerialised_backward_equals_the_stored_one(path):
    """apply(remat=True), the default, recomputes each step's element-wise work in the
    backward pass; plain autodiff with everything stored is its oracle (float64)."""
    cell = PLAIN_LSTM if path == "plain" else models.cells.get("lstm")
    batch = {k: jnp.asarray(v) for k, v in make_batch(3, lengths=(5, 2, 4)).items()}
    with jax.enable_x64(True):
        params = f64(make_model(cell=cell).init(jax.random.PRNGKey(3)))
        grads = [jax.grad(lambda p: train.loss_fn(p, batch, lambda q, b: bahdanau.apply(q, b, cell, remat=r))[0])(params)
                 for r in (False, True)]
    for (path_, stored), remat in zip(jax.tree.leaves_with_path(grads[0]), jax.tree.leaves(grads[1])):
        assert np.max(np.abs(stored)) > 0, jax.tree_util.keystr(path_)
        np.testing.assert_allclose(remat, stored, rtol=1e-12, atol=1e-15, err_msg=jax.tree_util.keystr(path_))


@pytest.mark.slow
def test_cli_gradcheck_passes_for_bahdanau(capsys):
    assert cli.main(["gradcheck", "--model", "bahdanau", "--latent-dim", "4", "--entries", "2", "--directions", "1"]) == 0
    out = capsys.readouterr().out
    assert "model bahdanau" in out and "11 leaves, 0 failed" in out


# --------------------------------------------------------------------------- Keras oracle


def test_score_and_weights_match_keras_additive_attention():
    """Keras: ``AdditiveAttention(use_scale=True)`` on ``Dense(A, use_bias=False)`` projections
    of the query and the keys, value = the encoder outputs, padding masked."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = require_module("keras")  # skips locally without Keras, fails in CI
    rng = np.random.default_rng(3)
    B, T, Hd, A = 3, 5, 6, 4
    s = rng.normal(size=(B, Hd)).astype(np.float32)
    hs = rng.normal(size=(B, T, Hd)).astype(np.float32)
    lengths = np.array([5, 2, 3], np.int32)
    params = additive.init_additive(jax.random.PRNGKey(4), Hd, Hd, A)
    params["attention"]["scale"] = params["attention"]["scale"] * 3

    q_in, v_in, m_in = keras.Input((1, Hd)), keras.Input((T, Hd)), keras.Input((T,), dtype="bool")
    q_dense = keras.layers.Dense(A, use_bias=False)
    k_dense = keras.layers.Dense(A, use_bias=False)
    att = keras.layers.AdditiveAttention(use_scale=True)
    out, scores = att([q_dense(q_in), v_in, k_dense(v_in)], mask=[None, m_in], return_attention_scores=True)
    net = keras.Model([q_in, v_in, m_in], [out, scores])
    q_dense.set_weights([np.asarray(params["query"]["kernel"])])
    k_dense.set_weights([np.asarray(params["key"]["kernel"])])
    att.set_weights([np.asarray(params["attention"]["scale"])])
    mask = np.arange(T)[None] < lengths[:, None]
    k_out, k_weights = net.predict([s[:, None], hs, mask], verbose=0)

    keys = hs @ np.asarray(params["key"]["kernel"])
    ctx, weights = additive.attend(params, jnp.asarray(s), jnp.asarray(keys), jnp.asarray(hs), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(weights), k_weights[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ctx), k_out[:, 0], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(weights)[~mask] == 0.0) and np.all(k_weights[:, 0][~mask] == 0.0)
    # the scores themselves: Keras' ``_calculate_scores`` before the mask
    k_scores = np.asarray(att._calculate_scores(q_dense(s[:, None]), k_dense(hs)))[:, 0]
    q = jnp.asarray(s) @ params["query"]["kernel"]
    np.testing.assert_allclose(np.asarray(additive.additive_scores(q, jnp.asarray(keys), params["attention"]["scale"])),
                               k_scores, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- padding


def test_masked_softmax_zeroes_padding_and_survives_an_empty_row():
    e = jnp.array([[1.0, 2.0, 50.0], [3.0, -1.0, 7.0], [0.0, 0.0, 0.0]])
    m = jnp.array([[True, True, False], [True, True, True], [False, False, False]])
    a = np.asarray(additive.masked_softmax(e, m))
    np.testing.assert_allclose(a[0, :2], np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum(), rtol=1e-6)
    assert a[0, 2] == 0.0 and a[2].tolist() == [0.0, 0.0, 0.0]
    g = jax.grad(lambda e: jnp.sum(additive.masked_softmax(e, m) * jnp.arange(3.0)))(e)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[~np.asarray(m)] == 0.0)


def test_appending_padding_changes_no_probability():
    model = make_model()
    params = model.init(jax.random.PRNGKey(5))
    batch = make_batch(5, lengths=(5, 3, 1), t_enc=5)
    probs = np.asarray(model.apply(params, batch))
    wide = dict(batch, encoder_tokens=np.pad(batch["encoder_tokens"], ((0, 0), (0, 7))))  # 7 more pad tokens
    probs_wide = np.asarray(model.apply(params, wide))
    np.testing.assert_allclose(probs_wide, probs, rtol=0, atol=2e-7)
    # what padding holds does not matter either: any token past the length
    junk = dict(wide, encoder_tokens=np.where(np.arange(12) < batch["encoder_lengths"][:, None], wide["encoder_tokens"], 3))
    np.testing.assert_allclose(np.asarray(model.apply(params, junk)), probs, rtol=0, atol=2e-7)
    _, att = teacher_forced_steps(model, params, wide)
    assert np.all(att[:, :, 5:] == 0.0) and att[2, :, 1:].max() == 0.0  # row 2 has one character
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-6)


def test_encoder_state_holds_still_over_padding():
    model = make_model()
    params = model.init(jax.random.PRNGKey(6))
    batch = make_batch(6, lengths=(5, 2, 3))
    memory, state = model.encode(params, jnp.asarray(batch["encoder_tokens"]), jnp.asarray(batch["encoder_lengths"]))
    for b, n in enumerate(batch["encoder_lengths"]):
        alone, alone_state = model.encode(params, jnp.asarray(batch["encoder_tokens"][b : b + 1, :n]), jnp.asarray([n]))
        np.testing.assert_allclose(np.asarray(state[0][b]), np.asarray(alone_state[0][0]), atol=1e-7)
        np.testing.assert_allclose(np.asarray(state[1][b]), np.asarray(alone_state[1][0]), atol=1e-7)
        np.testing.assert_allclose(np.asarray(memory["values"][b, :n]), np.asarray(alone["values"][0]), atol=1e-7)


# --------------------------------------------------------------------------- decoding


def test_decode_step_is_one_step_of_apply_on_both_paths():
    model, plain = make_model(), make_model(cell=PLAIN_LSTM)
    params = model.init(jax.random.PRNGKey(7))
    batch = make_batch(7, lengths=(4, 5, 2))
    probs = np.asarray(model.apply(params, batch))
    step_probs, _ = teacher_forced_steps(model, params, batch)
    np.testing.assert_allclose(step_probs, probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(plain.apply(params, batch)), probs, rtol=0, atol=1e-6)


@pytest.mark.slow  # ~4 s; beam against the plain search stays in the fast tier (test_search_attention.py)
def test_greedy_and_beam_decode_with_attention():
    model = models.build(models.ModelConfig(V_IN, V_OUT, 8, "bahdanau"))
    params = model.init(jax.random.PRNGKey(8))
    batch = make_batch(8, lengths=(5, 3, 1))
    enc, lengths = jnp.asarray(batch["encoder_tokens"]), jnp.asarray(batch["encoder_lengths"])
    statics = dict(start_token=1, end_token=2, max_steps=6, model=model)
    tokens, n_out, logp, extras = search.greedy_batch(params, enc, lengths, with_extras=True, **statics)
    att = np.asarray(extras["attention"])  # (B, steps, Te)
    assert att.shape == (3, 6, 5)
    assert np.all(att[1, :, 3:] == 0) and np.all(att[2, :, 1:] == 0)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-6)
    # greedy agrees with a plain Python loop of decode_step and argmax
    memory, state = jax.jit(model.encode)(params, enc, lengths)
    step = jax.jit(model.decode_step)
    prev, mine = jnp.full((3,), 1, jnp.int32), []
    for _ in range(6):
        p, state, _ = step(params, memory, prev, state)
        prev = jnp.argmax(p, axis=-1).astype(jnp.int32)
        mine.append(np.asarray(prev))
    mine = np.stack(mine, 1)
    for b in range(3):
        n = int(n_out[b])
        assert np.asarray(tokens[b, :n]).tolist() == mine[b, :n].tolist()


def test_works_with_the_gru_cell():
    """A cell without a core (the GRU) takes the plain path: decode_step is still one step of
    apply, and padding still changes nothing."""
    model = models.build(models.ModelConfig(V_IN, V_OUT, H, "bahdanau", "gru"))
    assert models.cells.get("gru").core is None
    params = model.init(jax.random.PRNGKey(9))
    batch = make_batch(9, lengths=(5, 2, 3))
    probs = np.asarray(model.apply(params, batch))
    step_probs, att = teacher_forced_steps(model, params, batch)
    np.testing.assert_allclose(step_probs, probs, rtol=0, atol=1e-6)
    assert np.all(att[1, :, 2:] == 0.0)
    wide = dict(batch, encoder_tokens=np.pad(batch["encoder_tokens"], ((0, 0), (0, 4))))
    np.testing.assert_allclose(np.asarray(model.apply(params, wide)), probs, rtol=0, atol=2e-7)
