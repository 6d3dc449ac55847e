"""A training run directory: its checkpoints, its history and the state a resumed run needs.

``minis2s train --out RUN`` writes one checkpoint (see :mod:`minis2s.checkpoint`) per saved
epoch, ``RUN/epoch-0007``, and the per-epoch history to ``RUN/history.json``; the lock that
keeps a second run out is :mod:`minis2s.runlock`.

**What is kept.** After each save the newest checkpoint and the one with the lowest
``val_loss`` so far (Keras ``ModelCheckpoint(save_best_only=True)``) are kept; when they are
the same one, the checkpoint before it is kept too, so a run always holds two checkpoints
once it has saved twice and one damaged file never leaves it without a good one. Nothing is
deleted before the new checkpoint has been read back and verified (:func:`save_state`), and
:func:`prune` never deletes a run's last verified checkpoint.

**What is read.** :func:`newest_good_checkpoint` is the newest checkpoint that verifies:
what ``--resume RUN`` continues from (:func:`resume_checkpoint`), with a one-line warning
for each damaged newer one it passes over. :func:`best_checkpoint` is the lowest
``val_loss`` one, which translation loads (:mod:`minis2s.trained`). An error about a
damaged checkpoint of a run names the newest good one as a command that uses it
(:func:`way_out`).

:class:`TrainState` is everything a resumed run needs besides the config and the data;
:func:`save_state` writes it as ``RUN/epoch-NNNN`` and :func:`load_state` reads it back,
verified.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import optax

from . import checkpoint, models
from .checkpoint import MANIFEST_FILE, TMP_PREFIX, CheckpointError
from .config import HISTORY_KEYS, Config, make_optimizer, model_config
from .data import Dataset
from .models import Params

HISTORY_FILE = "history.json"
EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
Warn = Callable[[str], None]


def print_warning(line: str) -> None:
    """The default ``warn``: one line on stderr."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- layout


def epoch_dir(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / f"epoch-{epoch:04d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every finished (renamed) epoch checkpoint, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = EPOCH_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def is_run(path: str | os.PathLike) -> bool:
    """A directory holding epoch checkpoints (and not itself a checkpoint)."""
    return Path(path).is_dir() and not checkpoint.is_checkpoint(path) and bool(list_checkpoints(path))


def _found(run_dir: Path) -> list[tuple[int, Path]]:
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: is a file, not a training run directory")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: holds no checkpoint (no epoch-NNNN directory); nothing to resume")
    return found


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The newest complete (renamed) epoch checkpoint of a run directory, unverified.

    Temporary directories of an interrupted save are never considered.
    """
    return _found(Path(run_dir))[-1][1]


def _fault(path: Path, files=None) -> CheckpointError | None:
    try:
        checkpoint.verify(path, files)
    except CheckpointError as e:
        return e
    return None


def newest_good_checkpoint(run_dir: str | os.PathLike, exclude=(), faults: list | None = None, files=None) -> Path:
    """The newest checkpoint of a run that verifies (:func:`minis2s.checkpoint.verify`; only
    ``files`` when given).

    The error of each newer one that fails is appended to ``faults``; none good is an error
    listing every fault. ``exclude``: paths not to consider.
    """
    run_dir = Path(run_dir)
    seen = []
    for _, p in reversed(_found(run_dir)):
        if p in exclude:
            continue
        fault = _fault(p, files)
        if fault is None:
            if faults is not None:
                faults.extend(seen)
            return p
        seen.append(fault)
    if not seen:
        raise CheckpointError(f"{run_dir}: holds no other checkpoint")
    raise CheckpointError(f"{run_dir}: no checkpoint verifies ({'; '.join(map(str, seen))}); "
                          "start a new run: minis2s train --out NEW_DIR")


def passed_over(faults: list, used: Path, warn: Warn | None) -> None:
    """One ``warn`` line per checkpoint passed over, naming it, its fault and the one used."""
    for fault in faults if warn else ():
        warn(f"{fault}; using {used}")


def best_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint with the lowest ``val_loss`` of a run, as the newest readable manifest
    records it (the newest checkpoint when it records none or that one is gone)."""
    run_dir = Path(run_dir)
    found = _found(run_dir)
    for _, p in reversed(found):
        try:
            best = checkpoint.read_manifest(p).get("training", {}).get("best_epoch")
        except CheckpointError:
            continue  # a damaged manifest: an older one still knows the best epoch
        if best and epoch_dir(run_dir, int(best)).is_dir():
            return epoch_dir(run_dir, int(best))
        break
    return found[-1][1]


