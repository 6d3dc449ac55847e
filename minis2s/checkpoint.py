"""Checkpoints: parameters as ``params.npz`` (no pickle) and ``meta.json`` beside them.

A checkpoint directory holds

- ``params.npz``: one array per leaf, named by its path (``encoder/kernel``), read back
  with ``allow_pickle=False``;
- ``meta.json``: format version, training config, model sizes, both vocabularies and the
  sequence lengths, everything ``translate`` needs.

Each file is written to a temporary name, flushed, fsynced and renamed into place, so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
PARAMS_FILE = "params.npz"
META_FILE = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not match what is expected."""


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(directory: str | os.PathLike, params: dict, meta: dict[str, Any]) -> Path:
    """Save ``params`` (a nested dict of arrays) and ``meta`` (JSON-able) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **flatten(jax.device_get(params)))
    atomic_write_bytes(directory / PARAMS_FILE, buf.getvalue())
    meta = {"format_version": FORMAT_VERSION, **meta}
    atomic_write_bytes(directory / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    return directory


def load(directory: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """Load ``(params, meta)`` written by :func:`save`; params are numpy arrays."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    for name in (PARAMS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: not a minis2s checkpoint (missing {name})")
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{directory / META_FILE}: not valid JSON ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint format {meta.get('format_version')!r}, this minis2s reads {FORMAT_VERSION}"
        )
    try:
        with np.load(directory / PARAMS_FILE, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{directory / PARAMS_FILE}: unreadable ({e})") from None
    return unflatten(flat), meta


# --------------------------------------------------------------------------- trained models


class Trained:
    """A trained model as ``translate`` needs it: params, config, vocabularies, lengths."""

    def __init__(self, params, config, input_vocab, target_vocab, max_encoder_seq_length, max_decoder_seq_length):
        self.params = params
        self.config = config
        self.input_vocab = input_vocab
        self.target_vocab = target_vocab
        self.max_encoder_seq_length = max_encoder_seq_length
        self.max_decoder_seq_length = max_decoder_seq_length


def save_trained(directory, params, config, data, extra: dict | None = None) -> Path:
    """Save params with the config and the dataset's vocabularies and lengths."""
    meta = {
        "config": config.to_dict(),
        "input_chars": list(data.input_vocab.chars),
        "target_chars": list(data.target_vocab.chars),
        "max_encoder_seq_length": data.max_encoder_seq_length,
        "max_decoder_seq_length": data.max_decoder_seq_length,
        **(extra or {}),
    }
    return save(directory, params, meta)


def load_trained(directory) -> Trained:
    from .data import Vocab
    from .train import Config

    params, meta = load(directory)
    try:
        return Trained(
            params=params,
            config=Config.from_dict(meta["config"]),
            input_vocab=Vocab(tuple(meta["input_chars"])),
            target_vocab=Vocab(tuple(meta["target_chars"])),
            max_encoder_seq_length=int(meta["max_encoder_seq_length"]),
            max_decoder_seq_length=int(meta["max_decoder_seq_length"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory}/{META_FILE}: incomplete ({e!r})") from None
