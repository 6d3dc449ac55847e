"""scripts/benchmarks/plot_learning_curve.py: CPU seconds stitched across restarts, the slope,
reading the watcher's files, and the per-epoch scores on a tiny hand-written curve."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def plc():
    return load_script("benchmarks/plot_learning_curve")


def test_stitch_adds_the_previous_segments_last_reading_after_each_drop(plc):
    # two restarts (200 -> 50, 80 -> 10); a missing reading neither counts nor ends a segment
    assert plc.stitch_cpu_seconds([100.0, 200.0, None, 50.0, 80.0, 10.0]) == [100.0, 200.0, None, 250.0, 280.0, 290.0]
    assert plc.stitch_cpu_seconds([5.0]) == [5.0]
    assert plc.stitch_cpu_seconds([]) == []


def test_slope_of_the_last_two_points_with_a_reading(plc):
    assert plc.slope([1.0, 2.0, None, 4.0], [10.0, 20.0, 25.0, 30.0]) == 5.0  # (30 - 20) / (4 - 2)
    assert plc.slope([1.0], [10.0]) is None  # one point
    assert plc.slope([None, 3.0], [1.0, 2.0]) is None
    assert plc.slope([3.0, 3.0], [1.0, 2.0]) is None


def test_read_curve_sorts_by_epoch_and_keeps_the_last_of_a_repeated_epoch(plc, tmp_path):
    path = tmp_path / "curve.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in [{"epoch": 2, "val_loss": 1.0}, {"epoch": 1, "val_loss": 2.0},
                                                      {"epoch": 2, "val_loss": 0.5}]) + "\n")
    assert plc.read_curve(path) == [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 0.5}]
    path.write_text("not json\n")
    with pytest.raises(SystemExit, match="curve.jsonl:1"):
        plc.read_curve(path)


def test_score_epochs_on_a_tiny_curve(plc, tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    # epoch 1: "" and "ab"; epoch 2: both exact against some reference
    (out / "epoch-0001.tsv").write_text("Hi.\t\nGo.\tab\n", encoding="utf-8")
    (out / "epoch-0002.tsv").write_text("Hi.\tab\nGo.\tab\n", encoding="utf-8")
    refs = {"Hi.": ["ab"], "Go.": ["cd", "ab"], "Run.": ["xy"]}
    points = [{"epoch": 1, "val_loss": 1.5, "train_cpu_s": 3600.0}, {"epoch": 2, "val_loss": 1.0, "train_cpu_s": 1800.0}]
    rows = plc.score_epochs(points, out, refs)
    # epoch 1 by hand: totals n=1 (H 2, R 4, M 2), n=2 (1, 2, 1): P = 1, R = 1/2, F2 = 2.5/4.5 = 5/9;
    # against the first references ("ab", "cd") nothing matches.
    assert rows[0]["chrf_multi"] == pytest.approx(500 / 9) and rows[0]["chrf_first"] == 0.0
    # epoch 2: every output equals its best reference; first references: "ab" matches, "cd" does not:
    # n=1 (H 4, R 4, M 2), n=2 (2, 2, 1): P = R = 1/2, F2 = 1/2
    assert rows[1]["chrf_multi"] == pytest.approx(100.0) and rows[1]["chrf_first"] == pytest.approx(50.0)
    assert [r["cpu_hours"] for r in rows] == [1.0, 1.5]  # the second process restarted at 0
    assert plc.slope([r["cpu_hours"] for r in rows], [r["chrf_multi"] for r in rows]) == pytest.approx(
        (100 - 500 / 9) / 0.5)
    assert plc.table(rows).splitlines()[2] == "| 1 | 1.00 | 1.5000 | 55.6 | 0.0 |"


def test_a_point_scored_earlier_is_used_as_recorded_when_its_outputs_are_gone(plc, tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "epoch-0002.tsv").write_text("Hi.\tab\n", encoding="utf-8")
    points = [{"epoch": 1, "val_loss": 1.5, "train_cpu_s": 7200.0, "chrf_multi": 40.0, "chrf_first": 30.0,
               "recorded": "an earlier session"},
              {"epoch": 2, "val_loss": 1.0, "train_cpu_s": 1800.0}]  # a warm start: a new process
    rows = plc.score_epochs(points, out, {"Hi.": ["ab"]})
    assert [r["chrf_multi"] for r in rows] == [40.0, 100.0] and [r["cpu_hours"] for r in rows] == [2.0, 2.5]
    assert plc.table(rows).splitlines()[2:] == ["| 1* | 2.00 | 1.5000 | 40.0 | 30.0 |",
                                                "| 2 | 2.50 | 1.0000 | 100.0 | 100.0 |"]
    (out / "epoch-0001.tsv").write_text("Hi.\t\n", encoding="utf-8")  # outputs, when there, win
    assert plc.score_epochs(points, out, {"Hi.": ["ab"]})[0]["chrf_multi"] == 0.0
    with pytest.raises(SystemExit, match="epoch-0003.tsv: cannot read"):  # no note: the outputs are needed
        plc.score_epochs([{"epoch": 3, "chrf_multi": 1.0, "chrf_first": 1.0}], out, {"Hi.": ["ab"]})


def test_score_epochs_refuses_a_source_off_the_validation_side(plc, tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "epoch-0001.tsv").write_text("Elsewhere.\tx\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="epoch-0001.tsv: 1 source"):
        plc.score_epochs([{"epoch": 1}], out, {"Hi.": ["a"]})


def test_table_with_one_point_and_no_cpu_reading(plc):
    rows = [{"epoch": 1, "val_loss": None, "cpu_hours": None, "chrf_multi": 12.34, "chrf_first": 10.0}]
    assert plc.table(rows).splitlines()[2] == "| 1 | — | — | 12.3 | 10.0 |"


@pytest.mark.slow
def test_script_end_to_end_on_a_tiny_run(plc, demo_path, tmp_path, monkeypatch, capsys):
    import sys

    from minis2s import data, metrics, splits, train
    from minis2s.config import Config

    lc = load_script("benchmarks/learning_curve")
    ds = data.load_dataset(demo_path, None)
    run_dir, curve = tmp_path / "run", tmp_path / "curve"
    config = Config(num_samples=None, epochs=2, latent_dim=8, batch_size=8, split="source", test_split=0.2,
                    validation_split=0.2)
    train.fit(config, ds, out=run_dir, log=None, checkpoint_every=1)
    monkeypatch.setattr(sys, "argv", ["learning_curve.py", str(run_dir), "--data", str(demo_path), "--limit", "5",
                                      "--once", "--out", str(curve)])
    lc.main()
    plc.main([str(curve), "--data", str(demo_path), "--run", str(run_dir), "--out", str(tmp_path / "fig.png")])
    assert (tmp_path / "fig.png").stat().st_size > 0
    lines = capsys.readouterr().out.splitlines()
    # the last epoch's multi-reference chrF, from the outputs and every validation reference
    refs = {}
    for i in splits.split_rows(config, ds.input_texts).val:
        refs.setdefault(ds.input_texts[i], []).append(ds.target_texts[i].strip("\t\n"))
    rows = [line.split("\t") for line in (curve / "outputs" / "epoch-0002.tsv").read_text(encoding="utf-8").splitlines()]
    want = 100 * metrics.chrf_multi([r[1] if len(r) > 1 else "" for r in rows], [refs[r[0]] for r in rows])
    row = next(line for line in lines if line.startswith("| 2 |"))
    assert row.split("|")[4].strip() == f"{want:.1f}"
    assert any(line.startswith("slope of the last two points") for line in lines)
