"""Checkpoints: named arrays in ``.npz`` files (no pickle) under a verified JSON manifest.

A checkpoint is a directory::

    manifest.json   format name and version, training config, both vocabularies, sequence
                    lengths, training state (epoch, history, RNG key, early-stopping
                    counters) and, for every array of every file, its shape, dtype and
                    SHA-256
    params.npz      the model parameters, one array per leaf named by its path
                    (``encoder/kernel``)
    optimizer.npz   the optax optimizer state (training checkpoints only), flattened the
                    same way (``0/nu/encoder/kernel``) and rebuilt on load from the tree
                    structure of ``optimizer.init(params)``, never unpickled

**Atomic writes.** A checkpoint is written into a hidden temporary directory next to its
final place; every file is flushed and fsynced, the temporary directory is fsynced, then
renamed to its final name and the parent directory fsynced. A crash at any moment leaves
either no checkpoint of that name or a complete one; hidden ``.tmp-*`` leftovers are
ignored by every reader and removed by the next save.

**Verified loads.** :func:`load` refuses, with a message naming the file and the value: a
directory that is not a checkpoint, an unknown format version, a file whose bytes no longer
match its SHA-256 (the manifest records one per file and one per array), a missing or extra array,
an array whose shape or dtype differs from the manifest, an array whose bytes no longer
match its SHA-256, and parameters whose shapes do not fit the manifest's config.

**Training runs.** ``minis2s train --out RUN`` writes one checkpoint per saved epoch,
``RUN/epoch-0007``. After each save only the newest checkpoint and the one with the
lowest ``val_loss`` so far (Keras ``ModelCheckpoint(save_best_only=True)``) are kept;
``RUN/history.json`` holds the per-epoch history. :func:`latest_checkpoint` finds the
newest complete checkpoint of a run (what ``--resume`` continues from) and
:func:`load_trained` loads the best one for translation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = "minis2s-checkpoint"
FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
PARAMS_FILE = "params.npz"
OPTIMIZER_FILE = "optimizer.npz"
HISTORY_FILE = "history.json"
EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
TMP_PREFIX = ".tmp-"
# Test hook: while a save is in progress, touch this file and sleep this many seconds, so a
# test can SIGKILL the process in the middle of a save (``tests/test_reliability.py``).
SAVE_PAUSE_ENV = "MINIS2S_TEST_SAVE_PAUSE"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not match what is expected."""


# --------------------------------------------------------------------------- pytrees <-> named arrays


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"encoder": {"kernel": a}}`` -> ``{"encoder/kernel": a}`` (numpy arrays)."""
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "/"))
        else:
            out[name] = np.asarray(v)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, v in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_name(path) -> str:
    """A pytree leaf path as a name: ``(DictKey("decoder"), DictKey("kernel"))`` -> ``"decoder/kernel"``."""
    return "/".join(_key_name(e) for e in path)


def tree_to_named(tree) -> dict[str, np.ndarray]:
    """Any pytree (e.g. an optax state) -> ``{"0/nu/encoder/kernel": array, ...}``.

    Names are the leaf paths; the tree structure itself is not stored: it is rebuilt from
    a template with the same structure (:func:`named_to_tree`).
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out: dict[str, np.ndarray] = {}
    for path, leaf in leaves:
        out[path_name(path) or "leaf"] = np.asarray(jax.device_get(leaf))
    return out


