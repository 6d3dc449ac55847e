"""Checkpoints: exact round trip (parameters and optimizer state, no pickle), a manifest
with shapes and SHA-256 per array, refusal of every kind of mismatch, atomic writes."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from minis2s import checkpoint, data, run, train, trained
from minis2s.checkpoint import CheckpointError
from tests.conftest import assert_trees_equal

CFG = train.Config(num_samples=40, batch_size=8, epochs=2, latent_dim=4)


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset(data.DEMO_PATH, CFG.num_samples)


@pytest.fixture
def state(ds):
    """A state with a non-trivial optimizer state: one RMSprop update from fake gradients."""
    optimizer = train.make_optimizer(CFG)
    s = train.initial_state(CFG, ds, optimizer)
    grads = jax.tree.map(lambda p: np.full(p.shape, 0.25, np.float32), s.params)
    updates, opt_state = optimizer.update(grads, s.opt_state, s.params)
    history = {k: [1.5] for k in train.HISTORY_KEYS}
    return train.TrainState(s.params, opt_state, 1, history, s.shuffle_key, best_val_loss=1.5, best_epoch=1, wait=0)


@pytest.fixture
def ckpt(tmp_path, state, ds) -> Path:
    return Path(train.save_state(tmp_path / "run", state, CFG, ds))


def _at(state, epoch: int, best: int):
    """``state`` relabelled as epoch ``epoch`` with best epoch ``best`` (a history that long)."""
    return train.TrainState(**{**state.__dict__, "epoch": epoch, "best_epoch": best,
                               "history": {k: [1.0] * epoch for k in train.HISTORY_KEYS}})


def _rewrite_manifest(path: Path, edit) -> None:
    m = json.loads((path / checkpoint.MANIFEST_FILE).read_text())
    edit(m)
    (path / checkpoint.MANIFEST_FILE).write_text(json.dumps(m))


def test_round_trip_is_exact(ckpt, state, ds):
    config, loaded, manifest = train.load_state(ckpt, ds)
    assert config == CFG
    assert_trees_equal(loaded.params, state.params)
    # the optimizer state comes back with the structure of optimizer.init(params)
    nu = loaded.opt_state[0].nu["decoder"]["kernel"]
    np.testing.assert_allclose(nu, 0.1 * 0.25**2, rtol=1e-6)  # (1 - rho) g^2 after one step
    assert_trees_equal(loaded.opt_state, state.opt_state)
    assert loaded.epoch == 1 and loaded.history == state.history
    np.testing.assert_array_equal(loaded.shuffle_key, state.shuffle_key)
    assert (loaded.best_val_loss, loaded.best_epoch, loaded.wait) == (1.5, 1, 0)


def test_manifest_lists_version_config_vocab_shapes_and_checksums(ckpt, ds):
    m = json.loads((ckpt / "manifest.json").read_text())
    assert m["format_version"] == checkpoint.FORMAT_VERSION
    assert m["config"]["latent_dim"] == 4
    assert m["input_chars"] == list(ds.input_vocab.chars)
    assert m["target_chars"] == list(ds.target_vocab.chars)
    kernel = m["arrays"]["params.npz"]["encoder/kernel"]
    assert kernel["shape"] == [len(ds.input_vocab), 16] and kernel["dtype"] == "float32"
    with np.load(ckpt / "params.npz", allow_pickle=False) as z:
        a = z["encoder/kernel"]
    import hashlib

    assert kernel["sha256"] == hashlib.sha256(a.tobytes()).hexdigest()
    assert set(m["arrays"]["optimizer.npz"]) == {
        f"0/nu/{layer}/{w}" for layer in ("encoder", "decoder") for w in ("kernel", "recurrent_kernel", "bias")
    } | {"0/nu/dense/kernel", "0/nu/dense/bias"}


def test_load_trained_from_checkpoint_and_from_run_dir(ckpt):
    t = trained.load_trained(ckpt)
    assert t.config == CFG and t.epoch == 1 and t.path == ckpt
    t2 = trained.load_trained(ckpt.parent)  # a run directory: its best checkpoint
    assert t2.path == ckpt
    np.testing.assert_array_equal(t.params["dense"]["kernel"], t2.params["dense"]["kernel"])


def test_changed_bytes_are_refused(ckpt):
    with np.load(ckpt / "params.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["dense/bias"] = arrays["dense/bias"] + 1e-3  # same shape and dtype, other bytes
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (ckpt / "params.npz").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"'dense/bias' does not match its SHA-256"):
        checkpoint.load(ckpt)


def test_flipped_byte_in_file_is_refused(ckpt):
    raw = bytearray((ckpt / "optimizer.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (ckpt / "optimizer.npz").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="optimizer.npz: (the file|array .*) does not match its SHA-256"):
        train.load_state(ckpt)


def test_truncated_file_is_refused(ckpt):
    raw = (ckpt / "params.npz").read_bytes()
    (ckpt / "params.npz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CheckpointError, match="params.npz: the file does not match its SHA-256 in the manifest"):
        checkpoint.load(ckpt)
    # even with a manifest that agrees on the file's checksum, it is refused as unreadable
    import hashlib

    _rewrite_manifest(ckpt, lambda m: m["files"].update({"params.npz": hashlib.sha256(raw[: len(raw) // 3]).hexdigest()}))
    with pytest.raises(CheckpointError, match="params.npz: unreadable"):
        checkpoint.load(ckpt)


def test_changed_zip_metadata_is_refused(ckpt):
    raw = bytearray((ckpt / "params.npz").read_bytes())
    raw[-10] ^= 0x01  # in the zip's end record, not in any array
    (ckpt / "params.npz").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="params.npz: the file does not match its SHA-256"):
        checkpoint.load(ckpt)


def test_wrong_version_is_refused(ckpt):
    _rewrite_manifest(ckpt, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99, this minis2s reads version 2"):
        checkpoint.load(ckpt)


def test_shapes_that_do_not_fit_the_config_are_refused(ckpt):
    _rewrite_manifest(ckpt, lambda m: m["config"].update(latent_dim=5))
    with pytest.raises(CheckpointError, match=r"do not fit the config \(latent_dim=5.*decoder/bias is \[16\], the config needs \[20\]"):
        trained.load_trained(ckpt)


def test_vocabulary_that_does_not_fit_the_arrays_is_refused(ckpt):
    _rewrite_manifest(ckpt, lambda m: m.update(target_chars=m["target_chars"][:-1]))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        trained.load_trained(ckpt)


def test_array_shape_differing_from_manifest_is_refused(ckpt):
    _rewrite_manifest(ckpt, lambda m: m["arrays"]["params.npz"]["dense/bias"].update(shape=[3]))
    with pytest.raises(CheckpointError, match=r"'dense/bias' is float32\[\d+\], the manifest says float32\[3\]"):
        checkpoint.load(ckpt)


def test_missing_or_extra_arrays_are_refused(ckpt):
    _rewrite_manifest(ckpt, lambda m: m["arrays"]["params.npz"].pop("dense/bias"))
    with pytest.raises(CheckpointError, match="holds arrays .* the manifest lists"):
        checkpoint.load(ckpt)


def test_optimizer_state_for_another_optimizer_is_refused(ckpt, ds):
    params, manifest = checkpoint.load(ckpt)
    import optax

    other = optax.adam(1e-3).init(params)  # (count, mu, nu): another structure
    with pytest.raises(CheckpointError, match="does not match this model/optimizer"):
        checkpoint.load_optimizer_state(ckpt, manifest, other)


def test_pickled_arrays_are_never_loaded(ckpt):
    buf = io.BytesIO()
    np.savez(buf, **{"dense/bias": np.array([{"x": 1}], dtype=object)})
    (ckpt / "params.npz").write_bytes(buf.getvalue())
    import hashlib

    # a manifest rewritten to vouch for the file: np.load(allow_pickle=False) still refuses it
    _rewrite_manifest(ckpt, lambda m: m["files"].update({"params.npz": hashlib.sha256(buf.getvalue()).hexdigest()}))
    with pytest.raises(CheckpointError, match="unreadable .*allow_pickle=False"):
        checkpoint.load(ckpt)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "no such checkpoint directory"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file, not a checkpoint directory"),
        (lambda p: p, "not a minis2s checkpoint \\(no manifest.json\\)"),
    ],
)
def test_not_a_checkpoint(tmp_path, make, message):
    with pytest.raises(CheckpointError, match=message):
        trained.load_trained(make(tmp_path))


def test_invalid_manifest_json_is_refused(ckpt):
    (ckpt / "manifest.json").write_text('{"format": "minis2s-checkpoint", ')
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        checkpoint.load(ckpt)


def test_a_failed_save_leaves_no_checkpoint_and_the_old_one_intact(tmp_path, state, ds, monkeypatch):
    out = tmp_path / "run"
    first = Path(train.save_state(out, state, CFG, ds))
    before = (first / "params.npz").read_bytes()
    calls = []
    real = checkpoint._write_synced

    def failing(path, data_):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        real(path, data_)

    monkeypatch.setattr(checkpoint, "_write_synced", failing)
    later = train.TrainState(**{**state.__dict__, "epoch": 2})
    with pytest.raises(OSError, match="No space left"):
        train.save_state(out, later, CFG, ds)
    assert [p.name for _, p in run.list_checkpoints(out)] == ["epoch-0001"]
    assert not list(out.glob(".tmp-*")), "the temporary directory is cleaned up"
    assert (first / "params.npz").read_bytes() == before
    assert run.latest_checkpoint(out) == first


def test_latest_and_best_are_kept_and_never_fewer_than_two(tmp_path, state, ds):
    """The newest and the best checkpoint are kept; when they are one, so is the one before it."""
    out = tmp_path / "run"
    kept = []
    for epoch, best in [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 6)]:
        train.save_state(out, _at(state, epoch, best), CFG, ds)
        kept.append([e for e, _ in run.list_checkpoints(out)])
        if epoch == 3:
            assert run.best_checkpoint(out).name == "epoch-0001"
    assert kept == [[1], [1, 2], [1, 3], [3, 4], [4, 5], [5, 6]]
    assert json.loads((out / "history.json").read_text())["loss"] == [1.0] * 6


def test_replacing_a_checkpoint_directory(tmp_path, state, ds):
    d = tmp_path / "model"
    trained.save_trained(d, state.params, CFG, ds)
    params2 = jax.tree.map(lambda p: p + 1.0, state.params)
    trained.save_trained(d, params2, CFG, ds)
    t = trained.load_trained(d)
    np.testing.assert_array_equal(t.params["dense"]["bias"], np.asarray(params2["dense"]["bias"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert math.isclose(float(t.params["dense"]["bias"][0]), 1.0)


def test_load_accepts_a_run_directory(ckpt):
    params, manifest = trained.load(ckpt.parent)
    assert manifest["training"]["epoch"] == 1
    assert trained.resolve(ckpt.parent) == ckpt
    with pytest.raises(CheckpointError, match="not a minis2s checkpoint"):  # the format layer reads one checkpoint
        checkpoint.load(ckpt.parent)


# --------------------------------------------------------------------------- a run is never left without a good checkpoint


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip(f: Path) -> None:
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))


DAMAGE = {"truncated": _truncate, "flipped": _flip, "deleted": Path.unlink}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("fname", [checkpoint.MANIFEST_FILE, checkpoint.PARAMS_FILE, checkpoint.OPTIMIZER_FILE])
def test_a_damaged_newest_checkpoint_leaves_a_good_one(tmp_path, state, ds, fname, damage):
    """Epoch 2 is both the newest and the best; damaging any file of it any way still leaves
    epoch 1, which resuming and translating each find and name, and naming epoch 2 itself
    gives a command that works."""
    out = tmp_path / "run"
    for epoch in (1, 2):  # each one the best so far
        train.save_state(out, _at(state, epoch, epoch), CFG, ds)
    older, newest = [p for _, p in run.list_checkpoints(out)]
    DAMAGE[damage](newest / fname)

    warnings: list[str] = []
    assert run.resume_checkpoint(out, warn=warnings.append) == older  # --resume RUN
    translating_needs_it = fname != checkpoint.OPTIMIZER_FILE  # translate reads no optimizer state
    translated = trained.load_trained(out, warn=warnings.append).path  # translate RUN
    assert translated == (older if translating_needs_it else newest)
    assert len(warnings) == 1 + translating_needs_it
    for line in warnings:
        assert line.startswith(f"{newest}") and line.endswith(f"; using {older}") and "\n" not in line
        assert fname in line or (damage == "deleted" and fname == checkpoint.MANIFEST_FILE)

    loaders = [(run.resume_checkpoint, "minis2s train --resume")]
    if translating_needs_it:
        loaders.append((trained.load_trained, "minis2s translate"))
    else:
        assert trained.load_trained(newest).epoch == 2
    for load, command in loaders:
        with pytest.raises(CheckpointError) as e:
            load(newest)  # named explicitly: refused, with the way out
        message = str(e.value)
        assert message.startswith(str(newest)) and "\n" not in message
        assert message.endswith(f"; the newest good checkpoint is {older}: {command} {older}")
    # the commands named work: that checkpoint verifies and loads
    assert run.resume_checkpoint(older) == older
    assert trained.load_trained(older).epoch == 1
    _, s, _ = train.load_state(older, ds)
    assert s.epoch == 1


def test_a_best_checkpoint_that_is_damaged_gives_way_to_the_newest_good_one(tmp_path, state, ds):
    out = tmp_path / "run"
    for epoch, best in [(1, 1), (2, 1), (3, 1)]:
        train.save_state(out, _at(state, epoch, best), CFG, ds)
    best, newest = [p for _, p in run.list_checkpoints(out)]
    assert trained.resolve(out) == best
    _flip(best / checkpoint.PARAMS_FILE)
    warnings: list[str] = []
    assert trained.load_trained(out, warn=warnings.append).path == newest
    assert len(warnings) == 1 and warnings[0].startswith(f"{best}/params.npz: ") and warnings[0].endswith(f"using {newest}")
    assert run.resume_checkpoint(out, warn=warnings.append) == newest and len(warnings) == 1  # nothing passed over


def test_translate_of_a_run_whose_best_checkpoint_is_damaged(tmp_path, state, ds, capsys):
    from minis2s import cli

    out = tmp_path / "run"
    for epoch in (1, 2):
        train.save_state(out, _at(state, epoch, epoch), CFG, ds)
    _truncate(out / "epoch-0002" / checkpoint.PARAMS_FILE)
    assert cli.main(["translate", str(out), "Go."]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    assert captured.err.splitlines() == [f"warning: {out}/epoch-0002/params.npz: the file does not match its SHA-256 "
                                         f"in the manifest (its bytes changed); the checkpoint is damaged; "
                                         f"using {out}/epoch-0001",
                                         f"minis2s translate: using {out}/epoch-0001 (epoch 1, the run's best "
                                         f"checkpoint is damaged; this is its newest good one)"]


def test_no_good_checkpoint_left_is_one_line_naming_every_fault(tmp_path, state, ds):
    out = tmp_path / "run"
    for epoch in (1, 2):
        train.save_state(out, _at(state, epoch, epoch), CFG, ds)
    for _, p in run.list_checkpoints(out):
        _truncate(p / checkpoint.PARAMS_FILE)
    for load in (run.resume_checkpoint, trained.load_trained):
        with pytest.raises(CheckpointError, match=rf"{out}: no checkpoint verifies \(.*epoch-0002/params.npz.*; "
                                                  rf".*epoch-0001/params.npz.*\); start a new run: minis2s train --out"):
            load(out)


def test_pruning_never_deletes_the_only_verified_checkpoint(tmp_path, state, ds):
    out = tmp_path / "run"
    for epoch in (1, 2):
        train.save_state(out, _at(state, epoch, epoch), CFG, ds)
    older, newest = [p for _, p in run.list_checkpoints(out)]
    _truncate(newest / checkpoint.PARAMS_FILE)
    run.prune(out, keep={2})
    assert [p for _, p in run.list_checkpoints(out)] == [older, newest]
    run.prune(out, keep={1})  # a kept one verifies: the rest may go
    assert [p for _, p in run.list_checkpoints(out)] == [older]


def test_a_save_that_does_not_read_back_deletes_nothing(tmp_path, state, ds, monkeypatch):
    """A write that lands damaged (a failing disk) is caught by reading it back, before
    pruning: the older checkpoints stay and the error says so."""
    out = tmp_path / "run"
    for epoch in (1, 2):
        train.save_state(out, _at(state, epoch, epoch), CFG, ds)
    real = checkpoint._write_synced

    def lossy(path, data_):
        real(path, data_[:-7] if path.name == checkpoint.OPTIMIZER_FILE else data_)

    monkeypatch.setattr(checkpoint, "_write_synced", lossy)
    with pytest.raises(CheckpointError, match=r"epoch-0003/optimizer.npz: the file does not match its SHA-256.*"
                                              r"right after it was written .*the older checkpoints of .* are kept"):
        train.save_state(out, _at(state, 3, 3), CFG, ds)
    monkeypatch.undo()
    assert [e for e, _ in run.list_checkpoints(out)] == [1, 2, 3]
    assert run.resume_checkpoint(out, warn=None) == run.epoch_dir(out, 2)


def test_the_format_module_stands_alone():
    """checkpoint.py is the file format: it imports no other module of minis2s."""
    import ast

    tree = ast.parse(Path(checkpoint.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"", "minis2s"} and not any(m.startswith("minis2s") for m in imported), imported


def test_a_checkpoint_written_by_hand_in_format_2_loads(tmp_path):
    """The format, written with plain numpy, hashlib and json (not with this module), loads:
    old checkpoints stay readable as long as this test passes unchanged."""
    import hashlib

    arrays = {"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "dense/bias": np.zeros(3, np.float32)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "params.npz").write_bytes(buf.getvalue())
    manifest = {
        "format": "minis2s-checkpoint", "format_version": 2, "note": "by hand",
        "files": {"params.npz": hashlib.sha256(buf.getvalue()).hexdigest()},
        "arrays": {"params.npz": {k: {"shape": list(a.shape), "dtype": "float32",
                                      "sha256": hashlib.sha256(a.tobytes()).hexdigest()} for k, a in arrays.items()}},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    params, meta = checkpoint.load(tmp_path)
    assert meta["note"] == "by hand"
    np.testing.assert_array_equal(params["dense"]["kernel"], arrays["dense/kernel"])
    assert checkpoint.verify(tmp_path)["files"] == manifest["files"]
