"""``minis2s plot DIR``: a PNG of loss and accuracy per epoch, and the missing-matplotlib message."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

from minis2s import cli, plot
from tests.conftest import require_module

HISTORY = {
    "loss": [1.2, 0.9, 0.7],
    "accuracy": [0.70, 0.75, 0.79],
    "val_loss": [1.1, 0.95, float("nan")],
    "val_accuracy": [0.69, 0.74, 0.76],
    "seconds": [3.0, 2.9, 2.9],
}


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))  # NaN as JSON's NaN, as json.dump writes it
    return tmp_path


def test_plot_writes_a_png(run_dir):
    require_module("matplotlib")
    rc, out, err = run(["plot", str(run_dir)])
    assert rc == 0, err
    png = run_dir / "history.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # two panels with lines, not an empty canvas
    assert f"Wrote {png} (3 epochs)" in out
    rc, out, _ = run(["plot", str(run_dir / "history.json"), "--out", str(run_dir / "x" / "curves.png")])
    assert rc == 0 and (run_dir / "x" / "curves.png").is_file()


def test_without_matplotlib_it_says_how_to_install(run_dir, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc, out, err = run(["plot", str(run_dir)])
    assert rc == 2
    assert err.strip() == 'minis2s plot: error: matplotlib is not installed; install it with: pip install "minis2s[plot]"'
    assert not (run_dir / "history.png").exists()


def test_plot_errors(tmp_path):
    rc, _, err = run(["plot", str(tmp_path)])
    assert rc == 2 and "no history.json here" in err
    rc, _, err = run(["plot", str(tmp_path / "nope")])
    assert rc == 2 and "no such file or directory" in err
    (tmp_path / "history.json").write_text("{not json")
    rc, _, err = run(["plot", str(tmp_path)])
    assert rc == 2 and "not valid JSON" in err
    (tmp_path / "history.json").write_text('{"seconds": [1.0]}')
    rc, _, err = run(["plot", str(tmp_path)])
    assert rc == 2 and "no per-epoch loss or accuracy" in err
    assert plot.load_history(_write(tmp_path, {"loss": [1, 2], "note": "x"})) == {"loss": [1.0, 2.0]}


def _write(d, obj):
    (d / "history.json").write_text(json.dumps(obj))
    return d


# --------------------------------------------------------------------------- figure styling


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, kept open for inspection instead of written."""
    require_module("matplotlib")
    from matplotlib.figure import Figure

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    return figures


@pytest.mark.slow
def test_curves_title_names_model_data_and_run_and_loss_is_log_scaled(two_column_file, tmp_path, drawn):
    out = tmp_path / "run"
    rc, _, err = run(["train", "--data", str(two_column_file), "--num-samples", "6", "--epochs", "2",
                      "--latent-dim", "8", "--batch-size", "2", "--cell", "gru", "--out", str(out), "--quiet"])
    assert rc == 0, err
    title = f"seed model (GRU, latent 8), 6 pairs of {two_column_file.name}: {out}"
    assert plot.run_title(out) == title and plot.run_title(out / "history.json") == title
    rc, _, err = run(["plot", str(out)])
    assert rc == 0, err
    (fig,) = drawn
    loss_ax, accuracy_ax = fig.axes
    assert fig.get_suptitle() == title
    assert loss_ax.get_yscale() == "log" and accuracy_ax.get_yscale() == "linear"


def test_curves_title_without_checkpoints_is_the_run_name(run_dir):
    assert plot.run_title(run_dir / "history.json") == str(run_dir)


def test_each_attention_panel_has_its_own_scale_and_colour_bar(tmp_path, drawn):
    import numpy as np

    small = np.full((3, 4), 0.25)  # spread evenly over four characters
    peaked = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    plot.plot_attention([("abcd", "xyz", small), ("abc", "uv", peaked)], tmp_path / "a.png")
    (fig,) = drawn
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert [im.get_clim() for im in images] == [(0.0, 0.25), (0.0, 0.9)]
    assert len(fig.axes) == 4  # two heatmaps, two colour bars
