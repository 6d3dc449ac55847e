"""Reliability: bad data and bad flags end in a one-line error (file, line, value, what to
do), exit code 2 and no traceback; SIGKILL at any moment loses at most the epoch in
progress; a non-finite loss stops training and keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, TINY_PAIRS, assert_trees_equal, child_env, run_cli
from minis2s import checkpoint, cli, data, run, train
from minis2s.data import DataError, Vocab

GOOD = "".join(f"{e}\t{f}\n" for e, f in TINY_PAIRS)


def _cli_error(capsys, *argv: str) -> str:
    """Run ``minis2s ARGV`` in-process; assert exit code 2 and a one-line error, no traceback."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code
    captured = capsys.readouterr()
    assert code == 2, (code, captured)
    assert "Traceback" not in captured.err
    lines = [l for l in captured.err.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("minis2s"), captured.err
    return lines[-1]


# --------------------------------------------------------------------------- bad data


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


def _bad_inputs(tmp: Path) -> list[tuple[str, Path, str]]:
    """(case, path, expected message) for every bad data file; also the README's list."""
    (tmp / "dir").mkdir()
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "blank.txt").write_bytes(b"\n\n  \n")
    (tmp / "notab.txt").write_text("Go.\tVa !\nRun!\tCours !\nHi. Salut.\n", encoding="utf-8")
    (tmp / "latin1.txt").write_bytes("Go.\tVa !\nHelp!\tÀ l'aide !\n".encode("latin-1"))
    (tmp / "hole.txt").write_text("Go.\tVa !\n\nRun!\tCours !\n", encoding="utf-8")
    (tmp / "mac.txt").write_bytes(b"Go.\tVa !\rRun!\tCours !\r")
    _zip(tmp / "nofra.zip", {"other.txt": GOOD.encode()})
    full = _zip(tmp / "full.zip", {"fra.txt": GOOD.encode() * 50}).read_bytes()
    (tmp / "truncated.zip").write_bytes(full[: len(full) // 2])
    # flip one byte of the compressed data: the member fails to inflate or fails its CRC
    broken = bytearray(full)
    broken[60] ^= 0xFF
    (tmp / "corrupt.zip").write_bytes(bytes(broken))
    return [
        ("missing file", tmp / "nope.txt", r"nope.txt: no such file; pass --data PATH to a fra.txt or fra-eng.zip"),
        ("directory", tmp / "dir", r"dir: is a directory; pass --data PATH to a fra.txt or fra-eng.zip file"),
        ("empty file", tmp / "empty.txt", r"empty.txt: the file is empty; expected lines 'English<TAB>French'"),
        ("only blank lines", tmp / "blank.txt", r"blank.txt: the file is empty"),
        ("line without TAB", tmp / "notab.txt", r"notab.txt:3: expected 'English<TAB>French', found no TAB: 'Hi. Salut.'"),
        ("not UTF-8", tmp / "latin1.txt", r"latin1.txt:2: not valid UTF-8 \(byte 0xc0 at offset 15\); save the file as UTF-8"),
        ("blank line inside", tmp / "hole.txt", r"hole.txt:2: empty line inside the data"),
        ("CR line endings", tmp / "mac.txt", r"mac.txt:1: carriage return \(\\r\) inside a line"),
        ("zip without fra.txt", tmp / "nofra.zip", r"nofra.zip: the zip holds no fra.txt \(it has: other.txt\)"),
        ("truncated zip", tmp / "truncated.zip", r"truncated.zip: not a readable zip \(.*\); download it again"),
        ("corrupt zip member", tmp / "corrupt.zip", r"corrupt.zip: not a readable zip \(.*\); download it again"),
    ]


def test_bad_data_files_name_the_problem(tmp_path):
    for case, path, message in _bad_inputs(tmp_path):
        with pytest.raises(DataError, match=message):
            data.load_dataset(path, 10)


def test_bad_data_files_through_the_cli(tmp_path, capsys):
    for case, path, message in _bad_inputs(tmp_path):
        line = _cli_error(capsys, "train", "--data", str(path), "--out", str(tmp_path / "run"))
        assert line.startswith("minis2s train: error: "), (case, line)
        assert re.search(message, line), (case, line)
    assert not (tmp_path / "run").exists()


def test_bom_and_crlf_are_handled_not_kept(tmp_path):
    lf = tmp_path / "lf.txt"
    lf.write_text(GOOD, encoding="utf-8")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode("utf-8"))
    a, b = data.load_dataset(lf, None), data.load_dataset(crlf, None)
    assert b.input_texts == a.input_texts and b.target_texts == a.target_texts
    assert b.input_texts[0] == "Go."  # no U+FEFF in front
    assert "\r" not in b.target_vocab.chars and "\ufeff" not in b.input_vocab.chars
    np.testing.assert_array_equal(a.decoder_tokens, b.decoder_tokens)


def test_zip_holding_fra_txt_is_read(tmp_path):
    z = _zip(tmp_path / "fra-eng.zip", {"_about.txt": b"x", "fra.txt": GOOD.encode()})
    assert data.load_dataset(z, None).input_texts == [e for e, _ in TINY_PAIRS]


def test_num_samples_larger_than_the_file_takes_all_with_a_note(tmp_path, capsys):
    p = tmp_path / "fra.txt"
    p.write_text(GOOD, encoding="utf-8")
    ds = cli._load_data(p, 1000)
    assert len(ds) == len(TINY_PAIRS)
    assert f"note: --num-samples 1000 is more than the 8 pairs in {p}; using all 8" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-samples", "0"], "argument --num-samples: must be positive, got 0"),
        (["--num-samples", "-5"], "argument --num-samples: must be positive, got -5"),
        (["--num-samples", "many"], "argument --num-samples: expected an integer, got 'many'"),
        (["--epochs", "0"], "argument --epochs: must be positive, got 0"),
        (["--epochs", "-1"], "argument --epochs: must be positive, got -1"),
        (["--epochs", "2.5"], "argument --epochs: expected an integer, got '2.5'"),
        (["--batch-size", "0"], "argument --batch-size: must be positive, got 0"),
        (["--latent-dim", "-8"], "argument --latent-dim: must be positive, got -8"),
        (["--validation-split", "0"], "argument --validation-split: must be between 0 and 1 (exclusive), got 0.0"),
        (["--validation-split", "1"], "argument --validation-split: must be between 0 and 1 (exclusive), got 1.0"),
        (["--validation-split", "1.5"], "argument --validation-split: must be between 0 and 1 (exclusive), got 1.5"),
        (["--validation-split", "nan"], "argument --validation-split: must be between 0 and 1 (exclusive), got nan"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a positive finite number, got 0"),
        (["--learning-rate", "inf"], "argument --learning-rate: must be a positive finite number, got inf"),
        (["--patience", "0"], "argument --patience: must be positive, got 0"),
        (["--checkpoint-every", "0"], "argument --checkpoint-every: must be positive, got 0"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--batch-size", "64"], "--batch-size 64 is larger than the training set (32 of 40 samples, the rest is "
                                 "validation); use --batch-size 32 or less, or more --num-samples"),
        (["--num-samples", "1"], "--validation-split 0.2 of 1 samples leaves 0 for training and 1 for validation"),
        (["--seed", "1180591620717411303424"],
         "argument --seed: must be an integer from -2**63 to 2**63-1 (a JAX PRNG seed), got 1180591620717411303424"),
        (["--seed", "x"], "argument --seed: expected an integer, got 'x'"),
        (["--latent-dim", "60000", "--batch-size", "8"], "--latent-dim 60000 with --batch-size 8 needs at least "),
    ],
)
def test_bad_flags_give_argparse_style_errors(argv, message, capsys, tmp_path):
    line = _cli_error(capsys, "train", "--data", "demo", "--num-samples", "40", *argv, "--out", str(tmp_path / "r"))
    assert line.startswith("minis2s train: error: ") or line.startswith("minis2s: error: ")
    assert message in line
    assert not (tmp_path / "r").exists()


def test_seed_range_is_what_jax_accepts():
    for seed in (cli.SEED_MIN, cli.SEED_MAX):
        jax.random.split(jax.random.PRNGKey(seed))
    for seed in (cli.SEED_MIN - 1, cli.SEED_MAX + 1):
        with pytest.raises(OverflowError):
            jax.random.PRNGKey(seed)


def test_memory_estimate_counts_every_parameter_and_refuses_with_the_figure(capsys, monkeypatch, tmp_path):
    from minis2s import model, resources

    v_in, v_out, h = 7, 9, 12
    params = jax.jit(model.init_params, static_argnums=1)(jax.random.PRNGKey(0), model.ModelConfig(v_in, v_out, h))
    n = sum(x.size for x in jax.tree.leaves(params))
    assert resources.count_params(model.ModelConfig(v_in, v_out, h)) == n
    assert n == 4 * h * (v_in + h + 1) + 4 * h * (v_out + h + 1) + v_out * (h + 1)  # the seed's formula
    parts = resources.training_bytes(n, v_out, h, batch=3, t_enc=5, t_dec=6)
    assert parts["parameters"] == parts["RMSprop state"] == 4 * n and parts["gradients and updates"] == 8 * n
    assert parts["activations"] == 4 * 3 * ((5 + 6) * 6 * h + 6 * 2 * v_out)
    monkeypatch.setattr(resources, "available_bytes", lambda: (10**9, "this machine has"))
    line = _cli_error(capsys, "train", *KILL_ARGS, "--latent-dim", "8192", "--out", str(tmp_path / "x"))
    ds = data.load_dataset(data.DEMO_PATH, 40)
    big = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 8192)
    need = resources.training_bytes(resources.count_params(big), len(ds.target_vocab), 8192, 8,
                                    ds.max_encoder_seq_length, ds.max_decoder_seq_length)
    assert f"needs at least {sum(need.values()) / 1e9:.1f} GB (parameters {need['parameters'] / 1e9:.1f} GB" in line
    assert line.endswith("but this machine has 1.0 GB; lower --latent-dim (or --batch-size)")
    assert not (tmp_path / "x").exists()


