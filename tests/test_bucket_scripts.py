"""scripts/benchmarks/bucket_quality.py and learning_curve.py on tiny runs."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from minis2s import bucketing, data, splits, train
from minis2s.config import Config
from tests.conftest import load_script


@pytest.mark.slow
def test_bucket_quality_variants_differ_only_where_they_say(demo_path, tmp_path):
    bq = load_script("benchmarks/bucket_quality")
    args = types.SimpleNamespace(model="luong", num_samples=80, epochs=2, out=str(tmp_path))
    ds = data.load_dataset(demo_path, 80)
    rows = {name: bq.run_variant(name, 0, ds, args) for name in ("order", "uncut", "both")}
    # The same batches, cut or not: the same training (the cut is exact).
    np.testing.assert_allclose(rows["uncut"]["loss"], rows["order"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(rows["uncut"]["val_loss"], rows["order"]["val_loss"], rtol=1e-4)
    # The constant denominator changes the updates, so the training differs.
    assert abs(rows["both"]["loss"] - rows["order"]["loss"]) > 1e-4
    assert train.Batcher is bucketing.Batcher  # put back


@pytest.mark.slow
def test_learning_curve_decodes_every_checkpoint_once(demo_path, tmp_path, monkeypatch):
    lc = load_script("benchmarks/learning_curve")
    ds = data.load_dataset(demo_path, None)
    run_dir = tmp_path / "run"
    config = Config(num_samples=None, epochs=2, latent_dim=8, batch_size=8, split="source", test_split=0.2,
                    validation_split=0.2)
    train.fit(config, ds, out=run_dir, log=None, checkpoint_every=1)
    out = tmp_path / "curve"
    argv = ["learning_curve.py", str(run_dir), "--data", str(demo_path), "--limit", "5", "--once", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    lc.main()
    lc.main()  # a second pass decodes nothing new
    points = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    epochs = sorted(p["epoch"] for p in points)
    assert epochs == sorted({p["epoch"] for p in points}) and 2 in epochs
    assert all(p["sources"] == 5 and 0.0 <= p["chrf_first_reference"] <= 100.0 for p in points)
    rows = (out / "outputs" / "epoch-0002.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 5
    val_sources = {ds.input_texts[i] for i in splits.split_rows(config, ds.input_texts).val}
    assert {r.split("\t")[0] for r in rows} <= val_sources
