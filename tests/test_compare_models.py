"""scripts/benchmarks/compare_models.py: segmented training (--score-every) is one uninterrupted run."""

import json
import sys

import numpy as np
import pytest

from minis2s import checkpoint, data, run, train
from minis2s.config import Config
from tests.conftest import assert_trees_equal


def _compare_models():
    from tests.conftest import load_script
    return load_script("benchmarks/compare_models")


def test_parse_run_converts_each_field_to_its_config_type():
    cm = _compare_models()
    assert cm.parse_run("luong:model=luong,latent_dim=8,mask_padding=true,teacher_forcing=0.5") == (
        "luong", {"model": "luong", "latent_dim": 8, "mask_padding": True, "teacher_forcing": 0.5})
    assert cm.parse_run("seed") == ("seed", {})


@pytest.mark.slow
def test_score_every_trains_in_resumed_segments_equal_to_one_run(two_column_file, tmp_path, monkeypatch, capsys):
    cm = _compare_models()
    out = tmp_path / "cmp"
    fields = "latent_dim=8,batch_size=2"
    monkeypatch.setattr(sys, "argv", [
        "compare_models.py", "--data", str(two_column_file), "--num-samples", "8", "--epochs", "4",
        "--score-every", "2", "--beam", "0", "--run", f"tiny:{fields}", "--out", str(out)])
    cm.main()
    printed = capsys.readouterr().out
    curves = json.loads((out / "curves.json").read_text())
    assert [p["epoch"] for p in curves["tiny"]] == [2, 4]
    assert all(0.0 <= p["chrf"] <= 100.0 for p in curves["tiny"])
    assert "| tiny | 2 |" in printed and "| tiny | 4 |" in printed

    # The oracle: the same four epochs in one fit call, never interrupted.
    config = Config(num_samples=8, epochs=4, latent_dim=8, batch_size=2)
    ds = data.load_dataset(two_column_file, 8)
    params, history = train.fit(config, ds, log=None, patience=10)
    segmented, meta = checkpoint.load(run.latest_checkpoint(out / "tiny"))
    assert_trees_equal(segmented, params)
    _, state, _ = train.load_state(out / "tiny", ds)
    np.testing.assert_array_equal(state.history["val_loss"], history["val_loss"])
    assert curves["tiny"][1]["val_loss"] == history["val_loss"][3]


@pytest.mark.slow
def test_cpu_minutes_stops_a_run_at_its_budget_and_a_rerun_keeps_the_curve(two_column_file, tmp_path, monkeypatch):
    cm = _compare_models()
    out = tmp_path / "cmp"
    argv = ["compare_models.py", "--data", str(two_column_file), "--num-samples", "8", "--epochs", "6",
            "--score-every", "1", "--beam", "0", "--run", "tiny:latent_dim=8,batch_size=2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + ["--cpu-minutes", "1e-9"])  # any epoch exceeds it
    cm.main()
    curve = json.loads((out / "curves.json").read_text())["tiny"]
    assert [p["epoch"] for p in curve] == [1] and curve[0]["cpu_minutes"] > 0
    monkeypatch.setattr(sys, "argv", argv)  # no budget: trains on to --epochs, keeping the first point
    cm.main()
    curve = json.loads((out / "curves.json").read_text())["tiny"]
    assert [p["epoch"] for p in curve] == [1, 2, 3, 4, 5, 6]
    minutes = [p["cpu_minutes"] for p in curve]
    assert minutes == sorted(minutes) and len(set(minutes)) == 6
    cpu = json.loads((out / "tiny" / "cpu.json").read_text())
    assert sorted(map(int, cpu)) == [1, 2, 3, 4, 5, 6]


def test_plot_curves_draws_and_tabulates_what_it_is_given(tmp_path, monkeypatch, capsys):
    from tests.conftest import load_script, require_module

    require_module("matplotlib")  # skips outside CI where it is absent, fails in CI
    pc = load_script("benchmarks/plot_curves")
    curves = {"a": [{"epoch": 2, "val_loss": 1.5, "chrf": 10.0, "cpu_minutes": 3.25},
                    {"epoch": 4, "val_loss": 1.25, "chrf": 12.5, "cpu_minutes": 6.5}],
              "b": [{"epoch": 2, "val_loss": 1.0, "chrf": 20.0}]}  # no CPU minutes: left out of that plot
    (tmp_path / "curves.json").write_text(json.dumps(curves))
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", str(tmp_path / "curves.json"), "--out", str(tmp_path / "c.png")])
    pc.main()
    printed = capsys.readouterr().out.splitlines()
    assert printed[2:] == ["| a | 3.2 | 2 | 1.5000 | 10.0 |", "| a | 6.5 | 4 | 1.2500 | 12.5 |"]
    assert (tmp_path / "c.png").stat().st_size > 1000
