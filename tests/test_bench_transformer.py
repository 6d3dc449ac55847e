"""scripts/benchmarks/bench.py's transformer rows: the target line reads the run's medians, and
the rows run only where the model is registered.

(The FLOP count the rows' "% of peak" uses is checked against the model's jaxpr in
tests/test_layers_lessons.py; that the PyTorch model computes minis2s' probabilities on the
same weights is checked by the benchmark before it times it,
``torch_transformer.check_against_minis2s``: PyTorch is a benchmark dependency only.)"""

from __future__ import annotations

from scripts.benchmarks import bench


def test_transformer_target_line():
    results = {"minis2s-transformer": {"epoch_s_median": 9.0}, "torch-transformer": {"epoch_s_median": 10.0}}
    assert bench.attention_targets(results) == [
        "minis2s transformer epoch / PyTorch transformer epoch: 0.90 (target <= 1.0: met)"]
    results["minis2s-transformer"]["epoch_s_median"] = 12.5
    assert bench.attention_targets(results) == [
        "minis2s transformer epoch / PyTorch transformer epoch: 1.25 (target <= 1.0: NOT met)"]
    assert bench.attention_targets({"minis2s-transformer": {"epoch_s_median": 1.0}}) == []
    assert bench.available("minis2s-transformer")


def test_transformer_flag_selects_the_two_rows():
    args = bench.build_parser().parse_args(["--transformer"])
    assert args.transformer and bench.TRANSFORMER_VARIANTS == ("minis2s-transformer", "torch-transformer")
