"""The data a checkpoint was trained on, found and checked again.

A training checkpoint records the file it read (``data.path``) and the SHA-256 of the
texts it trained on (``data_sha256``, :func:`minis2s.run.data_fingerprint`). ``evaluate``
and ``train --resume`` rebuild the dataset from that file (or from ``--data``) and check
the fingerprint, so a changed or different file is an error naming it, never a silently
different split.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

from . import data as data_mod


def recorded_path(manifest: dict) -> str | None:
    """The data file a checkpoint's manifest records (``None`` when it records none)."""
    recorded = manifest.get("data")
    return recorded.get("path") if isinstance(recorded, dict) else None


def data_path(manifest: dict, given: str | None, where: str | os.PathLike) -> Path:
    """``--data`` if ``given``, else the file the checkpoint ``where`` records (which must
    still exist), else the downloaded corpus (:func:`minis2s.data.resolve_data`)."""
    recorded = recorded_path(manifest)
    if given is None and recorded is not None and not Path(recorded).is_file():
        raise data_mod.DataError(f"{where} was trained on {recorded}, which no longer exists; "
                                 f"pass --data PATH to that file (or its copy)")
    return data_mod.resolve_data(given if given is not None or recorded is None else recorded)


def fingerprint(inputs: list[str], targets: list[str]) -> str:
    """:func:`minis2s.run.data_fingerprint` of parsed texts."""
    from .run import data_fingerprint

    return data_fingerprint(types.SimpleNamespace(input_texts=inputs, target_texts=targets))


def check_same_data(manifest: dict, where: str | os.PathLike, path: str | os.PathLike, given: bool,
                    inputs: list[str], targets: list[str]) -> None:
    """Refuse texts whose fingerprint differs from the one the checkpoint recorded.

    ``given``: the file came from ``--data`` (else from the manifest). Call this only with
    the checkpoint's own ``num_samples`` worth of pairs: other counts have other prints.
    """
    want = manifest.get("data_sha256")
    if not want or fingerprint(inputs, targets) == want:
        return
    recorded = recorded_path(manifest)
    if not given:
        raise data_mod.DataError(f"{path} has changed since {where} was trained on it (its SHA-256 differs); "
                                 "pass --data PATH to the file it was trained on")
    trained_on = f" ({recorded})" if recorded else ""
    raise data_mod.DataError(
        f"--data {path} is not the data {where} was trained on{trained_on}: the SHA-256 of its first "
        f"{len(inputs)} pairs differs; pass --data PATH to that file"
    )


def load_dataset(path: str | os.PathLike, num_samples: int | None):
    """``(dataset, note)``: :func:`minis2s.data.load_dataset`, and a note when the file
    holds fewer than ``num_samples`` pairs (``None`` otherwise)."""
    ds = data_mod.load_dataset(path, num_samples)
    note = None
    if num_samples is not None and len(ds) < num_samples:
        note = f"--num-samples {num_samples} is more than the {len(ds)} pairs in {path}; using all {len(ds)}"
    return ds, note
