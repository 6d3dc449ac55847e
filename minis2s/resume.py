"""``train --resume``: the settings of the run being continued, merged with the flags given.

The flags that fix the model, the data split or the shuffles (:data:`FIXED_ON_RESUME`)
must be left out or equal the run's; ``--epochs`` and ``--learning-rate`` may change;
``--patience`` and ``--checkpoint-every`` default to the run's own. The data is read again
(``--data``, else the file the checkpoint records) and must be the data the run trained
on (its SHA-256, :func:`minis2s.run.load_state`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint, data as data_mod, rebuild, run
from .config import Config

# Flags that define the model, the data split or the shuffles: fixed once a run exists.
FIXED_ON_RESUME = (
    "num_samples", "batch_size", "latent_dim", "validation_split", "seed", "grad", "model", "cell", "bucket",
    "mask_padding", "attention_scale", "teacher_forcing", "teacher_forcing_end",
    "split", "test_split", "split_seed",
    "layers", "heads", "embed_dim", "ff_dim", "max_positions",
    "input_feeding", "dropout",
)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def shown(name: str, value) -> str:
    """A setting as the user writes it on the command line."""
    return "all" if name == "num_samples" and value is None else str(value)


def locate(resume: str | os.PathLike) -> tuple[Path, bool]:
    """``(run directory, explicit)``: ``--resume`` names a run directory (continue from its
    newest checkpoint) or one ``epoch-NNNN`` checkpoint in it (``explicit``)."""
    resume = Path(resume)
    explicit = checkpoint.is_checkpoint(resume) or bool(run.EPOCH_DIR.match(resume.name))
    return (resume.parent if explicit else resume), explicit


@dataclass
class Resumed:
    """A run ready to continue: ``state`` was read from ``checkpoint`` and checked against ``data``."""

    checkpoint: Path
    out: Path
    config: Config
    options: dict[str, Any]
    path: Path
    data: data_mod.Dataset
    state: Any  # minis2s.run.TrainState
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """The run already has ``config.epochs`` epochs: nothing is left to train."""
        return self.state.epoch >= self.config.epochs


def resume(resume: str | os.PathLike, given: dict[str, Any], *, data: str | None = None,
           epochs: int | None = None, learning_rate: float | None = None, patience: int | None = None,
           checkpoint_every: int | None = None) -> Resumed:
    """Read the run ``resume`` names and merge it with the settings ``given`` (only flags the
    user gave, by :class:`Config` field name; ``num_samples=None`` is ``all``).

    Raises ``ValueError`` (one line naming the flag) for a fixed setting that differs;
    :class:`~minis2s.checkpoint.CheckpointError` for a checkpoint that cannot be read or
    data that differs. ``epochs`` at or below the epochs done leaves nothing to train
    (:attr:`Resumed.done`).
    """
    out, _ = locate(resume)
    ckpt = run.resume_checkpoint(resume)  # verified; a run passes over damaged ones with a warning
    return _continue(ckpt, out, given, data, epochs, learning_rate, patience, checkpoint_every, True)


def warm_start(source: str | os.PathLike, out: str | os.PathLike, given: dict[str, Any], *, data: str | None = None,
               epochs: int | None = None, learning_rate: float | None = None, patience: int | None = None,
               checkpoint_every: int | None = None) -> Resumed:
    """``train --warm-start CHECKPOINT --out DIR``: continue a checkpoint that holds the
    parameters and the training record but no optimizer state (a shipped model,
    :mod:`minis2s.pretrained`) as a new run in ``out``.

    As :func:`resume` in everything else: the same fixed settings, the same data, the epoch
    count, history, shuffle key and early-stopping counters of the checkpoint. The returned
    state's ``opt_state`` is ``None``; :func:`minis2s.train.fit` rebuilds it before training
    (:func:`minis2s.warmstart.rebuild`). ``source`` is one checkpoint folder, or a run
    directory, which gives its newest good checkpoint as ``--resume`` would.
    """
    source = Path(source)
    if run.is_run(source):
        source = run.resume_checkpoint(source)
    else:
        checkpoint.verify(source)
    return _continue(source, Path(out), given, data, epochs, learning_rate, patience, checkpoint_every, False)


def _continue(ckpt: Path, out: Path, given: dict[str, Any], data, epochs, learning_rate, patience,
              checkpoint_every, optimizer_state: bool) -> Resumed:
    manifest = checkpoint.read_manifest(ckpt)
    try:
        saved = Config.from_dict(manifest["config"])
        saved_options = manifest.get("options", {})
        int(manifest["training"]["epoch"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{ckpt}: not a training checkpoint ({e!r})") from None
    for name in FIXED_ON_RESUME:
        if name in given and given[name] != getattr(saved, name):
            raise ValueError(
                f"{flag(name)} {shown(name, given[name])} differs from the run being resumed "
                f"({flag(name)} {shown(name, getattr(saved, name))}); leave it out, or start a new run with --out"
            )
    config = dataclasses.replace(saved, epochs=epochs or saved.epochs, learning_rate=learning_rate or saved.learning_rate)
    options = {
        "patience": patience if patience is not None else saved_options.get("patience"),
        "checkpoint_every": checkpoint_every or int(saved_options.get("checkpoint_every", 1)),
    }
    recorded = rebuild.recorded_path(manifest)
    if not (data or recorded):
        raise ValueError(f"{ckpt} does not record its training data; pass --data PATH")
    path = data_mod.resolve_data(data or recorded)
    ds, note = rebuild.load_dataset(path, config.num_samples)
    notes = [note] if note else []
    _, state, _ = run.load_state(ckpt, ds, optimizer_state=optimizer_state)
    if config.learning_rate != saved.learning_rate:
        notes.append(f"learning rate changed from {saved.learning_rate:g} to {config.learning_rate:g}")
    return Resumed(ckpt, out, config, options, path, ds, state, notes)
