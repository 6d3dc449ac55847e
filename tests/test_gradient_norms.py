"""scripts/lessons/gradient_norms.py: its per-step state gradients against float64 finite differences
of an independent NumPy model, and the initialisation numbers docs/math.md section 8 quotes."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import data, demo_corpus, model, train
from tests.conftest import ROOT, load_script
from tests.test_worked_example import central_difference, forward, one_hot

gradient_norms = load_script("lessons/gradient_norms")

MATH = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo():
    ds = data.load_dataset(data.resolve_data("demo"), None)
    return ds, train.split_train_val(len(ds), 0.2)


@pytest.mark.slow
def test_state_gradients_match_finite_differences(demo):
    ds, _ = demo
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 3)
    params = gradient_norms.set_forget_bias(model.init_params(jax.random.PRNGKey(3), config), 0.0)
    assert float(params["encoder"]["bias"][3:6].sum()) == 0.0 and float(params["decoder"]["bias"].sum()) == 0.0
    batch = {"encoder_tokens": ds.encoder_tokens[:1, :5], "decoder_tokens": ds.decoder_tokens[:1, :4],
             "target_tokens": ds.target_tokens[:1, :4]}
    got = gradient_norms.state_gradients(params, {k: jnp.asarray(v) for k, v in batch.items()})
    p64 = {s: {k: np.asarray(v, np.float64) for k, v in leaves.items()} for s, leaves in params.items()}
    x_enc = one_hot(batch["encoder_tokens"][0], len(ds.input_vocab))
    x_dec = one_hot(batch["decoder_tokens"][0], len(ds.target_vocab))
    y = batch["target_tokens"][0]
    for side, n in (("encoder", 5), ("decoder", 4)):
        for what, probe in (("dh", "h"), ("dc", "c+")):
            want = np.stack([central_difference(lambda e: forward(p64, x_enc, x_dec, y, {(side, t, probe): e})[0], (3,))
                             for t in range(n)])
            np.testing.assert_allclose(got[f"{side}_{what}"][:, 0], want, atol=2e-6, rtol=1e-3, err_msg=f"{side} {what}")
    assert np.all(got["decoder_dc"][-1] == 0)  # the start value: no step after the last


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bptt_state_gradients(p64, enc_tokens, dec_tokens, tgt_tokens):
    """An oracle written apart from the script and from JAX: the seed model in NumPy float64,
    forward, then backpropagation through time by hand (math.md section 6.3). Returns, per
    step, ``dL/dh_t`` (everything ``h_t`` reaches) and ``dL/dc_t`` through later steps only
    (what the script's probes added after ``h_t`` measure), for the mean loss over every
    position: ``{"encoder_dh", "encoder_dc", "decoder_dh", "decoder_dc"}``, each ``(T, B, H)``.
    (Keras' clip of p to [1e-7, 1 - 1e-7] is not active at initialisation; asserted.)"""
    B = enc_tokens.shape[0]
    H = p64["encoder"]["recurrent_kernel"].shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    tape = {}
    for side, tokens in (("encoder", enc_tokens), ("decoder", dec_tokens)):
        p, steps = p64[side], []
        for t in range(tokens.shape[1]):
            z = p["kernel"][tokens[:, t]] + h @ p["recurrent_kernel"] + p["bias"]  # (B, 4H): one-hot x W
            i, f, g, o = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])
            c_prev, c = c, f * c + i * g
            h = o * np.tanh(c)
            steps.append((i, f, g, o, c_prev, c, h))
        tape[side] = steps
    hs = np.stack([s[6] for s in tape["decoder"]], 1)  # (B, Td, H)
    logits = hs @ p64["dense"]["kernel"] + p64["dense"]["bias"]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert probs.min() > 1e-7 and probs.max() < 1 - 1e-7
    dlogits = probs.copy()
    np.put_along_axis(dlogits, tgt_tokens[..., None], np.take_along_axis(probs, tgt_tokens[..., None], -1) - 1, -1)
    dlogits /= tgt_tokens.size  # the mean over batch and time
    dh_out = {"decoder": dlogits @ p64["dense"]["kernel"].T, "encoder": np.zeros((B, enc_tokens.shape[1], H))}
    grads = {}
    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))  # from the step after: through z, through c
    for side in ("decoder", "encoder"):
        U = p64[side]["recurrent_kernel"]
        dhs, dcs = [], []
        for t in reversed(range(len(tape[side]))):
            i, f, g, o, c_prev, c, h = tape[side][t]
            dh = dh_out[side][:, t] + dh_next
            dcs.append(dc_next)  # dL/dc_t through later steps only
            dhs.append(dh)
            dc = dc_next + dh * o * (1 - np.tanh(c) ** 2)
            dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g ** 2),
                                 dh * np.tanh(c) * o * (1 - o)], -1)
            dh_next, dc_next = dz @ U.T, dc * f
        grads[f"{side}_dh"], grads[f"{side}_dc"] = np.stack(dhs[::-1]), np.stack(dcs[::-1])
    return grads


@pytest.mark.slow
def test_initialisation_ratios_quoted_in_math_md(demo):
    """The ratios of math.md section 8, from the float64 hand-written backpropagation oracle;
    the script's per-step norms agree with it."""
    ds, split_at = demo
    val = {k: getattr(ds, k)[split_at:] for k in ("encoder_tokens", "decoder_tokens", "target_tokens")}
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), demo_corpus.TRAIN_DEFAULTS["latent_dim"])
    base = model.init_params(jax.random.PRNGKey(0), config)
    assert (ds.max_encoder_seq_length, ds.max_decoder_seq_length, len(ds) - split_at) == (24, 33, 53)
    ratios = {}
    for bias in (1.0, 0.0):
        params = gradient_norms.set_forget_bias(base, bias)
        p64 = {s: {k: np.asarray(v, np.float64) for k, v in leaves.items()} for s, leaves in params.items()}
        want = {k: np.linalg.norm(v, axis=-1).mean(axis=-1) for k, v in bptt_state_gradients(p64, val["encoder_tokens"], val["decoder_tokens"], val["target_tokens"]).items()}
        got = gradient_norms.step_norms(
            gradient_norms.state_gradients(params, {k: jnp.asarray(v) for k, v in val.items()}))
        for k in want:  # float32 against float64: the norms span 6 decades, compared per step
            np.testing.assert_allclose(got[k], want[k], rtol=1e-3, atol=0, err_msg=f"bias {bias} {k}")
        ratios[bias] = want["encoder_dc"][0] / want["encoder_dc"][-1]
    assert f"{ratios[1.0]:.1e}" == "7.2e-03" and f"{ratios[0.0]:.1e}" == "5.2e-06"
    assert f"{ratios[1.0] ** (1 / 23):.2f}" == "0.81" and f"{ratios[0.0] ** (1 / 23):.2f}" == "0.59"
    squash = " ".join(MATH.split())
    for text in ("$7.2\\cdot10^{-3}$", "$5.2\\cdot10^{-6}$", "a factor of $0.81$ and $0.59$", "$T_e = 24$ encoder steps, $T_d = 33$",
                 "53 validation pairs"):
        assert text in squash, text
