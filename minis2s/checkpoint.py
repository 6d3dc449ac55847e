"""The checkpoint file format: named arrays in ``.npz`` files (no pickle) under a verified
JSON manifest, written atomically and read back verified.

A checkpoint is a directory::

    manifest.json   format name and version, the caller's JSON metadata (for a trained
                    model: config, vocabularies, sequence lengths, training state; see
                    :mod:`minis2s.run`) and, for every file and for every array of every
                    file, its SHA-256 (arrays also with shape and dtype)
    params.npz      the model parameters, one array per leaf named by its path
                    (``encoder/kernel``)
    optimizer.npz   the optax optimizer state (training checkpoints only), flattened the
                    same way (``0/nu/encoder/kernel``) and rebuilt on load from the tree
                    structure of ``optimizer.init(params)``, never unpickled

This module knows files, arrays and checksums only: what the metadata means (a model, a
training run) is :mod:`minis2s.run` and :mod:`minis2s.trained`.

**Atomic writes.** A checkpoint is written into a hidden temporary directory next to its
final place; every file is flushed and fsynced, the temporary directory is fsynced, then
renamed to its final name and the parent directory fsynced. A crash at any moment leaves
either no checkpoint of that name or a complete one; hidden ``.tmp-*`` leftovers are
ignored by every reader and removed by the next save of a run.

**Verified loads.** :func:`load` and :func:`verify` refuse, with a message naming the file
and the value: a directory that is not a checkpoint, an unknown format version, a file whose
bytes no longer match its SHA-256, a missing or extra array, an array whose shape or dtype
differs from the manifest, and an array whose bytes no longer match its SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
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
TMP_PREFIX = ".tmp-"
# Test hook: while a save is in progress, touch this file and sleep this many seconds, so a
# test can SIGKILL the process in the middle of a save (``tests/test_reliability.py``).
SAVE_PAUSE_ENV = "MINIS2S_TEST_SAVE_PAUSE"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not match what is expected.

    ``checkpoint`` is the checkpoint directory concerned, when known, and ``damaged`` says
    whether its bytes are damaged (another checkpoint of the same run may still be good).
    """

    def __init__(self, message: str, checkpoint: Path | None = None, damaged: bool = False):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.damaged = damaged


def damaged(directory: str | os.PathLike, what: str) -> CheckpointError:
    """The one error for a checkpoint whose bytes changed or are cut short: ``what`` names the
    file and the fault (``params.npz: array 'dense/bias' does not match its SHA-256 ...``)."""
    directory = Path(directory)
    return CheckpointError(f"{directory / what}; the checkpoint is damaged", directory, damaged=True)


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


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint directory (it has a manifest; it may still be damaged)."""
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a checkpoint directory, with format and version checked."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint directory", directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: is a file, not a checkpoint directory", directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a minis2s checkpoint (no {MANIFEST_FILE})", directory, damaged=True)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise damaged(directory, f"{MANIFEST_FILE}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise damaged(directory, f"{MANIFEST_FILE}: not a minis2s checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {manifest.get('format_version')!r}, "
            f"this minis2s reads version {FORMAT_VERSION}", directory
        )
    if not isinstance(manifest.get("arrays"), dict):
        raise damaged(directory, f"{MANIFEST_FILE}: incomplete manifest (no 'arrays')")
    return manifest


def _sha_mismatch(directory: Path, fname: str, array: str | None = None) -> CheckpointError:
    what = "the file" if array is None else f"array {array!r}"
    return damaged(directory, f"{fname}: {what} does not match its SHA-256 in the manifest (its bytes changed)")


def _damaged_array(directory: Path, fname: str, raw: bytes, expected: dict) -> str | None:
    """The first array of a file that fails its SHA-256, when the file still opens."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            for k in z.files:
                e = expected.get(k)
                if e and array_sha256(z[k]) != e["sha256"]:
                    return k
    except Exception:  # the file no longer opens: the file's own checksum is the message
        pass
    return None


def read_arrays(directory: str | os.PathLike, fname: str, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one file, each checked against the manifest's shape, dtype and SHA-256."""
    directory = Path(directory)
    expected = manifest["arrays"].get(fname)
    if expected is None:
        raise damaged(directory, f"{MANIFEST_FILE}: lists no {fname}")
    path = directory / fname
    if not path.is_file():
        raise damaged(directory, f"{fname}: missing")
    raw = path.read_bytes()
    want = manifest.get("files", {}).get(fname)
    if want is not None and hashlib.sha256(raw).hexdigest() != want:
        raise _sha_mismatch(directory, fname, _damaged_array(directory, fname, raw, expected))
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # a damaged zip raises many kinds (BadZipFile, zlib.error, ValueError, ...)
        raise damaged(directory, f"{fname}: unreadable ({type(e).__name__}: {e})") from None
    if set(arrays) != set(expected):
        raise damaged(directory, f"{fname}: holds arrays {sorted(arrays)}, the manifest lists {sorted(expected)}")
    for name, a in arrays.items():
        e = expected[name]
        if list(a.shape) != list(e["shape"]) or str(a.dtype) != e["dtype"]:
            raise damaged(directory, f"{fname}: array {name!r} is {a.dtype}{list(a.shape)}, "
                                     f"the manifest says {e['dtype']}{e['shape']}")
        if array_sha256(a) != e["sha256"]:
            raise _sha_mismatch(directory, fname, name)
    return arrays


def verify(directory: str | os.PathLike, files=None) -> dict[str, Any]:
    """Read every file of a checkpoint (or only ``files``, e.g. ``[PARAMS_FILE]`` for
    translating) and check it against the manifest; return the manifest.

    Raises :class:`CheckpointError` (``damaged`` set when bytes changed) on the first fault.
    """
    manifest = read_manifest(directory)
    for fname in manifest["arrays"] if files is None else files:
        read_arrays(directory, fname, manifest)
    return manifest


def save(directory: str | os.PathLike, params: dict, meta: dict[str, Any], opt_state=None) -> Path:
    """Save ``params`` (nested dict of arrays), optionally an optimizer state, and ``meta``."""
    files = {PARAMS_FILE: flatten(jax.device_get(params))}
    if opt_state is not None:
        files[OPTIMIZER_FILE] = tree_to_named(opt_state)
    return write_checkpoint(directory, files, meta)


def load(directory: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """Load and verify ``(params, manifest)`` of a checkpoint directory written by :func:`save`;
    params are numpy arrays. (A run directory, or a check of the shapes against the model the
    manifest describes: :func:`minis2s.trained.load`.)"""
    manifest = read_manifest(directory)
    return unflatten(read_arrays(directory, PARAMS_FILE, manifest)), manifest


def load_optimizer_state(directory: str | os.PathLike, manifest: dict[str, Any], template):
    """The optimizer state saved in ``directory``, rebuilt on the structure of ``template``
    (``optimizer.init(params)``)."""
    named = read_arrays(directory, OPTIMIZER_FILE, manifest)
    return named_to_tree(named, template, what=f"{Path(directory) / OPTIMIZER_FILE}:")
