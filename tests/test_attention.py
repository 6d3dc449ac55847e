"""The attention functions and the Luong model against float64 NumPy references written here
from the equations, the hand-derived backward pass against autodiff, and the padding rule:
padding positions get weight exactly 0 and appending padding changes no probability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import attention, cells, cli, models
from minis2s.data import DEMO_PATH, load_dataset
from minis2s.gradcheck import _float64
from tests.conftest import split_tiers

from tests import reference

B, TD, TE, H, HC = 3, 4, 6, 5, 7
LENGTHS = np.array([6, 3, 1])


# --------------------------------------------------------------------------- NumPy references


def np_masked_softmax(scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Softmax over each row's first ``length`` scores, zeros after: a loop, no masking tricks."""
    out = np.zeros_like(scores)
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        s = scores[b, ..., :n]
        e = np.exp(s - s.max(-1, keepdims=True))
        out[b, ..., :n] = e / e.sum(-1, keepdims=True)
    return out


def np_luong(kernel, bias, query, values, lengths, scale=1.0):
    """``o = tanh([a V ; Q] W_c + b_c)``, ``a = softmax(g Q V^T)`` over the real positions."""
    scores = scale * np.einsum("bth,bjh->btj", query, values)
    weights = np_masked_softmax(scores, lengths)
    ctx = np.einsum("btj,bjh->bth", weights, values)
    return np.tanh(np.concatenate([ctx, query], -1) @ kernel + bias), weights


@pytest.fixture
def block_inputs():
    rng = np.random.default_rng(0)
    return {
        "params": {"kernel": rng.normal(size=(2 * H, HC)) * 0.4, "bias": rng.normal(size=HC) * 0.1},
        "query": rng.normal(size=(B, TD, H)),
        "values": rng.normal(size=(B, TE, H)),
        "scale": 1.3,
        "cotangent": rng.normal(size=(B, TD, HC)),
    }


# --------------------------------------------------------------------------- the pieces


def test_masked_softmax_is_exactly_zero_on_padding():
    rng = np.random.default_rng(1)
    lengths = np.array([6, 3, 1, 0])
    scores = rng.normal(size=(4, TD, TE)) * 3
    with _float64():
        a = np.asarray(attention.masked_softmax(jnp.asarray(scores), attention.length_mask(jnp.asarray(lengths), TE)))
    np.testing.assert_allclose(a, np_masked_softmax(scores, lengths), rtol=0, atol=1e-15)
    for b, n in enumerate(lengths):
        assert np.all(a[b, :, n:] == 0.0)
    np.testing.assert_allclose(a[:3].sum(-1), 1.0, atol=1e-15)
    assert np.all(a[3] == 0.0)  # a row with no real position: zeros, not NaN
    # float32, padding scores huge and real ones large: still exact zeros and no overflow
    scores32 = scores.astype(np.float32) * 100
    scores32[:, :, 4:] = 3e38
    a32 = np.asarray(attention.masked_softmax(jnp.asarray(scores32), attention.length_mask(jnp.asarray(lengths), TE)))
    assert np.all(np.isfinite(a32))
    # the float64 loop on the same float32 scores: row 0 splits its weight between its two real
    # 3e38 scores, the other rows ignore the 3e38 padding (a max taken over it would zero them)
    np.testing.assert_allclose(a32, np_masked_softmax(scores32.astype(np.float64), lengths), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a32[0, :, 4:6], 0.5)
    assert np.all(a32[1:, :, 3:] == 0.0)
    # one query per row (a decoder step): (B, Te)
    a2 = np.asarray(attention.masked_softmax(jnp.asarray(scores32[:, 0]), attention.length_mask(jnp.asarray(lengths), TE)))
    np.testing.assert_array_equal(a2, a32[:, 0])


