"""Luong with input feeding (``ModelConfig.input_feeding``): a NumPy float64 reference of
the forward pass, float64 finite differences on every leaf, ``decode_step`` against
``apply``, greedy and beam search against the teacher-forced probabilities, the setting's
checks, and the model without it untouched."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import models, search, train
from minis2s.config import Config
from minis2s.gradcheck import assert_grads
from minis2s.models import luong

from tests.conftest import split_tiers
from tests.reference_luong_feed import feed_model

V_IN, V_OUT, H = 7, 9, 6

# The LSTM has a core and takes the gathered path; the same cell without its core takes
# the plain path, [onehot(y_t); h~_{t-1}] through cell.step.
assert models.cells.get("lstm").core is not None and models.cells.get("gru").core is None
PLAIN_LSTM = dataclasses.replace(models.cells.get("lstm"), name="lstm-plain", core=None)
CELL = {"lstm": models.cells.get("lstm"), "plain": PLAIN_LSTM, "gru": models.cells.get("gru")}


def make_batch(seed: int = 0, lengths=(5, 3, 1), t_enc: int = 5, t_dec: int = 4):
    """Random tokens; every position at or past a row's length holds token 0."""
    rng = np.random.default_rng(seed)
    enc = rng.integers(1, V_IN, (len(lengths), t_enc)).astype(np.int32)
    for b, n in enumerate(lengths):
        enc[b, n:] = 0
    return {
        "encoder_tokens": enc,
        "encoder_lengths": np.asarray(lengths, np.int32),
        "decoder_tokens": rng.integers(0, V_OUT, (len(lengths), t_dec)).astype(np.int32),
        "target_tokens": rng.integers(0, V_OUT, (len(lengths), t_dec)).astype(np.int32),
        "weight": np.array([1.0] * (len(lengths) - 1) + [0.0], np.float32),
    }


def config(cell: str = "lstm", scale: bool = False, latent: int = H) -> models.ModelConfig:
    return models.ModelConfig(V_IN, V_OUT, latent, "luong", "gru" if cell == "gru" else "lstm", scale, input_feeding=True)


def make_model(cell: str = "lstm", scale: bool = False):
    return luong.build(config(cell, scale), CELL[cell])


def teacher_forced_steps(model, params, batch):
    """``decode_step`` fed the true previous tokens: probs ``(B, T, V)``, attention ``(B, T, Te)``."""
    memory, state = jax.jit(model.encode)(params, jnp.asarray(batch["encoder_tokens"]),
                                          jnp.asarray(batch["encoder_lengths"]))
    step = jax.jit(model.decode_step)
    probs, att = [], []
    for t in range(batch["decoder_tokens"].shape[1]):
        p, state, extra = step(params, memory, jnp.asarray(batch["decoder_tokens"][:, t]), state)
        probs.append(p)
        att.append(extra["attention"])
    return np.stack(probs, 1), np.stack(att, 1)


# --------------------------------------------------------------------------- the parameters


def test_the_decoder_kernel_reads_the_attentional_vector_too():
    shapes = models.param_shapes(config())
    assert shapes["decoder/kernel"] == (V_OUT + H, 4 * H)
    assert shapes["combine/kernel"] == (2 * H, H) and shapes["dense/kernel"] == (H, V_OUT)
    plain = models.param_shapes(dataclasses.replace(config(), input_feeding=False))
    assert plain["decoder/kernel"] == (V_OUT, 4 * H)
    assert {k: v for k, v in shapes.items() if k != "decoder/kernel"} == {k: v for k, v in plain.items()
                                                                          if k != "decoder/kernel"}
    # Keras' glorot_uniform over the whole fan-in: U(-l, l), l = sqrt(6 / (V_out + H + 4H))
    kernel = np.asarray(models.build(dataclasses.replace(config(), latent_dim=64)).init(jax.random.PRNGKey(0))
                        ["decoder"]["kernel"])
    limit = np.sqrt(6.0 / (V_OUT + 64 + 4 * 64))
    assert kernel.shape == (V_OUT + 64, 256) and np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.99 * limit and abs(kernel.std() - limit / np.sqrt(3)) < 0.02 * limit


