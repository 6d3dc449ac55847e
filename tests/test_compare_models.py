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