def test_luong_attention_matches_numpy(block_inputs):
    x = block_inputs
    with _float64():
        mask = attention.length_mask(jnp.asarray(LENGTHS), TE)
        out, weights = attention.luong_attention(
            jax.tree.map(jnp.asarray, x["params"]), jnp.asarray(x["query"]), jnp.asarray(x["values"]), mask, x["scale"]
        )
        step_out, step_w = attention.luong_attention(  # one query per row: the decoder step's shapes
            jax.tree.map(jnp.asarray, x["params"]), jnp.asarray(x["query"][:, 2]), jnp.asarray(x["values"]), mask, x["scale"]
        )
    ref_out, ref_w = np_luong(x["params"]["kernel"], x["params"]["bias"], x["query"], x["values"], LENGTHS, x["scale"])
    np.testing.assert_allclose(np.asarray(out), ref_out, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(weights), ref_w, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(step_out), ref_out[:, 2], rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(step_w), ref_w[:, 2], rtol=0, atol=1e-13)
    with _float64():  # the decoder step's form: the values projected once, a P + q W_2
        p = jax.tree.map(jnp.asarray, x["params"])
        projected = attention.project_values(p, jnp.asarray(x["values"]))
        fast_out, fast_w = attention.luong_step(p, jnp.asarray(x["query"][:, 2]), jnp.asarray(x["values"]),
                                                projected, mask, x["scale"])
    np.testing.assert_allclose(np.asarray(fast_out), ref_out[:, 2], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(fast_w), np.asarray(step_w))


@pytest.mark.parametrize("lengths", split_tiers([LENGTHS, np.full(B, TE)], fast=(0,)))
def test_hand_backward_matches_autodiff_to_1e_10(block_inputs, lengths):
    x = block_inputs
    with _float64():
        mask = attention.length_mask(jnp.asarray(lengths), TE)
        ct = jnp.asarray(x["cotangent"])
        args = (jax.tree.map(jnp.asarray, x["params"]), jnp.asarray(x["query"]), jnp.asarray(x["values"]), jnp.asarray(x["scale"]))

        def hand(p, q, v, g):
            return jnp.sum(ct * attention.luong_block(p, q, v, mask, g))

        def auto(p, q, v, g):
            return jnp.sum(ct * attention.luong_attention(p, q, v, mask, g)[0])

        assert abs(float(hand(*args) - auto(*args))) < 1e-12
        g_hand = jax.jit(jax.grad(hand, argnums=(0, 1, 2, 3)))(*args)
        g_auto = jax.grad(auto, argnums=(0, 1, 2, 3))(*args)
    names = ["combine/kernel", "combine/bias", "query", "values", "scale"]
    flat_hand, flat_auto = jax.tree.leaves(g_hand), jax.tree.leaves(g_auto)
    assert len(flat_hand) == len(names)
    for name, a, b in zip(names, flat_hand, flat_auto):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == np.float64 and np.max(np.abs(b)) > 1e-3, name  # a real, non-zero gradient
        assert np.max(np.abs(a - b)) <= 1e-10 * max(1.0, np.max(np.abs(b))), (name, np.max(np.abs(a - b)))
    d_values = np.asarray(g_hand[2])
    for b, n in enumerate(lengths):
        assert np.all(d_values[b, n:] == 0.0)  # padding outputs receive exactly no gradient


# --------------------------------------------------------------------------- the encoder memory


def test_masked_encoder_state_stops_at_each_sentence_end():
    rng = np.random.default_rng(2)
    v_in = 9
    cell = cells.get("lstm")
    with _float64():
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), cell.init(jax.random.PRNGKey(0), v_in, H))
        tokens = rng.integers(0, v_in, (B, TE))
        mask = attention.length_mask(jnp.asarray(LENGTHS), TE)
        hs, (h, c) = attention.masked_encoder(cell, params, jnp.asarray(tokens), mask)
    p = {k: np.asarray(a) for k, a in params.items()}
    for b, n in enumerate(LENGTHS):
        x = np.eye(v_in)[tokens[b, :n]][None]  # (1, n, V) one-hot, only the real characters
        ref_hs, (ref_h, ref_c) = reference.lstm_layer(x, p["kernel"], p["recurrent_kernel"], p["bias"])
        np.testing.assert_allclose(np.asarray(hs)[b, :n], ref_hs[0], atol=1e-13)
        np.testing.assert_allclose(np.asarray(h)[b], ref_h[0], atol=1e-13)
        np.testing.assert_allclose(np.asarray(c)[b], ref_c[0], atol=1e-13)


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def luong_setup():
    ds = load_dataset(DEMO_PATH, 40)
    config = models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 16, "luong")
    model = models.build(config)
    params = model.init(jax.random.PRNGKey(5))
    idx = np.array([0, 7, 19, 33])
    batch = {
        "encoder_tokens": jnp.asarray(ds.encoder_tokens[idx]),
        "encoder_lengths": jnp.asarray(ds.encoder_lengths[idx]),
        "decoder_tokens": jnp.asarray(ds.decoder_tokens[idx]),
    }
    assert len(set(ds.encoder_lengths[idx].tolist())) > 1 and ds.encoder_lengths[idx].max() < ds.max_encoder_seq_length
    return ds, model, params, batch


