"""The shipped model (minis2s/pretrained.py): export, the checksum file, the loader's refusals,
and ``--pretrained`` on the command line.

Most tests export the tests' tiny seed model (tests/_tiny_model.py, saved as ``minis2s train``
saves a run: with optimizer state and history) into a temporary folder and point
``minis2s.pretrained.ROOT`` at it. ``test_shipped_model_loads_and_checksum_holds`` checks the
model the package really ships: it skips while none is shipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import hashlib
import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from minis2s import checkpoint, pretrained, run as run_mod
from minis2s.cli import build_parser
from minis2s.config import make_optimizer
from tests._cli import run
from tests._tiny_model import tiny_model
from tests.conftest import DEMO, ROOT, assert_trees_equal, load_script, missing, require_module

MAX_BYTES = 10 * 1024 * 1024  # the ceiling for a model inside the package


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The tiny model saved as a training run: epoch checkpoint with optimizer state, history."""
    params, ds, config, history = tiny_model()
    out = tmp_path_factory.mktemp("run")
    epochs = len(history["loss"])
    state = run_mod.TrainState(params, make_optimizer(config).init(params), epochs, history,
                               np.zeros(2, np.uint32), min(history["val_loss"]), epochs, 0)
    run_mod.save_state(out, state, config, ds, extra={"data": {"path": "/somewhere/on/the/trainer/pairs.txt"}})
    return out


@pytest.fixture(scope="module")
def shipped(run_dir, tmp_path_factory) -> Path:
    """The tiny run exported as the shipped model ``tiny`` under a temporary root."""
    return pretrained.export(run_dir, "tiny", root=tmp_path_factory.mktemp("shipped"))


@pytest.fixture
def as_default(shipped, monkeypatch) -> Path:
    """The exported tiny model as the package's default shipped model, for the CLI."""
    monkeypatch.setattr(pretrained, "ROOT", shipped.parent)
    monkeypatch.setattr(pretrained, "DEFAULT", shipped.name)
    return shipped


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_keeps_the_parameters_and_the_record_and_drops_the_optimizer(run_dir, shipped):
    source = run_mod.epoch_dir(run_dir, len(tiny_model()[3]["loss"]))
    assert (source / checkpoint.OPTIMIZER_FILE).is_file()
    assert sorted(p.name for p in shipped.iterdir()) == ["SHA256SUMS", "manifest.json", "params.npz"]
    params, ds, config, history = tiny_model()
    loaded = pretrained.load_pretrained("tiny", root=shipped.parent)
    assert_trees_equal(loaded.params, params)
    src = json.loads((source / "manifest.json").read_text())
    got = json.loads((shipped / "manifest.json").read_text())
    for key in ("config", "input_chars", "target_chars", "max_encoder_seq_length", "max_decoder_seq_length",
                "data_sha256", "training"):
        assert got[key] == src[key], key
    assert got["training"]["history"]["loss"] == history["loss"]
    assert got["data"] == {"path": "pairs.txt"}  # the trainer's folders stay on the trainer
    assert list(got["arrays"]) == ["params.npz"] and list(got["files"]) == ["params.npz"]
    assert loaded.config.latent_dim == 32 and list(loaded.input_vocab.chars) == list(ds.input_vocab.chars)


def test_parameter_count_and_size(shipped):
    v_in, v_out, h = len(tiny_model()[1].input_vocab), len(tiny_model()[1].target_vocab), 32
    # the seed model: two LSTMs (kernel, recurrent kernel, bias: 4 gates each) and a dense softmax
    want = 4 * h * (v_in + h + 1) + 4 * h * (v_out + h + 1) + (h + 1) * v_out
    with np.load(shipped / "params.npz") as z:
        assert sum(z[k].size for k in z.files) == want
    assert pretrained.parameter_count(pretrained.load_pretrained("tiny", root=shipped.parent).params) == want
    size = (shipped / "manifest.json").stat().st_size + (shipped / "params.npz").stat().st_size
    assert pretrained.size_bytes(shipped) == size <= MAX_BYTES
    assert (shipped / "params.npz").stat().st_size >= 4 * want  # float32, uncompressed


