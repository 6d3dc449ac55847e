"""scripts/lessons/worked_example.py against an independent float64 NumPy computation: the forward
pass of tests/reference.py and central finite differences for every gradient it prints
(weights, and the per-step dh_t, dc_t, dz_t through additive probes). docs/math.md must show
the script's output verbatim."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import reference
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # runs scripts/worked_example.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path_factory.mktemp("worked_example") / "worked_example.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "lessons" / "worked_example.py"), "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout, json.loads(out.read_text())


def one_hot(tokens, depth):
    return np.eye(depth)[np.asarray(tokens)]


def forward(params, x_enc, x_dec, y, probes=None):
    """The loss, with optional additive probes ``{(side, t, "z"|"c"|"h"): vector}``: ``z`` is
    perturbed before the activations, ``c`` before ``h_t = o tanh(c_t)``, ``h`` after, so the
    derivative w.r.t. a probe is the total dL/dz_t, dL/dc_t, dL/dh_t of math.md section 6.3;
    ``c+`` perturbs ``c_t`` after ``h_t`` is computed (what reaches ``c_t`` from later steps)."""
    probes = probes or {}
    H = params["encoder"]["recurrent_kernel"].shape[0]
    h = c = np.zeros(H)
    hs = []
    for side, xs in (("encoder", x_enc), ("decoder", x_dec)):
        p = params[side]
        for t, x in enumerate(xs):
            z = x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"] + probes.get((side, t, "z"), 0)
            i, f, g, o = (reference.sigmoid(z[:H]), reference.sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]),
                          reference.sigmoid(z[3 * H:]))
            c = f * c + i * g + probes.get((side, t, "c"), 0)
            h = o * np.tanh(c) + probes.get((side, t, "h"), 0)
            c = c + probes.get((side, t, "c+"), 0)  # after h_t: the gradient through later steps only
            if side == "decoder":
                hs.append(h)
    logits = np.stack(hs) @ params["dense"]["kernel"] + params["dense"]["bias"]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return reference.keras_crossentropy(probs[None], one_hot(y, probs.shape[-1])[None]), probs


def central_difference(f, shape, eps=1e-6):
    grad = np.zeros(shape)
    for idx in np.ndindex(*shape):
        e = np.zeros(shape)
        e[idx] = eps
        grad[idx] = (f(e) - f(-e)) / (2 * eps)
    return grad


@pytest.fixture(scope="module")
def oracle(run):
    _, r = run
    params = {side: {k: np.asarray(v, np.float64) for k, v in leaves.items()} for side, leaves in r["params"].items()}
    x_enc = one_hot(r["encoder_tokens"], len(r["input_vocab"]))
    x_dec = one_hot(r["decoder_tokens"], len(r["target_vocab"]))
    y = r["target_tokens"]
    loss, probs = forward(params, x_enc, x_dec, y)
    grads = {}
    for side, leaves in params.items():
        for name, a in leaves.items():
            def f(e, side=side, name=name):
                p = {s: dict(v) for s, v in params.items()}
                p[side][name] = params[side][name] + e
                return forward(p, x_enc, x_dec, y)[0]
            grads[side, name] = central_difference(f, a.shape)
    H = r["hidden"]
    deltas = {}
    for side, n in (("encoder", len(x_enc)), ("decoder", len(x_dec))):
        for what, size in (("h", H), ("c", H), ("z", 4 * H)):
            deltas[side, what] = np.stack([
                central_difference(lambda e: forward(params, x_enc, x_dec, y, {(side, t, what): e})[0], (size,))
                for t in range(n)])
    return {"params": params, "x": (x_enc, x_dec), "loss": loss, "probs": probs, "grads": grads, "deltas": deltas}


def test_the_pair_and_shapes(run):
    _, r = run
    assert (r["english"], r["french"], r["hidden"]) == ("Go.", "Va !", 2)
    assert len(r["encoder_tokens"]) == 3
    target = "".join(r["target_vocab"][k] for k in r["target_tokens"])
    decoder = "".join(r["target_vocab"][k] for k in r["decoder_tokens"])
    assert decoder == "\tVa !\n" and target == "Va !\n "  # the seed also reads "\n" and predicts padding
    assert sum(np.size(a) for leaves in r["params"].values() for a in leaves.values()) == \
        (4 + 2 + 1) * 4 * 2 + (6 + 2 + 1) * 4 * 2 + 2 * 6 + 6


def test_forward_matches_the_reference_model(run, oracle):
    _, r = run
    x_enc, x_dec = oracle["x"]
    probs = reference.seed_model(oracle["params"], x_enc[None], x_dec[None])[0]
    np.testing.assert_allclose(oracle["probs"], probs, atol=1e-14)  # the probed forward is the reference
    np.testing.assert_allclose(r["probs"], probs, atol=1e-12)
    assert r["loss"] == pytest.approx(oracle["loss"], abs=1e-12)
    assert np.mean(r["position_losses"]) == pytest.approx(oracle["loss"], abs=1e-12)
    _, (h, c) = reference.lstm_layer(x_enc[None], *(oracle["params"]["encoder"][k] for k in
                                                    ("kernel", "recurrent_kernel", "bias")))
    np.testing.assert_allclose(r["forward"]["encoder"]["h"][-1], h[0], atol=1e-12)
    np.testing.assert_allclose(r["forward"]["encoder"]["c"][-1], c[0], atol=1e-12)


def test_every_gradient_matches_finite_differences(run, oracle):
    _, r = run
    for (side, name), g in oracle["grads"].items():
        np.testing.assert_allclose(r["grads"][side][name], g, atol=1e-9, err_msg=f"{side}/{name}")
    for (side, what), d in oracle["deltas"].items():
        np.testing.assert_allclose(r["backward"][side]["d" + what], d, atol=1e-9, err_msg=f"{side} d{what}")
    # the bridge: what the decoder sends back is where the encoder's last step starts
    np.testing.assert_allclose(r["dh_bridge"], oracle["deltas"]["encoder", "h"][-1], atol=1e-9)
    assert r["check"]["grad_diff"] < 1e-12 and r["check"]["probs_diff"] < 1e-12


def test_math_md_shows_the_output(run):
    stdout, _ = run
    math = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
    assert stdout.strip() in math
    assert "agree with every number above to 1e-12" in stdout
