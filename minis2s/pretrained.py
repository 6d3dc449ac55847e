"""The model shipped inside minis2s: where it lives, how it is checked and loaded, and how a
trained checkpoint becomes one (:func:`export`).

A shipped model is the folder ``minis2s/pretrained/NAME/`` (:data:`DEFAULT` is ``fra-eng``),
installed with the package (``pyproject.toml``: ``package-data``)::

    manifest.json   the checkpoint manifest (minis2s/checkpoint.py): config, vocabularies,
                    sequence lengths, the SHA-256 of the training texts, the training
                    history, and the SHA-256 of every file and array
    params.npz      the parameters only (no optimizer state: nothing to resume, 1/3 the size)
    SHA256SUMS      the SHA-256 of manifest.json and params.npz, as ``sha256sum -c`` reads it
    MODEL_CARD.md   what the model is, its scores and where it fails (scripts/model_card.py)
    card.json       the card's numbers, machine-readable, with the manifest's SHA-256

Why a checksum file beside the manifest's own hashes: the manifest proves that the arrays
are the ones it lists; ``SHA256SUMS`` and ``card.json`` prove that the manifest is the one
exported and scored, so a model swapped in without a new card is refused, not described by
someone else's numbers. :func:`load_pretrained` checks both, then loads through
:func:`minis2s.trained.load_trained` (which verifies every array again).

The Python module is ``minis2s/pretrained.py``; the data folder of the same name holds no
``__init__.py``, and Python imports the module over a folder without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import checkpoint, run, trained as trained_mod
from .checkpoint import MANIFEST_FILE, PARAMS_FILE, TMP_PREFIX, CheckpointError

#: The folder holding the shipped models, one subfolder each.
ROOT = Path(__file__).resolve().parent / "pretrained"
#: The model ``--pretrained`` uses.
DEFAULT = "fra-eng"
SUMS_FILE = "SHA256SUMS"
CARD_FILE = "MODEL_CARD.md"
CARD_JSON = "card.json"
#: What :func:`export` writes; the card files come later, from scripts/model_card.py.
MODEL_FILES = (MANIFEST_FILE, PARAMS_FILE, SUMS_FILE)
#: Manifest fields the checkpoint writer makes itself (not copied by :func:`export`).
_WRITER_FIELDS = ("format", "format_version", "files", "arrays")
SHIP_COMMAND = "python scripts/ship_model.py RUN_OR_CHECKPOINT --name NAME"


class PretrainedError(CheckpointError):
    """A shipped model that is missing, damaged, or not the one its checksum file and card describe."""


def model_dir(name: str = DEFAULT, root: str | os.PathLike | None = None) -> Path:
    """``ROOT/NAME``: the folder of the shipped model ``name`` (``root`` replaces :data:`ROOT`)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise PretrainedError(f"--name {name!r}: a shipped model's name is one folder name, such as {DEFAULT!r}")
    return Path(ROOT if root is None else root) / name


def names(root: str | os.PathLike | None = None) -> list[str]:
    """The shipped models present (folders with a manifest), sorted."""
    base = Path(ROOT if root is None else root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if not p.name.startswith(".") and checkpoint.is_checkpoint(p))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as ``sha256sum`` prints it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(directory: str | os.PathLike) -> dict[str, str]:
    """``{file name: SHA-256}`` from ``directory/SHA256SUMS`` (lines ``HEX  NAME``)."""
    path = Path(directory) / SUMS_FILE
    if not path.is_file():
        raise PretrainedError(f"{path}: missing; the shipped model is incomplete: export it again with {SHIP_COMMAND}")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        digest, _, fname = line.strip().partition("  ")
        fname = fname.lstrip("*")  # sha256sum's binary-mode marker
        if len(digest) != 64 or not fname or "/" in fname or any(c not in "0123456789abcdef" for c in digest):
            raise PretrainedError(f"{path}: line {number} is not 'SHA256  FILE' ({line[:60]!r}); the file is damaged")
        sums[fname] = digest
    return sums