def test_checksum_file_reads_as_sha256sum_writes_it(shipped):
    lines = (shipped / "SHA256SUMS").read_text().splitlines()
    assert lines == [f"{_sha256(shipped / f)}  {f}" for f in ("manifest.json", "params.npz")]
    if shutil.which("sha256sum"):  # the coreutils tool, an independent reader
        done = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=shipped,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("fname", ["manifest.json", "params.npz", "SHA256SUMS"])
def test_a_flipped_byte_is_refused_in_one_line(shipped, tmp_path, fname, monkeypatch):
    copy = tmp_path / "root" / "tiny"
    shutil.copytree(shipped, copy)
    raw = bytearray((copy / fname).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (copy / fname).write_bytes(bytes(raw))
    with pytest.raises(pretrained.PretrainedError) as e:
        pretrained.load_pretrained("tiny", root=copy.parent)
    message = str(e.value)
    assert "\n" not in message and str(copy) in message and "reinstall minis2s" in message
    monkeypatch.setattr(pretrained, "ROOT", copy.parent)
    monkeypatch.setattr(pretrained, "DEFAULT", "tiny")
    rc, out, err = run(["translate", "--pretrained", "Go."])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and str(copy) in err


def test_a_missing_shipped_model_names_its_path_and_what_is_there(shipped):
    with pytest.raises(pretrained.PretrainedError) as e:
        pretrained.load_pretrained("fr-de", root=shipped.parent)
    assert str(e.value).startswith(f"{shipped.parent / 'fr-de'}: no shipped model 'fr-de' (the package holds tiny)")
    assert "\n" not in str(e.value)


def test_a_card_of_another_model_is_refused(shipped, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(shipped, copy)
    (copy / "card.json").write_text(json.dumps({"manifest_sha256": "0" * 64}))
    with pytest.raises(pretrained.PretrainedError, match=r"card\.json: describes the model with manifest SHA-256 0000"):
        pretrained.load_pretrained("tiny", root=tmp_path)
    (copy / "card.json").write_text(json.dumps({"manifest_sha256": _sha256(copy / "manifest.json")}))
    assert pretrained.load_pretrained("tiny", root=tmp_path).config.latent_dim == 32


def test_export_replaces_an_older_model_and_its_card(run_dir, tmp_path):
    first = pretrained.export(run_dir, "m", root=tmp_path)
    (first / "MODEL_CARD.md").write_text("old card")
    again = pretrained.export(run_dir, "m", root=tmp_path)
    assert sorted(p.name for p in again.iterdir()) == ["SHA256SUMS", "manifest.json", "params.npz"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left


def test_translate_pretrained_gives_what_the_checkpoint_gives(as_default, run_dir):
    sentences = ["Go.", "Hello."]
    rc, out, err = run(["translate", "--pretrained", *sentences])
    assert rc == 0 and err == ""
    rc2, out2, _ = run(["translate", str(run_dir), *sentences])
    assert rc2 == 0 and out == out2 and len(out.splitlines()) == 2
    rc, out3, _ = run(["translate", "--pretrained", "--beam", "2", sentences[0]])
    rc2, out4, _ = run(["translate", str(run_dir), sentences[0], "--beam", "2"])
    assert rc == rc2 == 0 and out3 == out4


def test_pretrained_positionals_are_sentences_and_old_invocations_parse_as_before():
    p = build_parser()
    a = p.parse_args(["translate", "--pretrained", "Go.", "--beam", "3", "Run!"])
    assert pretrained.choose_model(a.checkpoint, a.sentences, a.pretrained) == (None, ["Go.", "Run!"])
    assert a.beam == 3
    a = p.parse_args(["translate", "runs/demo", "Go.", "--beam", "3", "Run!"])
    assert (a.checkpoint, a.sentences, a.pretrained) == ("runs/demo", ["Go.", "Run!"], False)
    a = p.parse_args(["translate", "--pretrained"])  # sentences from standard input
    assert pretrained.choose_model(a.checkpoint, a.sentences, a.pretrained) == (None, [])
    a = p.parse_args(["evaluate", "--pretrained", "--data", "fra.txt", "--split", "test"])
    assert (a.checkpoint, a.pretrained, a.data, a.split) == (None, True, "fra.txt", "test")


def test_translate_usage_shows_both_ways():
    rc, out, _ = run(["translate", "--help"])
    assert rc == 0
    assert "minis2s translate [options] CHECKPOINT_DIR [SENTENCE ...]" in out
    assert "minis2s translate [options] --pretrained [SENTENCE ...]" in out


@pytest.mark.parametrize("argv, words", [
    (["translate"], ["CHECKPOINT_DIR", "--pretrained"]),
    (["translate", "Go."], None),  # a checkpoint that does not exist: the old message
    (["evaluate"], ["CHECKPOINT_DIR", "--pretrained"]),
    (["evaluate", "--pretrained", "CKPT", "--data", "x"], ["--pretrained", "'CKPT'"]),
    (["evaluate", "--pretrained"], ["--data PATH"]),
])
def test_neither_or_both_is_a_one_line_error(argv, words):
    rc, out, err = run(argv)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    if words is None:
        assert err.strip() == "minis2s translate: error: Go.: no such checkpoint directory"
    for w in words or []:
        assert w in err


def test_translate_with_a_checkpoint_and_pretrained_is_an_error(run_dir):
    rc, out, err = run(["translate", "--pretrained", str(run_dir), "Go."])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--pretrained" in err and str(run_dir) in err


def test_evaluate_pretrained_writes_its_tsv_in_the_current_directory(as_default, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["evaluate", "--pretrained", "--data", str(DEMO), "--limit", "4", "--show", "0"])
    assert rc == 0, err
    assert out.startswith(f"Evaluating {as_default} (the model shipped with minis2s, 'tiny', epoch 100)")
    assert (tmp_path / "eval-tiny-val.tsv").is_file() and not list(as_default.glob("eval-*"))


def test_package_data_ships_every_file_of_a_shipped_model(shipped):
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["minis2s"]
    files = [p.name for p in shipped.iterdir()] + ["MODEL_CARD.md", "card.json"]
    for f in files:
        assert any(fnmatch.fnmatch(f"pretrained/fra-eng/{f}", pat) for pat in patterns), f


def test_shipped_model_loads_and_checksum_holds():
    """The model the package ships (minis2s/pretrained/fra-eng): its files are the ones its
    SHA256SUMS and its card name, it loads, and it fits in the package."""
    folder = ROOT / "minis2s" / "pretrained" / pretrained.DEFAULT
    if not (folder / "manifest.json").is_file():
        missing(f"{folder}: no shipped model yet (scripts/ship_model.py RUN --name {pretrained.DEFAULT})")
    manifest_sha = _sha256(folder / "manifest.json")
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums == {"manifest.json": manifest_sha, "params.npz": _sha256(folder / "params.npz")}
    card = json.loads((folder / "card.json").read_text())
    assert card["manifest_sha256"] == manifest_sha
    assert manifest_sha in (folder / "MODEL_CARD.md").read_text()
    trained = pretrained.load_pretrained()
    with np.load(folder / "params.npz") as z:
        count = sum(z[k].size for k in z.files)
        assert {str(z[k].dtype) for k in z.files} == {"float32"}
    assert pretrained.parameter_count(trained.params) == count == card["parameters"]
    size = (folder / "manifest.json").stat().st_size + (folder / "params.npz").stat().st_size
    assert size == card["file_bytes"] <= MAX_BYTES
    assert trained.config.model == card["model"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """The tiny model's parameters saved as a run trained with ``--split source`` (the split
    only decides which rows score it; the shapes do not depend on it), so it has a test side."""
    params, ds, config, history = tiny_model()
    config = dataclasses.replace(config, split="source")
    out = tmp_path_factory.mktemp("source-run")
    epochs = len(history["loss"])
    state = run_mod.TrainState(params, make_optimizer(config).init(params), epochs, history,
                               np.zeros(2, np.uint32), min(history["val_loss"]), epochs, 0)
    run_mod.save_state(out, state, config, ds, extra={"data": {"path": str(DEMO)}, "options": {"patience": 5}})
    return out


def _config_of_train_command(command: str):
    """The Config ``minis2s train`` builds from ``command``, as minis2s/cli/train.py builds it."""
    from minis2s.cli import train as train_cli
    from minis2s.config import Config
    from minis2s.demo_corpus import TRAIN_DEFAULTS

    words = shlex.split(command)
    assert words[:2] == ["minis2s", "train"]
    args = build_parser().parse_args(words[1:])
    base = dataclasses.replace(Config(), **TRAIN_DEFAULTS) if args.data == "demo" else Config()
    given = {**train_cli._given(args), **{k: getattr(args, k) for k in ("epochs", "learning_rate") if getattr(args, k)}}
    return dataclasses.replace(base, **given), args


def test_ship_and_card_scripts_write_a_card_of_measured_numbers(source_run, tmp_path, capsys, monkeypatch):
    sacrebleu = require_module("sacrebleu")
    ship, card_script = load_script("ship_model"), load_script("model_card")
    assert ship.main([str(source_run), "--name", "m", "--root", str(tmp_path)]) == 0
    folder = tmp_path / "m"
    assert card_script.main(["--name", "m", "--root", str(tmp_path), "--data", str(DEMO), "--cpu-hours", "1.25"]) == 0
    capsys.readouterr()
    card = json.loads((folder / "card.json").read_text())
    text = (folder / "MODEL_CARD.md").read_text()
    assert card["manifest_sha256"] == _sha256(folder / "manifest.json") and card["manifest_sha256"] in text
    assert card["file_bytes"] == (folder / "manifest.json").stat().st_size + (folder / "params.npz").stat().st_size
    with np.load(folder / "params.npz") as z:
        assert card["parameters"] == sum(z[k].size for k in z.files)
    assert card["cpu_hours"] == 1.25 and "1.25 CPU hours" in text and "CC-BY 2.0 (France)" in text
    # the training command builds the recorded config when minis2s train parses it
    config, args = _config_of_train_command(card["training_command"])
    assert config.to_dict() == json.loads((folder / "manifest.json").read_text())["config"]
    assert args.patience == 5 and args.data == "pairs.txt"
    # the greedy scores, recomputed by sacreBLEU from the TSV evaluate --pretrained writes
    monkeypatch.setattr(pretrained, "ROOT", tmp_path)  # the CLI's shipped model is this one
    monkeypatch.setattr(pretrained, "DEFAULT", "m")
    rc, out, err = run(["evaluate", "--pretrained", "--data", str(DEMO), "--split", "test", "--show", "0",
                        "--out", str(tmp_path / "t.tsv")])
    assert rc == 0, err
    with open(tmp_path / "t.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    first: dict[str, tuple[str, list[str]]] = {}
    for r in rows:
        first.setdefault(r["source"], (r["hypothesis"], r["references"].split(" ||| ")))
    hyps = [h for h, _ in first.values()]
    width = max(len(refs) for _, refs in first.values())
    streams = [[refs[i] if i < len(refs) else None for _, refs in first.values()] for i in range(width)]
    greedy = card["scores"]["greedy"]
    assert greedy["chrf_multi"] == pytest.approx(sacrebleu.CHRF().corpus_score(hyps, streams).score, abs=1e-9)
    assert greedy["bleu_multi"] == pytest.approx(sacrebleu.BLEU().corpus_score(hyps, streams).score, abs=1e-9)
    assert card["test"] == {"sentences": len(rows), "sources": len(first), "limit": None, "skipped": 0,
                            "references": sum(len(refs) for _, refs in first.values())}
    assert sum(b["sources"] for b in card["by_length"]) == len(first)
    assert 0 < len(card["worst"]) <= 5 and all(w["source"] in first and len(w["source"]) <= 30 for w in card["worst"])
    assert list(card["scores"]) == ["greedy", "beam 4"]


def test_ship_script_refuses_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    rc = load_script("ship_model").main([str(tmp_path / "nothing"), "--root", str(tmp_path / "root")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err == f"ship_model.py: error: {tmp_path / 'nothing'}: no such checkpoint directory\n"
    assert not (tmp_path / "root" / "fra-eng").exists()
