"""scripts/gradient_norms.py: its per-step state gradients against float64 finite differences
of an independent NumPy model, and the initialisation numbers docs/math.md section 8 quotes."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import data, demo_corpus, model, train
from tests.conftest import ROOT, load_script
from tests.test_worked_example import central_difference, forward, one_hot

gradient_norms = load_script("gradient_norms")

MATH = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo():
    ds = data.load_dataset(data.resolve_data("demo"), None)
    return ds, train.split_train_val(len(ds), 0.2)


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


def test_initialisation_ratios_quoted_in_math_md(demo):
    ds, split_at = demo
    val = {k: jnp.asarray(getattr(ds, k)[split_at:]) for k in ("encoder_tokens", "decoder_tokens", "target_tokens")}
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), demo_corpus.TRAIN_DEFAULTS["latent_dim"])
    base = model.init_params(jax.random.PRNGKey(0), config)
    assert (ds.max_encoder_seq_length, ds.max_decoder_seq_length, len(ds) - split_at) == (24, 33, 53)
    ratios = {}
    for bias in (1.0, 0.0):
        n = gradient_norms.step_norms(gradient_norms.state_gradients(gradient_norms.set_forget_bias(base, bias), val))
        ratios[bias] = n["encoder_dc"][0] / n["encoder_dc"][-1]
    assert f"{ratios[1.0]:.1e}" == "7.2e-03" and f"{ratios[0.0]:.1e}" == "5.2e-06"
    assert f"{ratios[1.0] ** (1 / 23):.2f}" == "0.81" and f"{ratios[0.0] ** (1 / 23):.2f}" == "0.59"
    squash = " ".join(MATH.split())
    for text in ("$7.2\\cdot10^{-3}$", "$5.2\\cdot10^{-6}$", "a factor of $0.81$ and $0.59$", "$T_e = 24$ encoder steps, $T_d = 33$",
                 "53 validation pairs"):
        assert text in squash, text