def test_transformer_memory_figure_is_its_own_and_names_its_size_flags(capsys, monkeypatch, tmp_path):
    from minis2s import models, resources

    cfg = models.ModelConfig(40, 50, 1, "transformer", layers=2, heads=4, embed_dim=32, ff_dim=64, max_positions=64)
    # by hand: encoder block 40 (10*32 + 2*64) + 4*40^2 = 24,320; decoder block
    # 50 (15*32 + 2*64) + 2*40*32 + 4 (50^2 + 50*40) = 50,960; embeddings 90*32; head 2*50*50
    assert models.build(cfg).activations(40, 50) == 2 * (24_320 + 50_960) + 2_880 + 5_000
    monkeypatch.setattr(resources, "available_bytes", lambda: (10**6, "this machine has"))
    line = _cli_error(capsys, "train", *KILL_ARGS, "--model", "transformer", "--out", str(tmp_path / "x"))
    assert "transformer (2 layers, 4 heads, width 128, feed-forward 512) with --batch-size 8 needs at least" in line
    assert line.endswith("lower --embed-dim, --ff-dim or --layers (or --batch-size)")


@pytest.mark.slow
def test_transformer_memory_figure_against_what_xla_allocates():
    """The activations figure is a lower bound of the compiled step's temporaries, and close."""
    import optax

    from minis2s import models, resources

    cfg = models.ModelConfig(40, 50, 1, "transformer", layers=2, heads=4, embed_dim=32, ff_dim=64, max_positions=64)
    model = models.build(cfg)
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    rows, t_enc, t_dec = 16, 40, 50
    batch = {"encoder_tokens": jnp.zeros((rows, t_enc), jnp.int32), "encoder_lengths": jnp.full((rows,), t_enc),
             "decoder_tokens": jnp.zeros((rows, t_dec), jnp.int32), "target_tokens": jnp.zeros((rows, t_dec), jnp.int32),
             "weight": jnp.ones(rows)}
    optimizer = optax.rmsprop(1e-3)
    step = train.make_train_step(optimizer, model.apply)
    temp = step.lower(params, optimizer.init(params), batch).compile().memory_analysis().temp_size_in_bytes
    figure = resources.FLOAT32 * rows * model.activations(t_enc, t_dec)
    assert figure <= temp <= 3 * figure, (figure, temp)