def named_to_tree(named: dict[str, np.ndarray], template, what: str = "state"):
    """Rebuild a pytree shaped like ``template`` from :func:`tree_to_named` output.

    Every leaf of ``template`` must be present under its path name with the template's
    shape and dtype; anything else raises :class:`CheckpointError`.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [path_name(path) or "leaf" for path, _ in leaves]
    missing = [n for n in names if n not in named]
    extra = sorted(set(named) - set(names))
    if missing or extra:
        raise CheckpointError(f"{what} does not match this model/optimizer: missing {missing[:5]}, unexpected {extra[:5]}")
    out = []
    for name, (_, leaf) in zip(names, leaves):
        a = named[name]
        want_shape, want_dtype = tuple(np.shape(leaf)), np.asarray(leaf).dtype
        if a.shape != want_shape or a.dtype != want_dtype:
            raise CheckpointError(
                f"{what} array {name!r} is {a.dtype}{list(a.shape)}, expected {want_dtype}{list(want_shape)}"
            )
        out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out)


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# --------------------------------------------------------------------------- atomic writing


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, flush, fsync and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _pause_for_tests() -> None:
    spec = os.environ.get(SAVE_PAUSE_ENV)
    if spec:
        marker, _, seconds = spec.partition(":")
        Path(marker).touch()
        time.sleep(float(seconds or 5))


def write_checkpoint(directory: str | os.PathLike, files: dict[str, dict[str, np.ndarray]], meta: dict[str, Any]) -> Path:
    """Write a complete checkpoint to ``directory`` atomically.

    ``files`` maps a file name (``params.npz``) to its named arrays; ``meta`` is the
    JSON-able rest of the manifest. If ``directory`` exists it is replaced only once the
    new checkpoint is complete on disk.
    """
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f"{TMP_PREFIX}{directory.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        arrays_meta: dict[str, dict] = {}
        files_meta: dict[str, str] = {}
        for fname, arrays in files.items():
            arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in arrays.items()}
            raw = _npz_bytes(arrays)
            _write_synced(tmp / fname, raw)
            files_meta[fname] = hashlib.sha256(raw).hexdigest()
            arrays_meta[fname] = {
                k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": array_sha256(a)} for k, a in arrays.items()
            }
        _pause_for_tests()
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "files": files_meta, "arrays": arrays_meta}
        _write_synced(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=1) + "\n").encode())
        _fsync_dir(tmp)
        old = None
        if directory.exists():  # replace: move the old one aside first, delete it last
            old = parent / f"{TMP_PREFIX}old-{directory.name}.{os.getpid()}"
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


# --------------------------------------------------------------------------- verified reading


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a checkpoint directory, with format and version checked."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: is a file, not a checkpoint directory")
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a minis2s checkpoint (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a minis2s checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {manifest.get('format_version')!r}, "
            f"this minis2s reads version {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("arrays"), dict):
        raise CheckpointError(f"{path}: incomplete manifest (no 'arrays')")
    return manifest


def read_arrays(directory: str | os.PathLike, fname: str, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one file, each checked against the manifest's shape, dtype and SHA-256."""
    path = Path(directory) / fname
    expected = manifest["arrays"].get(fname)
    if expected is None:
        raise CheckpointError(f"{Path(directory) / MANIFEST_FILE}: lists no {fname}")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    raw = path.read_bytes()
    want = manifest.get("files", {}).get(fname)
    if want is not None and hashlib.sha256(raw).hexdigest() != want:
        # name the damaged array when the file still opens; else report the file
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                for k in z.files:
                    e = expected.get(k)
                    if e and array_sha256(z[k]) != e["sha256"]:
                        raise CheckpointError(
                            f"{path}: array {k!r} does not match its SHA-256 in the manifest (its bytes changed); "
                            "the checkpoint is damaged, use another one"
                        )
        except CheckpointError:
            raise
        except Exception:
            pass
        raise CheckpointError(
            f"{path}: the file does not match its SHA-256 in the manifest (its bytes changed); "
            "the checkpoint is damaged, use another one"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # a damaged zip raises many kinds (BadZipFile, zlib.error, ValueError, ...)
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {e}); the checkpoint is damaged") from None
    if set(arrays) != set(expected):
        raise CheckpointError(
            f"{path}: holds arrays {sorted(arrays)}, the manifest lists {sorted(expected)}; the checkpoint is damaged"
        )
    for name, a in arrays.items():
        e = expected[name]
        if list(a.shape) != list(e["shape"]) or str(a.dtype) != e["dtype"]:
            raise CheckpointError(
                f"{path}: array {name!r} is {a.dtype}{list(a.shape)}, the manifest says {e['dtype']}{e['shape']}"
            )
        if array_sha256(a) != e["sha256"]:
            raise CheckpointError(
                f"{path}: array {name!r} does not match its SHA-256 in the manifest (its bytes changed); "
                "the checkpoint is damaged, use another one"
            )
    return arrays


def expected_param_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes the manifest's config and vocabularies call for."""
    from .models import config_for, param_shapes

    return param_shapes(config_for(meta["config"], meta["input_chars"], meta["target_chars"]))