def test_luong_params_are_named_as_keras_names_them(luong_setup):
    ds, model, params, _ = luong_setup
    shapes = models.param_shapes(model.config)
    v_in, v_out, h = len(ds.input_vocab), len(ds.target_vocab), 16
    assert shapes == {
        "encoder/kernel": (v_in, 4 * h), "encoder/recurrent_kernel": (h, 4 * h), "encoder/bias": (4 * h,),
        "decoder/kernel": (v_out, 4 * h), "decoder/recurrent_kernel": (h, 4 * h), "decoder/bias": (4 * h,),
        "combine/kernel": (2 * h, h), "combine/bias": (h,), "dense/kernel": (h, v_out), "dense/bias": (v_out,),
    }
    assert float(jnp.max(jnp.abs(params["combine"]["bias"]))) == 0.0


def test_appending_padding_changes_no_probability(luong_setup):
    ds, model, params, batch = luong_setup
    pad = ds.input_vocab.index[" "]
    probs = np.asarray(model.apply(params, batch))
    longer = dict(batch, encoder_tokens=jnp.pad(batch["encoder_tokens"], ((0, 0), (0, 9)), constant_values=pad))
    shorter = dict(batch, encoder_tokens=batch["encoder_tokens"][:, : int(batch["encoder_lengths"].max())])
    for other in (longer, shorter):
        np.testing.assert_allclose(np.asarray(model.apply(params, other)), probs, rtol=0, atol=1e-7)
    # padding with other characters than " " changes nothing either: the encoder never reads it
    noise = np.asarray(batch["encoder_tokens"]).copy()
    for b, n in enumerate(np.asarray(batch["encoder_lengths"])):
        noise[b, n:] = (np.arange(noise.shape[1] - n) * 7 + b) % len(ds.input_vocab)
    np.testing.assert_allclose(np.asarray(model.apply(params, dict(batch, encoder_tokens=jnp.asarray(noise)))), probs,
                               rtol=0, atol=1e-7)
    # ... while the same model without the lengths (padding read as characters) differs
    unmasked = dict(batch, encoder_lengths=jnp.full_like(batch["encoder_lengths"], ds.max_encoder_seq_length))
    assert np.max(np.abs(np.asarray(model.apply(params, unmasked)) - probs)) > 1e-4


def test_decode_steps_reproduce_teacher_forcing_and_show_the_weights(luong_setup):
    ds, model, params, batch = luong_setup
    probs = np.asarray(model.apply(params, batch))
    memory, state = model.encode(params, batch["encoder_tokens"], batch["encoder_lengths"])
    for t in range(8):
        p_t, state, extra = model.decode_step(params, memory, batch["decoder_tokens"][:, t], state)
        np.testing.assert_allclose(np.asarray(p_t), probs[:, t], rtol=0, atol=2e-6)
        a = np.asarray(extra["attention"])
        assert a.shape == (4, ds.max_encoder_seq_length)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-6)
        for b, n in enumerate(np.asarray(batch["encoder_lengths"])):
            assert np.all(a[b, n:] == 0.0) and np.all(a[b, :n] > 0)


@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["--attention-scale"], ["--cell", "gru"]])
def test_cli_gradcheck_passes_for_luong(capsys, options):
    assert cli.main(["gradcheck", "--model", "luong", "--latent-dim", "4", "--entries", "8", *options]) == 0
    out = capsys.readouterr().out
    for leaf in ("encoder/kernel", "decoder/recurrent_kernel", "combine/kernel", "combine/bias", "dense/kernel"):
        assert leaf in out
    assert ("attention/scale" in out) == ("--attention-scale" in options)
    assert "0 failed" in out and "model luong" in out
