"""Checks before a new training run spends an epoch: the run directory is free and
writable, and the split leaves both sides non-empty and a batch that fits."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import run
from .batching import split_train_val


def refuse_existing_run(out: Path) -> None:
    """``out`` must not hold a training run already (it would be overwritten)."""
    found = run.list_checkpoints(out)
    if found:
        raise ValueError(f"{out} already holds a training run ({found[-1][1].name}); continue it with "
                         f"--resume {out}, or choose another --out")


def check_split(n: int, validation_split: float, batch_size: int) -> int:
    """Where validation starts (:func:`minis2s.batching.split_train_val`); refuse an empty side
    or a ``batch_size`` larger than the training split."""
    split_at = split_train_val(n, validation_split)
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"--validation-split {validation_split} of {n} samples leaves {split_at} for training "
            f"and {n - split_at} for validation; both must be non-empty: use more --num-samples"
        )
    if batch_size > split_at:
        raise ValueError(
            f"--batch-size {batch_size} is larger than the training set ({split_at} of {n} samples, "
            f"the rest is validation); use --batch-size {split_at} or less, or more --num-samples"
        )
    return split_at


def check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be created or written, before an epoch is spent."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e}); choose another --out") from None
