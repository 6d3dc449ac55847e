"""scripts/bench.py's attention rows: the PyTorch tutorial-style Bahdanau model computes the
same probabilities as minis2s' ``bahdanau`` with the same weights (so the benchmark compares
like with like), and the targets line reads the run's medians."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest

from minis2s import models

from tests.conftest import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_torch_bahdanau_equals_minis2s_bahdanau():
    torch = pytest.importorskip("torch")
    from torch import nn

    bench = load_bench()
    v_in, v_out, h, B, t_enc, t_dec = 7, 9, 6, 3, 5, 4
    model = models.build(models.ModelConfig(v_in, v_out, h, "bahdanau"))
    params = model.init(jax.random.PRNGKey(0))
    p = jax.tree.map(np.asarray, params)
    net = bench.TorchBahdanauWorker.build_model(nn, torch, h, v_in, v_out)
    t = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        # Keras kernels are (in, out) with gates i, f, c, o; torch's weights are (out, in), same gate order
        net.encoder.weight_ih_l0.copy_(t(p["encoder"]["kernel"].T))
        net.encoder.weight_hh_l0.copy_(t(p["encoder"]["recurrent_kernel"].T))
        net.encoder.bias_ih_l0.copy_(t(p["encoder"]["bias"]))
        net.encoder.bias_hh_l0.zero_()
        net.cell.weight_ih.copy_(t(p["decoder"]["kernel"].T))
        net.cell.weight_hh.copy_(t(p["decoder"]["recurrent_kernel"].T))
        net.cell.bias_ih.copy_(t(p["decoder"]["bias"]))
        net.cell.bias_hh.zero_()
        net.w_q.weight.copy_(t(p["query"]["kernel"].T))
        net.w_k.weight.copy_(t(p["key"]["kernel"].T))
        net.v.weight.copy_(t(p["attention"]["scale"][None]))
        net.dense.weight.copy_(t(p["dense"]["kernel"].T))
        net.dense.bias.copy_(t(p["dense"]["bias"]))
    rng = np.random.default_rng(0)
    enc = rng.integers(0, v_in, (B, t_enc)).astype(np.int32)
    dec = rng.integers(0, v_out, (B, t_dec)).astype(np.int32)
    # full-length sentences: the tutorial's encoder reads padding, minis2s' stops at the length
    lengths = np.full(B, t_enc, np.int32)
    ours = np.asarray(model.apply(params, {"encoder_tokens": enc, "encoder_lengths": lengths, "decoder_tokens": dec}))
    with torch.no_grad():
        theirs = net(t(np.eye(v_in)[enc]), t(np.eye(v_out)[dec]), torch.tensor(lengths, dtype=torch.int64)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_attention_targets_line():
    bench = load_bench()
    results = {
        "minis2s-bptt": {"epoch_s_median": 10.0}, "minis2s-luong": {"epoch_s_median": 12.0},
        "minis2s-bahdanau": {"epoch_s_median": 5.0}, "torch-bahdanau": {"epoch_s_median": 10.0},
    }
    assert bench.attention_targets(results) == [
        "luong epoch / seed epoch: 1.20 (target <= 1.3: met)",
        "PyTorch-tutorial bahdanau epoch / minis2s bahdanau epoch: 2.00 (target >= 3: NOT met)",
    ]
    assert bench.attention_targets({"minis2s-bptt": {"epoch_s_median": 1.0}}) == []
    assert bench.available("minis2s-bahdanau") and bench.available("minis2s-bptt")
    assert not bench.available("minis2s-no-such-model")