def test_allocator_out_of_memory_is_one_line(capsys, monkeypatch, tmp_path):
    def oom(*a, **k):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123 bytes.\nmore")

    monkeypatch.setattr(train, "fit", oom)
    assert cli.main(["train", *KILL_ARGS, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["minis2s train: error: out of memory (RESOURCE_EXHAUSTED: Out of memory while trying to "
                   "allocate 123 bytes.); lower --latent-dim or --batch-size"]


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    outs = [tmp_path / "file" / "run", tmp_path / "file" / "deeper" / "run"]
    if os.geteuid() != 0:  # root writes through file modes
        (tmp_path / "locked").mkdir(mode=0o500)
        outs.append(tmp_path / "locked" / "run")
    for out in outs:
        line = _cli_error(capsys, "train", *KILL_ARGS, "--out", str(out))
        assert line.startswith(f"minis2s train: error: --out {out}: cannot write there (")
        assert line.endswith("); choose another --out")
        assert "Epoch" not in capsys.readouterr().out


def test_unknown_command_and_no_command(capsys):
    assert "invalid choice: 'trian'" in _cli_error(capsys, "trian")
    assert "required: command" in _cli_error(capsys)


@pytest.mark.slow
def test_real_process_exit_codes_without_traceback(tmp_path):
    (tmp_path / "notab.txt").write_text("Go.\tVa !\nHi. Salut.\n", encoding="utf-8")
    r = run_cli("train", "--data", str(tmp_path / "notab.txt"), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"minis2s train: error: {tmp_path / 'notab.txt'}:2: expected 'English<TAB>French', found no TAB: 'Hi. Salut.'"
    ]
    r = run_cli("train", "--epochs", "0", timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "minis2s train: error: argument --epochs: must be positive, got 0"


# --------------------------------------------------------------------------- text round trip


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_vocab_encode_decode_round_trip(draw):
    alphabet = draw.draw(st.lists(st.characters(), min_size=1, max_size=40, unique=True))
    vocab = Vocab.from_texts(["".join(alphabet)])
    assert list(vocab.chars) == sorted(set(alphabet) | {" "})
    text = draw.draw(st.text(alphabet=st.sampled_from(vocab.chars), max_size=30))
    length = len(text) + draw.draw(st.integers(0, 5))
    tokens = vocab.encode([text], length)
    assert tokens.shape == (1, length) and tokens.dtype == np.int32
    assert vocab.decode(tokens[0]) == text + " " * (length - len(text))
    outside = draw.draw(st.characters().filter(lambda c: c not in vocab.chars))
    with pytest.raises(DataError, match="outside the vocabulary"):
        vocab.encode([text + outside], length + 1)
    assert vocab.unknown(text + outside + outside) == [outside]


_field = st.text(
    st.characters(blacklist_characters="\t\n\r\ufeff", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda s: s.strip())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_field, _field), min_size=1, max_size=6), st.booleans(), st.booleans())
def test_file_round_trip(pairs, crlf, bom):
    """Any pairs written as a UTF-8 file (LF or CRLF, with or without BOM) read back exactly."""
    newline = "\r\n" if crlf else "\n"
    raw = ("\ufeff" if bom else "") + "".join(f"{e}\t{f}{newline}" for e, f in pairs)
    inputs, targets = data.parse_pairs(data._decode(raw.encode("utf-8"), "<mem>"), None)
    assert inputs == [e for e, _ in pairs]
    assert targets == ["\t" + f + "\n" for _, f in pairs]


# --------------------------------------------------------------------------- numerical faults


@pytest.mark.slow  # trains
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *KILL_ARGS, "--epochs", "2", "--out", str(out)]) == 0
    good = out / "epoch-0002"
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    kept = run.list_checkpoints(out)
    capsys.readouterr()

    # 1e38 is finite, but the first RMSprop steps move the weights by ~3e38: float32 overflows
    code = cli.main(["train", "--resume", str(out), "--epochs", "4", "--learning-rate", "1e38"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("minis2s train: error: loss became nan in epoch 3, step ")
    assert line.endswith(f"of 4; training stopped. The last good checkpoint is kept: {good}. "
                         "Lower --learning-rate (or check the data) and train again.")
    assert run.list_checkpoints(out) == kept and kept[-1][1] == good
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2
    train.load_state(good)  # still verifies

    # from the first epoch: nothing good to keep, and it says so
    code = cli.main(["train", *KILL_ARGS[:-4], "--learning-rate", "1e38", "--epochs", "2", "--show", "0",
                     "--out", str(tmp_path / "fresh")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3
    assert "became nan in epoch 1, step" in line and "No checkpoint was written" in line
    assert run.list_checkpoints(tmp_path / "fresh") == []


# --------------------------------------------------------------------------- crashes


KILL_ARGS = ["--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8", "--latent-dim", "8",
             "--learning-rate", "0.05", "--show", "0"]
KILL_EPOCHS = 8


_WITH_SIGINT = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv[0] = 'minis2s'; runpy.run_module('minis2s.cli', run_name='__main__')")


def _start(children, out: Path, env: dict, sigint: bool = False):
    """``minis2s train``: resume when a checkpoint exists, else start, as a user would
    (a :class:`tests._children.Child`: reads with timeouts, killed when the test ends)."""
    if run.list_checkpoints(out):
        argv = ["train", "--resume", str(out), "--epochs", str(KILL_EPOCHS), "--show", "0"]
    else:
        argv = ["train", *KILL_ARGS, "--epochs", str(KILL_EPOCHS), "--out", str(out)]
    # Ctrl-C: a shell running the tests in the background ignores SIGINT, and Python then installs
    # no KeyboardInterrupt handler; install it in the child (no preexec_fn: a fork after JAX started)
    command = ["-c", _WITH_SIGINT] if sigint else ["-m", "minis2s.cli"]
    # A compilation cache of their own: JAX writes cache entries in place, and a child killed in
    # the middle of one would leave a truncated entry in the suite's cache for good.
    cache = {"JAX_COMPILATION_CACHE_DIR": str(out.parent / "jax-cache")}
    return children([sys.executable, *command, *argv], cwd=ROOT, env=child_env(**cache, **env))


def _complete_checkpoints_verify(out: Path) -> int:
    """Every visible checkpoint loads and verifies; return the newest epoch (0 if none)."""
    found = run.list_checkpoints(out)
    for _, p in found:
        train.load_state(p)
    return found[-1][0] if found else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, children):
    out = tmp_path / "run"
    marker = tmp_path / "saving"
    # Every save touches the marker once its arrays are written, then pauses before its manifest.
    # A kill meant to land inside a save waits for the marker, then at most 0.25 s (seeded), inside
    # a pause of 3 s: even on a loaded machine the kill lands in the pause, long before it ends.
    pause = {checkpoint.SAVE_PAUSE_ENV: f"{marker}:3"}

    # 1. killed during the very first save: arrays written, manifest not, nothing renamed
    p = _start(children, out, pause)
    p.wait_for_file(marker)
    p.kill()
    assert _complete_checkpoints_verify(out) == 0
    leftovers = list(out.glob(".tmp-epoch-0001.*"))
    assert leftovers and not (leftovers[0] / "manifest.json").exists()

    # 2. killed during the second save of a fresh start: epoch 1 survives, epoch 2 never appears
    marker.unlink()
    p = _start(children, out, pause)
    p.wait_for_file(marker)
    marker.unlink()
    p.wait_for_file(marker)
    p.kill()
    assert _complete_checkpoints_verify(out) == 1
    assert list(out.glob(".tmp-epoch-0002.*"))

    # 3-4. Each restart resumes from the newest complete checkpoint and must get further
    # (a new checkpoint appears) before it is killed again; every save pauses 0.3 s, except
    # the save round 3 is killed in. Round 3 is killed at a random moment inside the next save
    # (after its marker appears), round 4 at a random moment of training or saving.
    rng = random.Random(6)
    slow_saves = {checkpoint.SAVE_PAUSE_ENV: f"{marker}:0.3"}
    for inside_a_save in (True, False):
        before = _complete_checkpoints_verify(out)
        p = _start(children, out, slow_saves)
        head = p.wait_for_output("Max sequence length for outputs")
        assert f"from epoch-{before:04d}: {before} of {KILL_EPOCHS} epochs done" in head
        p.wait_until(lambda: run.list_checkpoints(out)[-1][0] > before)  # this resume advanced
        if inside_a_save:  # kill this run; resume the next with a long pause and kill inside it
            p.kill()
            assert _complete_checkpoints_verify(out) < KILL_EPOCHS
            marker.unlink(missing_ok=True)
            p = _start(children, out, pause)
            p.wait_for_file(marker)  # the next save has written its arrays, not yet its manifest
            time.sleep(rng.uniform(0.0, 0.25))
        else:
            time.sleep(rng.uniform(0.0, 0.6))
        assert p.returncode is None, "the run finished before it was killed"
        p.kill()
        advanced = _complete_checkpoints_verify(out)
        assert advanced > before
        if inside_a_save:  # the kill landed inside the next epoch's save: its half-written folder is left
            half = list(out.glob(f".tmp-epoch-{advanced + 1:04d}.*"))
            assert half and not (half[0] / "manifest.json").exists()

    # finish
    before = _complete_checkpoints_verify(out)
    p = _start(children, out, {})
    text = p.finish(timeout=300)
    assert p.returncode == 0, text
    if before:
        assert f"from epoch-{before:04d}" in text
    assert not list(out.glob(".tmp-*")), "leftovers of killed saves are cleaned up"

    # same result as one uninterrupted run
    cfg = train.Config(num_samples=40, batch_size=8, epochs=KILL_EPOCHS, latent_dim=8, learning_rate=0.05)
    ds = data.load_dataset(data.DEMO_PATH, 40)
    params, history = train.fit(cfg, ds, log=None)
    _, state, _ = train.load_state(run.latest_checkpoint(out), ds)
    assert state.epoch == KILL_EPOCHS
    assert_trees_equal(state.params, params)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert state.history[k] == history[k]


# --------------------------------------------------------------------------- Ctrl-C and a full disk, through the CLI


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_and_names_the_run(tmp_path, children):
    out = tmp_path / "run"
    marker = tmp_path / "saving"
    p = _start(children, out, {checkpoint.SAVE_PAUSE_ENV: f"{marker}:0.2"}, sigint=True)
    p.wait_until(lambda: len(run.list_checkpoints(out)) > 0)
    p.send_signal(signal.SIGINT)
    text = p.finish(timeout=60)
    assert p.returncode == 130, text
    assert text.strip().splitlines()[-1] == (
        f"interrupted; the last complete checkpoint is kept: continue with minis2s train --resume {out}")
    assert "Traceback" not in text
    assert _complete_checkpoints_verify(out) >= 1


# Runs ``minis2s`` with every checkpoint file write of epoch 3 failing as on a full disk.
_DISK_FULL = """
import errno, os, sys
from minis2s import checkpoint, cli

real = checkpoint._write_synced

def write(path, data):
    if ".tmp-epoch-0003" in str(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return real(path, data)

checkpoint._write_synced = write
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_full_disk_exits_1_and_keeps_older_checkpoints(tmp_path):
    out = tmp_path / "run"
    env = child_env()
    r = subprocess.run([sys.executable, "-c", _DISK_FULL, "train", *KILL_ARGS, "--epochs", "4", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minis2s train: error: [Errno 28] No space left on device: ")
    assert ".tmp-epoch-0003" in lines[0] and "Epoch 3/4" in r.stdout
    assert [e for e, _ in run.list_checkpoints(out)][-1] == 2
    assert _complete_checkpoints_verify(out) == 2
    assert not list(out.glob(".tmp-*")), "the failed save's temporary folder is removed"
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2