def _check_param_shapes(directory: Path, flat: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    try:
        want = expected_param_shapes(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / MANIFEST_FILE}: incomplete ({e!r})") from None
    got = {k: tuple(v.shape) for k, v in flat.items()}
    if got != want:
        diff = [f"{k} is {list(got[k]) if k in got else 'missing'}, the config needs {list(want[k]) if k in want else 'none'}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        raise CheckpointError(
            f"{directory}: parameter shapes do not fit the config (latent_dim={meta['config'].get('latent_dim')}, "
            f"{len(meta['input_chars'])} input and {len(meta['target_chars'])} target characters): " + "; ".join(diff[:4])
        )


def save(directory: str | os.PathLike, params: dict, meta: dict[str, Any], opt_state=None) -> Path:
    """Save ``params`` (nested dict of arrays), optionally an optimizer state, and ``meta``."""
    files = {PARAMS_FILE: flatten(jax.device_get(params))}
    if opt_state is not None:
        files[OPTIMIZER_FILE] = tree_to_named(opt_state)
    return write_checkpoint(directory, files, meta)


def load(directory: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """Load and verify ``(params, manifest)`` written by :func:`save`; params are numpy arrays.

    When the manifest carries a config and vocabularies, the parameter shapes are checked
    against them too. A training run directory loads its best checkpoint (:func:`resolve`).
    """
    directory = resolve(directory)
    manifest = read_manifest(directory)
    flat = read_arrays(directory, PARAMS_FILE, manifest)
    if "config" in manifest and "input_chars" in manifest:
        _check_param_shapes(directory, flat, manifest)
    return unflatten(flat), manifest


def load_optimizer_state(directory: str | os.PathLike, manifest: dict[str, Any], template):
    """The optimizer state saved in ``directory``, rebuilt on the structure of ``template``
    (``optimizer.init(params)``)."""
    named = read_arrays(directory, OPTIMIZER_FILE, manifest)
    return named_to_tree(named, template, what=f"{Path(directory) / OPTIMIZER_FILE}:")


# --------------------------------------------------------------------------- training runs


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


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The newest complete epoch checkpoint of a run directory.

    Temporary directories of an interrupted save are never considered. A newest checkpoint
    that fails verification is reported, not skipped silently.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: is a file, not a training run directory")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: holds no checkpoint (no epoch-NNNN directory); nothing to resume")
    return found[-1][1]


def best_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint with the lowest ``val_loss`` of a run, as the newest manifest records it."""
    latest = latest_checkpoint(run_dir)
    manifest = read_manifest(latest)
    best = manifest.get("training", {}).get("best_epoch")
    if best:
        p = epoch_dir(run_dir, int(best))
        if p.is_dir():
            return p
    return latest


def prune(run_dir: str | os.PathLike, keep: set[int]) -> None:
    """Delete epoch checkpoints not in ``keep`` and leftovers of interrupted saves."""
    run_dir = Path(run_dir)
    for epoch, p in list_checkpoints(run_dir):
        if epoch not in keep:
            # hide it with one atomic rename first: a crash mid-delete leaves no half checkpoint
            hidden = run_dir / f"{TMP_PREFIX}del-{p.name}.{os.getpid()}"
            os.replace(p, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
    for p in run_dir.glob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def write_history(path: str | os.PathLike, history: dict) -> None:
    atomic_write_bytes(path, (json.dumps(history, indent=1) + "\n").encode())


# --------------------------------------------------------------------------- trained models


class Trained:
    """A trained model as ``translate`` needs it: params, config, vocabularies, lengths.

    ``path`` is the checkpoint directory it came from, ``epoch`` the epochs it was trained
    for (0 when unknown), ``manifest`` the full manifest.
    """

    def __init__(self, params, config, input_vocab, target_vocab, max_encoder_seq_length, max_decoder_seq_length,
                 path=None, epoch=0, manifest=None):
        self.params = params
        self.config = config
        self.input_vocab = input_vocab
        self.target_vocab = target_vocab
        self.max_encoder_seq_length = max_encoder_seq_length
        self.max_decoder_seq_length = max_decoder_seq_length
        self.path = path
        self.epoch = epoch
        self.manifest = manifest or {}


def model_meta(config, data) -> dict[str, Any]:
    """The manifest fields that describe a model: config, vocabularies and lengths."""
    return {
        "config": config.to_dict(),
        "input_chars": list(data.input_vocab.chars),
        "target_chars": list(data.target_vocab.chars),
        "max_encoder_seq_length": data.max_encoder_seq_length,
        "max_decoder_seq_length": data.max_decoder_seq_length,
    }


def save_trained(directory, params, config, data, extra: dict | None = None, opt_state=None) -> Path:
    """Save params with the config and the dataset's vocabularies and lengths."""
    return save(directory, params, {**model_meta(config, data), **(extra or {})}, opt_state)


def resolve(directory: str | os.PathLike) -> Path:
    """A checkpoint directory as given, or the best checkpoint of a training run directory."""
    directory = Path(directory)
    if directory.is_dir() and not is_checkpoint(directory) and list_checkpoints(directory):
        return best_checkpoint(directory)
    return directory


def load_trained(directory) -> Trained:
    """Load a checkpoint directory, or the best (lowest ``val_loss``) checkpoint of a run
    directory written by ``minis2s train --out DIR``."""
    from .data import Vocab
    from .config import Config

    path = resolve(directory)
    params, meta = load(path)
    try:
        return Trained(
            params=params,
            config=Config.from_dict(meta["config"]),
            input_vocab=Vocab(tuple(meta["input_chars"])),
            target_vocab=Vocab(tuple(meta["target_chars"])),
            max_encoder_seq_length=int(meta["max_encoder_seq_length"]),
            max_decoder_seq_length=int(meta["max_decoder_seq_length"]),
            path=path,
            epoch=int(meta.get("training", {}).get("epoch", 0)),
            manifest=meta,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}/{MANIFEST_FILE}: incomplete ({e!r})") from None