def _damaged(path: Path, what: str) -> PretrainedError:
    return PretrainedError(f"{path}: {what}; the shipped model is damaged: reinstall minis2s "
                           f"(pip install --force-reinstall minis2s) or export it again with {SHIP_COMMAND}")


def check_shipped(directory: str | os.PathLike) -> str:
    """Check the files of a shipped model's folder against its ``SHA256SUMS``, and its
    ``card.json`` (when present) against the manifest; return the manifest's SHA-256."""
    directory = Path(directory)
    if not directory.is_dir():
        present = names(directory.parent)
        have = f"the package holds {', '.join(present)}" if present else "the package holds none"
        raise PretrainedError(f"{directory}: no shipped model {directory.name!r} ({have}); install a minis2s "
                              f"release that ships it, or export one with {SHIP_COMMAND}")
    sums = read_sums(directory)
    for fname in (MANIFEST_FILE, PARAMS_FILE):
        if fname not in sums:
            raise _damaged(directory / SUMS_FILE, f"lists no {fname}")
    for fname, want in sums.items():
        path = directory / fname
        if not path.is_file():
            raise _damaged(path, "missing")
        if file_sha256(path) != want:
            raise _damaged(path, f"its SHA-256 differs from the one {SUMS_FILE} records ({want[:12]}...)")
    card = directory / CARD_JSON
    if card.is_file():
        said = read_card(directory).get("manifest_sha256")
        if said != sums[MANIFEST_FILE]:
            raise PretrainedError(f"{card}: describes the model with manifest SHA-256 {str(said)[:12]}..., not the "
                                  f"one shipped ({sums[MANIFEST_FILE][:12]}...); regenerate the card with "
                                  f"python scripts/model_card.py --name {directory.name} ...")
    return sums[MANIFEST_FILE]


def read_card(directory: str | os.PathLike) -> dict[str, Any]:
    """``card.json`` of a shipped model's folder."""
    path = Path(directory) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PretrainedError(f"{path}: missing; write it with python scripts/model_card.py") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _damaged(path, f"not valid JSON ({e})") from None
    if not isinstance(card, dict):
        raise _damaged(path, "not a JSON object")
    return card


def load_pretrained(name: str = DEFAULT, root: str | os.PathLike | None = None,
                    command: str = "minis2s translate") -> trained_mod.Trained:
    """The shipped model ``name``, checked (:func:`check_shipped`) and loaded as a
    :class:`minis2s.trained.Trained`. Raises :class:`PretrainedError`, one line naming the path."""
    directory = model_dir(name, root)
    check_shipped(directory)
    try:
        return trained_mod.load_trained(directory, command, warn=None)
    except PretrainedError:
        raise
    except CheckpointError as e:
        raise PretrainedError(f"{e} (the shipped model {name!r}); reinstall minis2s (pip install "
                              f"--force-reinstall minis2s) or export it again with {SHIP_COMMAND}") from None


def parameter_count(params: dict) -> int:
    """How many numbers the parameters hold (every array's size, summed)."""
    return sum(int(a.size) for a in checkpoint.flatten(params).values())


def size_bytes(directory: str | os.PathLike) -> int:
    """Bytes of the model's own files (manifest and parameters) in a shipped model's folder."""
    return sum((Path(directory) / f).stat().st_size for f in (MANIFEST_FILE, PARAMS_FILE))


def require_data(data: str | None, name: str = DEFAULT) -> str:
    """``--data`` for ``evaluate --pretrained``: the shipped model records the SHA-256 of its
    training texts, not a file on this machine, so the file must be named."""
    if data is None:
        raise PretrainedError(f"--pretrained: pass --data PATH to the fra.txt the shipped model {name!r} was trained "
                              f"on (the Tatoeba file from manythings.org/anki; its SHA-256 is checked)")
    return data


