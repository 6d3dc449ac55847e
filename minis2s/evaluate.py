"""Score a trained model on a split of its training data: exact match, character
accuracy and chrF (:mod:`minis2s.metrics`), and a TSV of every sentence.

The split is rebuilt as training built it: the checkpoint's ``num_samples`` pairs of the
file it records (checked against its SHA-256, :mod:`minis2s.rebuild`), cut at
``validation_split`` as Keras cuts it. Data that does not fit the checkpoint is an error,
not a score of 0: a different file, or sentences with characters or lengths the model
never saw (unless ``on_error="skip"`` leaves them out of the scores).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import data as data_mod, metrics, rebuild


@dataclass(frozen=True)
class Split:
    """Sentences ``lo .. hi-1`` of the ``n`` pairs read from ``source``; ``split_at`` is
    where training's validation split starts."""

    inputs: list[str]       # all n English sentences
    references: list[str]   # all n French sentences, without start and end tokens
    lo: int
    hi: int
    split_at: int
    source: str
    notes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.inputs)


def rebuild_split(trained, data: str | None, num_samples: int | None, split: str = "val",
                  limit: int | None = None) -> Split:
    """The ``split`` (``"val"`` or ``"train"``) of the data ``trained`` was trained on.

    ``data``: ``--data`` (default: the file the checkpoint records); ``num_samples``: pairs
    to read (``None``: all); with the checkpoint's own count the texts must be the ones it
    trained on. ``limit`` keeps the first sentences of the split.
    """
    from .batching import split_train_val

    config = trained.config
    path = rebuild.data_path(trained.manifest, data, trained.path)
    text, source = data_mod.read_text(path)
    inputs, targets = data_mod.parse_pairs(text, num_samples, source)
    notes = []
    if num_samples == config.num_samples:
        rebuild.check_same_data(trained.manifest, trained.path, path, data is not None, inputs, targets)
    else:
        count = lambda k: "all" if k is None else k  # noqa: E731
        notes.append(f"reading {count(num_samples)} samples, the checkpoint was trained on "
                     f"{count(config.num_samples)}; the split differs from training's")
    references = [t.removeprefix(data_mod.START).removesuffix(data_mod.END) for t in targets]
    n = len(inputs)
    split_at = split_train_val(n, config.validation_split)
    lo, hi = (split_at, n) if split == "val" else (0, split_at)
    if limit is not None:
        hi = min(hi, lo + limit)
    if hi <= lo:
        raise ValueError(f"the {split} split of {n} samples (validation_split={config.validation_split}) is empty")
    return Split(inputs, references, lo, hi, split_at, source, tuple(notes))


@dataclass(frozen=True)
class Evaluation:
    """The translations of a split (``minis2s.translate.Translation``, one per sentence), the
    scores over those that fit the model, and the decoding time."""

    results: list
    scores: dict[str, float]
    seconds: float
    skipped: int
    first_problem: str | None


def evaluate(trained, split: Split, *, beam: int = 1, length_alpha: float = 0.0, batch_size: int = 256,
             on_error: str = "fail") -> Evaluation:
    """Decode ``split`` and score it. A sentence that does not fit the model's vocabulary or
    lengths raises ``ValueError`` (``on_error="fail"``) or is left out of the scores (``"skip"``)."""
    from . import translate as text

    t0 = time.perf_counter()
    results = text.translate(
        trained, split.inputs[split.lo:split.hi], beam=beam, length_alpha=length_alpha,
        on_error="skip", batch_size=batch_size, first_number=split.lo + 1,
    )
    seconds = time.perf_counter() - t0
    kept = [i for i, r in enumerate(results) if r.problem is None]
    skipped = len(results) - len(kept)
    first = next((r.problem for r in results if r.problem), None)
    if skipped and (on_error == "fail" or not kept):
        raise ValueError(
            f"{skipped} of {len(results)} sentence(s) do not fit {trained.path} (is --data the file it was "
            f"trained on?); first: {first}" + ("; use --on-error skip to score the rest" if kept else "")
        )
    hyps = [results[i].output for i in kept]
    refs = [split.references[split.lo + i] for i in kept]
    return Evaluation(results, metrics.score(hyps, refs), seconds, skipped, first)


def default_tsv(checkpoint_dir: str | os.PathLike, split: str, beam: int) -> Path:
    """``CHECKPOINT_DIR/eval-SPLIT.tsv``, or ``eval-SPLIT-beamN.tsv`` for beam search."""
    suffix = "" if beam == 1 else f"-beam{beam}"
    return Path(checkpoint_dir) / f"eval-{split}{suffix}.tsv"


def write_tsv(out: str | os.PathLike, split: Split, results) -> Path:
    """``source, reference, hypothesis`` per sentence (an empty hypothesis when skipped)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["source", "reference", "hypothesis"])
        for i, r in enumerate(results):
            w.writerow([r.source, split.references[split.lo + i], r.output if r.problem is None else ""])
    return out