def test_without_the_flag_the_model_is_the_one_it_was():
    """The plain model's functions are the very ones of before (Keras parity tests cover their numbers)."""
    cell = models.cells.get("lstm")
    plain = luong.build(dataclasses.replace(config(), input_feeding=False), cell)
    params = plain.init(jax.random.PRNGKey(4))
    batch = {k: jnp.asarray(v) for k, v in make_batch(4).items()}
    np.testing.assert_array_equal(np.asarray(plain.apply(params, batch)), np.asarray(luong.apply(params, batch, cell)))
    _, state = plain.encode(params, batch["encoder_tokens"], batch["encoder_lengths"])
    assert len(state) == 2  # (h, c): no attentional vector carried


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("path", split_tiers(["lstm", "plain", "gru"], fast=(0, 2)))
def test_forward_matches_numpy_float64_reference(path):
    model = make_model(path, scale=path == "lstm")
    batch = make_batch(1, lengths=(5, 2, 4, 1))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init(jax.random.PRNGKey(1)))
        # larger weights than the initialiser's, so the attention and the fed vector matter
        params["combine"]["kernel"] = params["combine"]["kernel"] * 3
        params["encoder"]["kernel"] = params["encoder"]["kernel"] * 3
        if "attention" in params:
            params["attention"]["scale"] = params["attention"]["scale"] * 2.5
        for i, layer in enumerate(("encoder", "decoder")):  # non-zero biases (Keras starts some at zero)
            bias = params[layer]["bias"]
            params[layer]["bias"] = bias + 0.3 * jax.random.normal(jax.random.PRNGKey(10 + i), bias.shape, bias.dtype)
        probs = np.asarray(model.apply(params, {k: jnp.asarray(v) for k, v in batch.items()}))
        step_probs, att = teacher_forced_steps(model, params, batch)
        assert probs.dtype == np.float64
        # the same weights with the fed vector's kernel rows zeroed: the decoder no longer reads it
        rows = params["decoder"]["kernel"].at[V_OUT:].set(0.0)
        unfed = np.asarray(model.apply({**params, "decoder": {**params["decoder"], "kernel": rows}},
                                       {k: jnp.asarray(v) for k, v in batch.items()}))
    ref_probs, ref_att = feed_model(params, batch["encoder_tokens"], batch["encoder_lengths"], batch["decoder_tokens"],
                                    "gru" if path == "gru" else "lstm")
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(step_probs, ref_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(att, ref_att, rtol=0, atol=1e-12)
    assert att.std() > 0.05, "the attention should not be uniform for this test to mean much"
    # h~_0 = 0, so step 1 is unchanged; every later step reads h~_{t-1}
    assert np.abs(unfed[:, 1:] - probs[:, 1:]).max() > 1e-3 and np.abs(unfed[:, 0] - probs[:, 0]).max() < 1e-12


def test_one_hot_decoder_inputs_give_the_same_probabilities():
    """Scheduled sampling feeds one-hot floats: the same numbers as the int tokens."""
    model = make_model()
    params = model.init(jax.random.PRNGKey(3))
    batch = make_batch(3)
    probs = np.asarray(model.apply(params, batch))
    hot = dict(batch, decoder_tokens=np.eye(V_OUT, dtype=np.float32)[batch["decoder_tokens"]])
    np.testing.assert_allclose(np.asarray(model.apply(params, hot)), probs, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize("cell", split_tiers(["lstm", "gru"], fast=(0,)))
def test_gradient_matches_float64_finite_differences_on_every_leaf(cell):
    model = make_model(cell, scale=True)
    batch = make_batch(2)
    params = model.init(jax.random.PRNGKey(2))
    report = assert_grads(lambda p: train.loss_fn(p, batch, model.apply)[0], params, entries=8, directions=2)
    assert len(report.leaves) == 11 and report.max_rel_err < 1e-7
    assert report["decoder/kernel"].shape == (V_OUT + H, (3 if cell == "gru" else 4) * H)


# --------------------------------------------------------------------------- decoding


def _sequence_logprob(model, params, batch, tokens, n, start):
    """log p of ``tokens[:n]`` from the teacher-forced probabilities of ``apply`` (the oracle)."""
    dec = np.concatenate([[start], tokens[: n - 1]]).astype(np.int32)[None]
    one = {"encoder_tokens": batch["encoder_tokens"], "encoder_lengths": batch["encoder_lengths"], "decoder_tokens": dec}
    probs = np.asarray(model.apply(params, one), np.float64)[0]  # (n, V)
    return float(np.sum(np.log(probs[np.arange(n), tokens[:n]])))


@pytest.mark.slow  # ~8 s of compiling three searches; the CLI runs them too (test_luong_feed_cli.py)
def test_greedy_beam_and_sampling_decode_with_input_feeding():
    model = models.build(dataclasses.replace(config(latent=8)))
    params = model.init(jax.random.PRNGKey(8))
    batch = make_batch(8, lengths=(5, 3, 1))
    enc, lengths = jnp.asarray(batch["encoder_tokens"]), jnp.asarray(batch["encoder_lengths"])
    statics = dict(start_token=1, end_token=2, max_steps=6, model=model)
    tokens, n_out, logp, extras = search.greedy_batch(params, enc, lengths, with_extras=True, **statics)
    att = np.asarray(extras["attention"])  # (B, steps, Te)
    assert att.shape == (3, 6, 5) and np.all(att[1, :, 3:] == 0) and np.all(att[2, :, 1:] == 0)
    b_tokens, b_n, b_logp = search.beam_batch(params, enc, 0.0, lengths, beam_width=3, **statics)
    s_tokens, s_n, s_logp = search.sample_batch(params, enc, search.sentence_keys(0, np.arange(3)), 1.0, lengths,
                                                num_samples=2, **statics)
    for b in range(3):
        row = {k: v[b : b + 1] for k, v in batch.items()}
        for toks, n, lp in ((tokens[b], n_out[b], logp[b]), (b_tokens[b], b_n[b], b_logp[b]),
                            (s_tokens[b, 0], s_n[b, 0], s_logp[b, 0]), (s_tokens[b, 1], s_n[b, 1], s_logp[b, 1])):
            n = int(n)
            assert n >= 1
            np.testing.assert_allclose(float(lp), _sequence_logprob(model, params, row, np.asarray(toks), n, 1),
                                       rtol=1e-5, atol=1e-5)
        assert float(b_logp[b]) >= float(logp[b]) - 1e-5  # beam (keeping greedy) never ranks below greedy


# --------------------------------------------------------------------------- the setting


def test_config_records_and_checks_input_feeding():
    assert models.config_for({"latent_dim": 4, "model": "luong"}, "ab", "abc").input_feeding is False  # an old manifest
    assert models.config_for({"latent_dim": 4, "model": "luong", "input_feeding": True}, "ab", "abc").input_feeding
    assert models.config_for(Config(model="luong", input_feeding=True), "ab", "abc").input_feeding
    Config(model="luong", input_feeding=True).validate()
    Config(model="luong", cell="gru", input_feeding=True).validate()
    for other in ("seed", "bahdanau"):
        with pytest.raises(ValueError, match=f"input_feeding needs a model .*not {other}$"):
            Config(model=other, input_feeding=True).validate()
    assert train.step_settings(Config(model="luong", input_feeding=True)) == train.step_settings(Config())


# --------------------------------------------------------------------------- docs/math.md 16.3


def test_the_cost_section_states_what_the_shapes_give():
    """The multiply-adds docs/math.md 16.3 states, counted here from the layers' shapes
    (``models.param_shapes``: a kernel of ``(D, K)`` applied to one row costs ``D K``)."""
    import re

    from tests.conftest import ROOT

    text = re.sub(r"\s+", " ", (ROOT / "docs" / "math.md").read_text(encoding="utf-8"))
    section = text[text.index("### 16.3 Input feeding") :]
    t_enc, t_dec, h, v, g = 16, 59, 256, 93, 4
    macs = {}
    for feed in (False, True):
        shapes = models.param_shapes(models.ModelConfig(70, v, h, "luong", input_feeding=feed))
        size = lambda name: int(np.prod(shapes[name]))  # noqa: E731
        recurrent = size("decoder/recurrent_kernel")  # h_{t-1} U, every step
        fed = size("decoder/kernel") - v * g * h  # the rows past the one-hot ones: h~_{t-1} W_h~
        w1 = w2 = size("combine/kernel") // 2
        macs[feed] = (t_enc * size("encoder/recurrent_kernel") + t_enc * w1  # encoder (inputs gathered), P
                      + t_dec * (recurrent + fed) + t_dec * (w2 + 2 * t_enc * h) + t_dec * size("dense/kernel"))
        if feed:
            in_loop = recurrent + fed + w2 + 2 * t_enc * h
            assert f"{in_loop / recurrent:.2f} times the recurrence alone" in section
    assert macs[False] == 26_464_000 and f"{macs[False]:,} multiply-adds without input feeding" in section
    assert f"and {macs[True]:,} with it, {macs[True] / macs[False]:.2f} times as many" in section
