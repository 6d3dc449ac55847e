"""The command line itself: one validator for every number, ``--num-samples all``, help
text and defaults, ``--version``, and the one-line errors and advice that replaced silently
wrong output (each through ``minis2s`` in-process, tests/_cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tomllib

import pytest

from minis2s import data, train
from minis2s import trained as trained_mod
from minis2s.cli import build_parser
from minis2s.cli.options import ALL, MAX_BEAM, count_or_all, number
from tests._cli import run
from tests._tiny_model import tiny_model
from tests.conftest import ROOT

TINY_TRAIN = ["--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8", "--latent-dim", "4",
              "--show", "0"]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("parse, text, want", [
    (number(int, 1), "3", 3),
    (number(int, 1), "0", "must be positive, got 0"),
    (number(int, 1), "2.5", "expected an integer, got '2.5'"),
    (number(int, 0), "0", 0),
    (number(int, 0), "-1", "must be an integer >= 0, got -1"),
    (number(float, 0.0, 1.0, inclusive=False), "1", "must be between 0 and 1 (exclusive), got 1.0"),
    (number(float, 0.0, 1.0, inclusive=False), "nan", "must be between 0 and 1 (exclusive), got nan"),
    (number(float, 0.0, 1.0), "1", 1.0),
    (number(float, 0.0, 1.0), "-0.5", "must be between 0 and 1 (inclusive), got -0.5"),
    (number(float, 0.0, inclusive=False), "0", "must be a positive finite number, got 0.0"),
    (number(float, 0.0, inclusive=False), "inf", "must be a positive finite number, got inf"),
    (number(float, 0.0), "0", 0.0),
    (number(float, 0.0), "x", "expected a number, got 'x'"),
    (number(int, 1, 64, what="from 1 to 64"), "65", "must be from 1 to 64, got 65"),
    (count_or_all, "all", ALL),
    (count_or_all, "12", 12),
])
def test_number_validator(parse, text, want):
    if isinstance(want, str):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{want.replace('(', '.').replace(')', '.')}$"):
            parse(text)
    else:
        assert parse(text) == want and type(parse(text)) is type(want)


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for a in sub._actions:
                    yield name, a


def test_every_option_has_help_that_shows_its_default():
    for command, action in _options(build_parser()):
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{command} {name} has no help"
        if action.option_strings and action.nargs != 0:  # an option taking a value: what if left out
            assert "default" in action.help, f"{command} {name}: help shows no default: {action.help!r}"


def test_train_description_and_translate_usage():
    rc, out, _ = run(["train", "--help"])
    assert rc == 0 and "Train the seed model" not in out and "Train a model (--model, --cell" in out
    rc, out, _ = run(["translate", "--help"])
    assert rc == 0 and "CHECKPOINT_DIR [SENTENCE ...]" in " ".join(out.split())


def test_show_is_one_flag_for_train_and_evaluate():
    p = build_parser()
    assert p.parse_args(["train", "--show", "3"]).show == 3
    assert p.parse_args(["evaluate", "CKPT", "--show", "3"]).show == 3
    assert p.parse_args(["evaluate", "CKPT"]).show == 20 and p.parse_args(["train"]).show == 5


def test_version():
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    rc, out, _ = run(["--version"])
    assert rc == 0 and out.strip() == f"minis2s {want}"


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_beam_width_is_bounded(command):
    rc, out, err = run([command, "CKPT", "--beam", "100000"])
    assert rc == 2 and out == ""
    assert err.strip().splitlines()[-1].endswith(
        f"argument --beam: must be at most {MAX_BEAM} (a wider beam only costs time), got 100000")


# --------------------------------------------------------------------------- data


@pytest.mark.slow  # ~10 s: 10,050 pairs read, one epoch compiled and run
def test_num_samples_all_trains_on_every_pair(tmp_path):
    """More pairs than the default 10,000: 'all' takes every one (it used to mean 'not given')."""
    n = 10_050
    path = tmp_path / "many.txt"
    path.write_text("".join(f"a{i % 3}\tb{i % 3}\n" for i in range(n)), encoding="utf-8")
    rc, out, err = run(["train", "--data", str(path), "--num-samples", "all", "--epochs", "1", "--latent-dim", "2",
                        "--batch-size", "4096", "--show", "0", "--out", str(tmp_path / "run")])
    assert rc == 0, err
    split_at = int(n * 0.8)  # Keras' validation_split: the last 20% are held out
    assert f"Number of samples: {n}\n" in out
    assert f"Train on {split_at} samples, validate on {n - split_at} samples" in out
    assert trained_mod.load_trained(tmp_path / "run").config.num_samples is None  # recorded as 'all'


@pytest.mark.slow
def test_evaluate_num_samples_all_reads_every_pair(tmp_path):
    params, ds, config, _ = tiny_model()
    ckpt = trained_mod.save_trained(tmp_path / "ckpt", params, dataclasses.replace(config, num_samples=100), ds)
    rc, out, err = run(["evaluate", str(ckpt), "--data", str(data.DEMO_PATH), "--num-samples", "all", "--show", "0",
                        "--on-error", "skip", "--out", str(tmp_path / "e.tsv")])
    assert rc == 0, err
    assert "note: reading all samples, the checkpoint was trained on 100" in out
    assert f"of {len(ds)} from {data.DEMO_PATH}" in out


@pytest.mark.parametrize("line, side", [("\tVa !", "English"), ("Go.\t", "French"), ("Go.\t  \tCC-BY", "French")])
def test_a_pair_with_an_empty_side_is_refused(tmp_path, line, side):
    path = tmp_path / "fra.txt"
    path.write_text(f"Hi.\tSalut.\nRun!\tCours !\n{line}\nStop!\tArrête !\n", encoding="utf-8")
    rc, out, err = run(["train", "--data", str(path), "--out", str(tmp_path / "run")])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        f"minis2s train: error: {path}:3: the {side} side is empty: {line!r}; remove the line or fill it in"]


# --------------------------------------------------------------------------- train: advice that works


@pytest.mark.slow  # three short trainings
def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(train, "fit", interrupt)
        rc, _, err = run(["train", *TINY_TRAIN, "--epochs", "1", "--out", str(out)])
    assert rc == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted before the first checkpoint; {out} holds none, so there is nothing to resume: "
        "run the same command again to start over")
    rc, _, err = run(["train", *TINY_TRAIN, "--epochs", "1", "--out", str(out)])  # the advice works
    assert rc == 0, err

    # Later, with a checkpoint: resume; --epochs at or below the epochs done says nothing is left
    rc, _, err = run(["train", "--resume", str(out), "--epochs", "2"])
    assert rc == 0, err
    for epochs, fewer in (("1", " (--epochs 1)"), ("2", "")):
        rc, text, err = run(["train", "--resume", str(out), "--epochs", epochs])
        assert rc == 0 and "Resuming" not in text, err
        assert text.strip() == (f"Nothing to do: the run already has 2 epochs{fewer}, nothing is left to train "
                                f"({out}/epoch-0002); pass --epochs N with N > 2 to train on")


@pytest.mark.slow
def test_distributed_without_a_cluster_names_the_flag_to_add(tmp_path):
    from tests.conftest import run_cli

    r = run_cli("train", *TINY_TRAIN, "--distributed", "--out", str(tmp_path / "run"), env={"JAX_PLATFORMS": "cpu"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "minis2s train: error: --distributed: no cluster (Cloud TPU, SLURM, Open MPI) detected to take it from "
        "(coordinator_address should be defined); add --coordinator HOST:PORT")


# --------------------------------------------------------------------------- translate and plot


class _Terminal(io.TextIOWrapper):
    def isatty(self) -> bool:
        return True


def test_translate_from_a_terminal_says_it_reads_standard_input(tmp_path, monkeypatch):
    params, ds, config, _ = tiny_model()
    ckpt = trained_mod.save_trained(tmp_path / "ckpt", params, config, ds)
    monkeypatch.setattr(sys, "stdin", _Terminal(io.BytesIO(b"Go.\n"), encoding="utf-8"))
    rc, out, err = run(["translate", str(ckpt)])
    assert rc == 0 and len(out.splitlines()) == 1
    assert err.splitlines()[0] == ("minis2s translate: reading sentences from standard input, one per line "
                                   "(end with Ctrl-D)")
    rc, out, err = run(["translate", str(ckpt)], stdin=b"Go.\n")  # a pipe: no hint
    assert rc == 0 and err == ""


def test_plot_reports_the_file_it_wrote(tmp_path):
    from tests.conftest import require_module

    require_module("matplotlib")
    (tmp_path / "history.json").write_text('{"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}')
    rc, out, err = run(["plot", str(tmp_path), "--out", str(tmp_path / "curves")])
    assert rc == 0, err
    assert out.strip() == f"Wrote {tmp_path / 'curves.png'} (2 epochs)"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "curves").exists()
    rc, out, err = run(["plot", str(tmp_path), "--out", str(tmp_path)])
    assert rc == 2 and err.strip() == (f"minis2s plot: error: {tmp_path}: is a directory; give a file name "
                                       f"such as {tmp_path / 'figure.png'}")