def choose_model(checkpoint_dir: str | None, sentences: list[str], use_pretrained: bool,
                 takes_sentences: bool = True) -> tuple[str | None, list[str]]:
    """``(CHECKPOINT_DIR or None for the shipped model, sentences)`` from a command's
    positionals: with ``--pretrained`` every positional is a sentence (``translate``), else the
    first is the checkpoint. Neither, or both, is a one-line error naming both ways. A first
    "sentence" that is an existing directory counts as a checkpoint given with ``--pretrained``."""
    if not use_pretrained:
        if checkpoint_dir is None:
            raise PretrainedError("give a CHECKPOINT_DIR (a checkpoint, or a run directory of minis2s train) or "
                                  "--pretrained (the model shipped with minis2s)")
        return checkpoint_dir, list(sentences)
    if checkpoint_dir is not None and (not takes_sentences or Path(checkpoint_dir).is_dir()):
        raise PretrainedError(f"--pretrained uses the shipped model, and {checkpoint_dir!r} names a checkpoint: give "
                              "one of them (drop --pretrained to use that checkpoint)")
    return None, ([] if checkpoint_dir is None else [checkpoint_dir]) + list(sentences)


def default_tsv(name: str, split: str, beam: int) -> Path:
    """``eval-NAME-SPLIT[-beamN].tsv`` in the current directory: the TSV ``evaluate
    --pretrained`` writes (never into the installed package)."""
    return Path(f"eval-{name}-{split}" + ("" if beam == 1 else f"-beam{beam}") + ".tsv")


def shipped_meta(manifest: dict[str, Any], source: Path) -> dict[str, Any]:
    """The manifest of a checkpoint as a shipped model keeps it: everything but the writer's own
    fields, with the data file recorded by name only (a path on the training machine means
    nothing elsewhere) and a note of where it came from."""
    meta = {k: v for k, v in manifest.items() if k not in _WRITER_FIELDS}
    recorded = meta.get("data")
    if isinstance(recorded, dict) and recorded.get("path"):
        meta["data"] = {**recorded, "path": Path(recorded["path"]).name}
    warm = meta.get("warm_start")  # a warm-started run: the folder it started from, by name
    if isinstance(warm, dict) and warm.get("from"):
        meta["warm_start"] = {**warm, "from": Path(warm["from"]).name}
    meta["shipped"] = {"from_checkpoint": source.name}
    return meta


def export(source: str | os.PathLike, name: str = DEFAULT, root: str | os.PathLike | None = None) -> Path:
    """Ship the checkpoint ``source`` (or the best checkpoint of the run directory ``source``,
    :func:`minis2s.trained.resolve`) as ``ROOT/NAME``: its parameters only, its manifest's
    config, vocabularies, lengths, data SHA-256 and training history, and ``SHA256SUMS``.

    Written atomically: the folder is built under a hidden temporary name and renamed into
    place, replacing an older one (its card included: a new model needs a new card) only
    once complete. Returns the folder.
    """
    target = model_dir(name, root)
    chosen = trained_mod.resolve(source)
    params, manifest = run.load_model(chosen)  # verified, shapes checked against the config
    if "config" not in manifest or "input_chars" not in manifest:
        raise CheckpointError(f"{chosen}: not a trained model's checkpoint (its manifest has no config or "
                              "vocabularies)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TMP_PREFIX}{name}."))
    try:
        built = checkpoint.save(staging / name, params, shipped_meta(manifest, Path(chosen)))
        sums = "".join(f"{file_sha256(built / f)}  {f}\n" for f in (MANIFEST_FILE, PARAMS_FILE))
        checkpoint.atomic_write_bytes(built / SUMS_FILE, sums.encode())
        checkpoint.verify(built)
        old = staging / f"old-{name}" if target.exists() else None
        if old is not None:  # moved aside, put back if the rename fails, deleted with the staging folder
            os.replace(target, old)
        try:
            os.replace(built, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        checkpoint._fsync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["CARD_FILE", "CARD_JSON", "DEFAULT", "MODEL_FILES", "PretrainedError", "ROOT", "SUMS_FILE", "check_shipped",
           "choose_model", "default_tsv", "export", "file_sha256", "load_pretrained", "model_dir", "names",
           "parameter_count", "read_card", "read_sums", "require_data", "size_bytes"]