def way_out(error: CheckpointError, command: str, files=None) -> CheckpointError:
    """``error`` about a damaged checkpoint of a run, ending with the newest good checkpoint
    of that run as ``command PATH`` (``... the newest good checkpoint is RUN/epoch-0006:
    minis2s train --resume RUN/epoch-0006``); other errors unchanged."""
    ckpt = error.checkpoint
    if not error.damaged or ckpt is None or not EPOCH_DIR.match(ckpt.name) or not list_checkpoints(ckpt.parent):
        return error
    try:
        good = newest_good_checkpoint(ckpt.parent, exclude={ckpt}, files=files)
    except CheckpointError:
        return CheckpointError(f"{error}; {ckpt.parent} holds no other good checkpoint: start a new run with "
                               "minis2s train --out NEW_DIR", ckpt, damaged=True)
    return CheckpointError(f"{error}; the newest good checkpoint is {good}: {command} {good}", ckpt, damaged=True)


def resume_checkpoint(path: str | os.PathLike, warn: Warn | None = print_warning) -> Path:
    """What ``minis2s train --resume PATH`` continues from: a run directory's newest good
    checkpoint (one ``warn`` line for each damaged newer one passed over), or ``PATH``
    itself when it is a checkpoint that verifies (else the error names the newest good one of
    its run as a command)."""
    path = Path(path)
    if checkpoint.is_checkpoint(path) or (EPOCH_DIR.match(path.name) and path.is_dir()):
        try:
            checkpoint.verify(path)
        except CheckpointError as e:
            raise way_out(e, "minis2s train --resume") from None
        return path
    faults: list = []
    good = newest_good_checkpoint(path, faults=faults)
    passed_over(faults, good, warn)
    return good


