"""Checks before a new training run spends an epoch: the run directory is free and
writable, and the split leaves both sides non-empty and a batch that fits."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import run
from typing import Sequence

from .splits import Sides, split_rows


def refuse_existing_run(out: Path) -> None:
    """``out`` must not hold a training run already (it would be overwritten)."""
    found = run.list_checkpoints(out)
    if found:
        raise ValueError(f"{out} already holds a training run ({found[-1][1].name}); continue it with "
                         f"--resume {out}, or choose another --out")


def check_split(config, input_texts: Sequence[str]) -> Sides:
    """The rows of each side (:func:`minis2s.splits.split_rows`); refuse an empty training or
    validation side, or a ``--batch-size`` larger than the training side."""
    sides = split_rows(config, input_texts)
    n, n_train, n_val = len(input_texts), len(sides.train), len(sides.val)
    if n_train == 0 or n_val == 0:
        raise ValueError(
            f"--validation-split {config.validation_split} of {n} samples leaves {n_train} for training "
            f"and {n_val} for validation; both must be non-empty: use more --num-samples"
        )
    if config.batch_size > n_train:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the training set ({n_train} of {n} samples, "
            f"the rest is validation); use --batch-size {n_train} or less, or more --num-samples"
        )
    return sides


def check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be created or written, before an epoch is spent."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e}); choose another --out") from None
