"""scripts/benchmarks/bench.py's attention rows: the targets line reads the run's medians.

(That the PyTorch tutorial-style Bahdanau model computes the same probabilities as minis2s'
``bahdanau`` with the same weights is checked by the benchmark itself before it times it,
``TorchBahdanauWorker.check_against_minis2s``: PyTorch is a benchmark dependency, not part of
the test extra, and CI fails on a missing oracle rather than skipping.)"""

from __future__ import annotations

from scripts.benchmarks import bench


def test_attention_targets_line():
    results = {
        "minis2s-bptt": {"epoch_s_median": 10.0}, "minis2s-luong": {"epoch_s_median": 12.0},
        "minis2s-bahdanau": {"epoch_s_median": 5.0}, "torch-bahdanau": {"epoch_s_median": 10.0},
    }
    assert bench.attention_targets(results) == [
        "luong epoch / seed epoch: 1.20 (target <= 1.3: met)",
        "PyTorch-tutorial bahdanau epoch / minis2s bahdanau epoch: 2.00 (target >= 3: NOT met)",
    ]
    results["torch-bahdanau"] = {"epoch_s_median": 16.0}
    results["torch-bahdanau-hoisted"] = {"epoch_s_median": 9.0}
    assert bench.attention_targets(results)[1:] == [
        "PyTorch-tutorial bahdanau epoch / minis2s bahdanau epoch: 3.20 (target >= 3: met)",
        "PyTorch bahdanau with the keys projected once / minis2s bahdanau epoch: 1.80 (no target)",
    ]
    assert bench.attention_targets({"minis2s-bptt": {"epoch_s_median": 1.0}}) == []
    assert bench.available("minis2s-bahdanau") and bench.available("minis2s-bptt")
    assert not bench.available("minis2s-no-such-model")