def _remove(run_dir: Path, p: Path) -> None:
    # hide it with one atomic rename first: a crash mid-delete leaves no half checkpoint
    hidden = run_dir / f"{TMP_PREFIX}del-{p.name}.{os.getpid()}"
    os.replace(p, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def _remove_leftovers(run_dir: Path) -> None:
    for p in run_dir.glob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def prune(run_dir: str | os.PathLike, keep: set[int]) -> None:
    """Delete epoch checkpoints not in ``keep`` and leftovers of interrupted saves, but only
    when a kept checkpoint verifies: the last verified checkpoint of a run is never deleted."""
    run_dir = Path(run_dir)
    found = list_checkpoints(run_dir)
    if any(_fault(p) is None for e, p in reversed(found) if e in keep):
        for e, p in found:
            if e not in keep:
                _remove(run_dir, p)
    _remove_leftovers(run_dir)


def write_history(path: str | os.PathLike, history: dict) -> None:
    checkpoint.atomic_write_bytes(path, (json.dumps(history, indent=1) + "\n").encode())


# --------------------------------------------------------------------------- the model a checkpoint holds


def model_meta(config, data) -> dict[str, Any]:
    """The manifest fields that describe a model: config, vocabularies and lengths."""
    return {
        "config": config.to_dict(),
        "input_chars": list(data.input_vocab.chars),
        "target_chars": list(data.target_vocab.chars),
        "max_encoder_seq_length": data.max_encoder_seq_length,
        "max_decoder_seq_length": data.max_decoder_seq_length,
    }


def expected_param_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes the manifest's config and vocabularies call for."""
    return models.param_shapes(models.config_for(meta["config"], meta["input_chars"], meta["target_chars"]))


def check_param_shapes(directory: str | os.PathLike, params: dict, meta: dict[str, Any]) -> None:
    """Refuse parameters whose shapes do not fit the model the manifest describes."""
    directory = Path(directory)
    try:
        want = expected_param_shapes(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / MANIFEST_FILE}: incomplete ({e!r})", directory) from None
    got = {k: tuple(v.shape) for k, v in checkpoint.flatten(params).items()}
    if got != want:
        diff = [f"{k} is {list(got[k]) if k in got else 'missing'}, the config needs {list(want[k]) if k in want else 'none'}"
                for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        raise CheckpointError(
            f"{directory}: parameter shapes do not fit the config (latent_dim={meta['config'].get('latent_dim')}, "
            f"{len(meta['input_chars'])} input and {len(meta['target_chars'])} target characters): " + "; ".join(diff[:4]),
            directory,
        )


def load_model(directory: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """``(params, manifest)`` of a checkpoint directory, verified, with the parameter shapes
    checked against the manifest's config and vocabularies when it carries them."""
    params, manifest = checkpoint.load(directory)
    if "config" in manifest and "input_chars" in manifest:
        check_param_shapes(directory, params, manifest)
    return params, manifest


# --------------------------------------------------------------------------- training state


@dataclass(frozen=True)
class TrainState:
    """Everything a resumed run needs besides the config and the data.

    ``epoch`` counts finished epochs; the shuffle order of epoch ``e`` (0-based) is
    ``permutation(fold_in(shuffle_key, e))``, so the key and the epoch fix every future
    shuffle. ``best_val_loss``, ``best_epoch`` and ``wait`` are Keras'
    ``ModelCheckpoint(save_best_only=True)`` / ``EarlyStopping`` bookkeeping.
    """

    params: Params
    opt_state: optax.OptState
    epoch: int
    history: dict[str, list[float]]
    shuffle_key: np.ndarray  # (2,) uint32, a raw PRNG key
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0

    def training_meta(self) -> dict:
        """The JSON part of the state, as stored in a checkpoint manifest."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "shuffle_key": [int(x) for x in np.asarray(self.shuffle_key).ravel()],
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
        }


def initial_state(config: Config, data: Dataset, optimizer: optax.GradientTransformation, params: Params | None = None) -> TrainState:
    """Epoch 0: parameters from ``split(PRNGKey(seed))[0]`` (unless given), shuffles from ``[1]``."""
    init_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if params is None:
        params = models.build(model_config(config, data)).init(init_key)
    return TrainState(params, optimizer.init(params), 0, {k: [] for k in HISTORY_KEYS}, np.asarray(shuffle_key))


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 of the training texts, so a resumed run can tell it got the same data."""
    h = hashlib.sha256()
    for t in (*data.input_texts, *data.target_texts):
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def save_state(out: str | os.PathLike, state: TrainState, config: Config, data: Dataset, extra: dict | None = None) -> str:
    """Write ``out/epoch-NNNN`` (params, optimizer state, manifest) and read it back verified;
    then keep it, the best checkpoint and, when those are one, the newest older one (see the
    module docstring), and update ``out/history.json``. Returns the checkpoint path."""
    meta = {
        **model_meta(config, data),
        "training": state.training_meta(),
        "data_sha256": data_fingerprint(data),
        **(extra or {}),
    }
    out = Path(out)
    older = [e for e, _ in list_checkpoints(out) if e < state.epoch]
    path = checkpoint.save(epoch_dir(out, state.epoch), state.params, meta, state.opt_state)
    fault = _fault(path)
    if fault is not None:  # nothing is deleted: the older checkpoints stay
        raise CheckpointError(f"{fault}, right after it was written (is the disk failing?); "
                              f"the older checkpoints of {out} are kept", path, damaged=True)
    found = list_checkpoints(out)
    keep = {e for e, _ in found if e in (state.epoch, state.best_epoch)}
    if len(keep) == 1 and older:
        keep.add(older[-1])
    for e, p in found:
        if e not in keep:
            _remove(out, p)
    _remove_leftovers(out)
    write_history(out / HISTORY_FILE, state.history)
    return str(path)


def load_state(directory: str | os.PathLike, data: Dataset | None = None, *,
               optimizer_state: bool = True) -> tuple[Config, TrainState, dict]:
    """``(config, state, manifest)`` of a training checkpoint, verified (see
    :mod:`minis2s.checkpoint`); with ``data``, also check it is the data the run used.
    ``optimizer_state=False`` reads a checkpoint without one (a warm start): ``opt_state`` is ``None``.

    A run directory resumes from its newest good checkpoint (:func:`resume_checkpoint`; the
    best one is for translating, not for continuing)."""
    directory = resume_checkpoint(directory) if is_run(directory) else Path(directory)
    params, manifest = load_model(directory)
    try:
        config = Config.from_dict(manifest["config"])
        t = manifest["training"]
        if data is not None:
            if manifest.get("data_sha256") != data_fingerprint(data):
                raise CheckpointError(
                    f"{directory}: the data differs from the data this run was trained on "
                    f"({manifest.get('data', {}).get('path', 'path unknown')}, num_samples={config.num_samples}); "
                    "pass the same --data", directory
                )
        opt_state = None
        if optimizer_state:
            template = make_optimizer(config).init(params)
            opt_state = checkpoint.load_optimizer_state(directory, manifest, template)
        history = {k: [float(x) for x in t["history"][k]] for k in HISTORY_KEYS}
        state = TrainState(
            params=params,
            opt_state=opt_state,
            epoch=int(t["epoch"]),
            history=history,
            shuffle_key=np.asarray(t["shuffle_key"], dtype=np.uint32),
            best_val_loss=float(t["best_val_loss"]),
            best_epoch=int(t["best_epoch"]),
            wait=int(t["wait"]),
        )
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{directory}: not a training checkpoint (manifest lacks {e})", directory) from None
    if any(len(v) != state.epoch for v in history.values()):
        raise CheckpointError(f"{directory}: history length does not match epoch {state.epoch}", directory)
    return config, state, manifest
