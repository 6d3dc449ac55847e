"""The tutorial scripts run on tiny settings and print what they promise."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_script(name, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lessons" / name), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


@pytest.mark.slow
def test_tutorial_runs_cell_by_cell_as_a_script():
    """scripts/lessons/tutorial.py, shortened to 30 of its 250 epochs.

    The full run (about 45 s of CPU time) decodes all 211 training pairs and 35 of the 53
    held-out ones exactly; at 30 epochs only a few are (5 and 1 measured), but the loss has
    fallen from 2.30 to 0.15 and the teacher-forced validation accuracy from 0.42 to 0.94.
    """
    source = (ROOT / "scripts" / "lessons" / "tutorial.py").read_text()
    assert source.count("# %%") >= 10 and "jax.value_and_grad" in source and ".fit(" not in source
    r = run_script("tutorial.py", "--epochs", "30")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "264 pairs" in r.stdout and "8 leaves, 0 failed" in r.stdout
    epochs = {int(l.split()[1].split("/")[0]): l for l in r.stdout.splitlines() if l.startswith("Epoch ")}
    assert set(epochs) >= {1, 30} and all(l.startswith(f"Epoch {e}/30 ") for e, l in epochs.items())

    def metric(line, name):
        return float(line.split(f" {name}: ")[1].split()[0])

    assert metric(epochs[1], "loss") > 2.0 and metric(epochs[1], "val_accuracy") < 0.5
    assert metric(epochs[30], "loss") < 0.25 and metric(epochs[30], "val_accuracy") > 0.9
    assert r.stdout.count("(reference: ") + r.stdout.count("  = ") == 16 and "held-out pairs" in r.stdout
    assert "/211 training and " in r.stdout and "/53 held-out pairs exact" in r.stdout


@pytest.mark.slow
def test_gradcheck_demo_agrees_at_every_step():
    r = run_script("gradcheck_demo.py", "--hidden", "3", "--steps", "4")
    assert r.returncode == 0, r.stderr
    for step in ("3", "4"):  # against jax.grad, then against minis2s.bptt._lstm_bwd
        for name in ("kernel", "recurrent_kernel", "bias"):
            line = next(l for l in r.stdout.splitlines() if l.startswith(f"{step}. {name} "))
            assert float(line.rsplit("=", 1)[1]) < 1e-10
    assert "bptt._lstm_bwd" in r.stdout and "(dh_0, dc_0)" in r.stdout
    assert "8 leaves, 0 failed" in r.stdout and "all gradients agree" in r.stdout


@pytest.mark.slow
def test_figures_script_draws_every_figure(tmp_path):
    r = run_script("figures.py", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    math = (ROOT / "docs" / "math.md").read_text()
    for name in ("rmsprop-first-step.png", "lstm-cell.png", "encoder-decoder.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (ROOT / "docs" / "img" / name).is_file()  # the committed copy exists
        assert f"img/{name}" in math  # and the doc shows it


def test_teacher_forcing_table_comes_from_the_data_pipeline():
    """The figure's rows, recomputed by hand: decoder input = "\t" + French, target = French + "\n"."""
    from tests.conftest import load_script
    figures = load_script("lessons/figures")
    assert figures.teacher_forcing_rows() == ("Go.", "\tVa !", "Va !\n")
