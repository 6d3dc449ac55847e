"""A trained model, loaded for translation: from a checkpoint directory or from a training
run directory (its best checkpoint), as a :class:`Trained` (params, config, vocabularies,
sequence lengths).

A run directory whose best checkpoint is damaged loads its newest good checkpoint instead,
with a one-line warning naming what was skipped; a damaged checkpoint named explicitly is
refused with a message naming the newest good checkpoint of its run as a command
(:func:`minis2s.run.way_out`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import checkpoint, run
from .checkpoint import MANIFEST_FILE, CheckpointError
from .config import Config
from .data import Vocab
from .run import Warn, model_meta, print_warning

NEEDS = (checkpoint.PARAMS_FILE,)  # translating reads the parameters only, not the optimizer state


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


def save_trained(directory, params, config, data, extra: dict | None = None, opt_state=None) -> Path:
    """Save params with the config and the dataset's vocabularies and lengths."""
    return checkpoint.save(directory, params, {**model_meta(config, data), **(extra or {})}, opt_state)


def resolve(directory: str | os.PathLike, warn: Warn | None = print_warning) -> Path:
    """A checkpoint directory as given, or the best checkpoint of a training run directory:
    the lowest ``val_loss`` one as its newest good checkpoint records it. Damaged checkpoints
    are passed over, one ``warn`` line each naming it and the one used instead."""
    directory = Path(directory)
    if not run.is_run(directory):
        return directory
    faults: list = []
    good = run.newest_good_checkpoint(directory, faults=faults, files=NEEDS)
    best_epoch = checkpoint.read_manifest(good).get("training", {}).get("best_epoch")
    chosen = good
    if best_epoch and run.epoch_dir(directory, int(best_epoch)) != good and run.epoch_dir(directory, int(best_epoch)).is_dir():
        best = run.epoch_dir(directory, int(best_epoch))
        try:
            checkpoint.verify(best, NEEDS)
            chosen = best
        except CheckpointError as e:
            faults.append(e)
    run.passed_over(faults, chosen, warn)
    return chosen


def load(directory: str | os.PathLike, command: str = "minis2s translate",
         warn: Warn | None = print_warning) -> tuple[dict, dict[str, Any]]:
    """``(params, manifest)`` of a checkpoint or run directory (:func:`resolve`), verified and
    with the parameter shapes checked against the model the manifest describes. An error about
    a damaged checkpoint of a run names its newest good one as ``command PATH``."""
    path = resolve(directory, warn)
    try:
        return run.load_model(path)
    except CheckpointError as e:
        raise run.way_out(e, command, NEEDS) from None


def load_trained(directory, command: str = "minis2s translate", warn: Warn | None = print_warning) -> Trained:
    """Load a checkpoint directory, or the best (lowest ``val_loss``) checkpoint of a run
    directory written by ``minis2s train --out DIR`` (see :func:`load`)."""
    path = resolve(directory, warn)
    params, meta = load(path, command, warn)
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
        raise CheckpointError(f"{path}/{MANIFEST_FILE}: incomplete ({e!r})", path) from None


__all__ = ["Trained", "load", "load_trained", "model_meta", "resolve", "save_trained"]
