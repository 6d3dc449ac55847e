"""Score a trained model on a split of its training data: exact match, character
accuracy, chrF and BLEU (:mod:`minis2s.metrics`), against each line's own reference and
against every reference of its source, and a TSV of every sentence.

The split is rebuilt as training built it: the checkpoint's ``num_samples`` pairs of the
file it records (checked against its SHA-256, :mod:`minis2s.rebuild`), cut as its config
says (:mod:`minis2s.splits`: Keras' last ``validation_split``, or by source with a test side). Data that does not fit the checkpoint is an error,
not a score of 0: a different file, or sentences with characters or lengths the model
never saw (unless ``on_error="skip"`` leaves them out of the scores).

Two ways of scoring, side by side (docs/inference.md explains why):

- *each line*: every line ``i`` of the split, its hypothesis ``h_i`` against the French
  sentence on the same line (the seed's figures: ``exact_match``, ``char_accuracy``,
  ``chrf``, and ``bleu``);
- *each source once*: every distinct English sentence of the split, decoded once (its first
  line's hypothesis), against all its distinct French translations in the loaded data
  (``*_multi``), and, for comparison on the same sentences, against its first line's
  reference only (``*_first``).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import data as data_mod, metrics, rebuild, splits

SPLITS = ("val", "train", "test")
SPLIT_NAMES = {"val": "validation", "train": "training", "test": "test"}
REFERENCE_SEPARATOR = " ||| "  # between the references of the TSV's ``references`` column


@dataclass(frozen=True)
class Split:
    """Sentences ``lines`` (0-based numbers in the ``n`` pairs read from ``source``) of a
    split; ``train_lines`` are training's sentences (the seed's demo decodes their first)."""

    inputs: list[str]       # all n English sentences
    references: list[str]   # all n French sentences, without start and end tokens
    lines: tuple[int, ...]
    train_lines: tuple[int, ...]
    source: str
    notes: tuple[str, ...] = ()
    name: str = "val"
    groups: dict = field(default=None, compare=False, repr=False)  # metrics.references_by_source of all n

    @property
    def n(self) -> int:
        return len(self.inputs)

    @property
    def contiguous(self) -> bool:
        return self.lines == tuple(range(self.lines[0], self.lines[-1] + 1))

    def describe(self) -> str:
        """``samples 112-139 (28 sentences) of 140``, or for a split chosen by source
        ``28 sentences (21 distinct sources) of 140``."""
        k = len(self.lines)
        if self.contiguous:
            return f"samples {self.lines[0]}-{self.lines[-1]} ({k} sentences) of {self.n}"
        distinct = len({self.inputs[i] for i in self.lines})
        return f"{k} sentences ({distinct} distinct sources) of {self.n}"


def split_lines(config, inputs: list[str], split: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(lines of split, training lines)`` as the run that ``config`` describes cut ``inputs``
    (:func:`minis2s.splits.split_rows`): Keras' last ``validation_split`` (the seed's, no test
    side) or, for ``config.split == "source"``, the source-disjoint split."""
    if split == "test" and getattr(config, "split", "keras") == "keras":
        raise ValueError("--split test: this run holds out no test split (it was trained with the Keras "
                         "split, the last validation_split for validation); use --split val, or train with "
                         "--split source")
    sides = splits.split_rows(config, inputs)
    chosen = {"train": sides.train, "val": sides.val, "test": sides.test}[split]
    return tuple(int(i) for i in chosen), tuple(int(i) for i in sides.train)


def rebuild_split(trained, data: str | None, num_samples: int | None, split: str = "val",
                  limit: int | None = None) -> Split:
    """The ``split`` (``"val"``, ``"train"`` or ``"test"``) of the data ``trained`` was trained on.

    ``data``: ``--data`` (default: the file the checkpoint records); ``num_samples``: pairs
    to read (``None``: all); with the checkpoint's own count the texts must be the ones it
    trained on. ``limit`` keeps the first sentences of the split.
    """
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
    lines, train_lines = split_lines(config, inputs, split)
    if limit is not None:
        lines = lines[:limit]
    if not lines:
        raise ValueError(f"the {split} split of {len(inputs)} samples (split={getattr(config, 'split', 'keras')}, "
                         f"validation_split={config.validation_split}) is empty")
    return Split(inputs, references, lines, train_lines, source, tuple(notes), split,
                 metrics.references_by_source(inputs, references))


@dataclass(frozen=True)
class Evaluation:
    """The translations of a split (``minis2s.translate.Translation``, one per sentence), the
    scores over those that fit the model, and the decoding time. ``sources``: the distinct
    sources scored once each; ``references``: their references, all counted."""

    results: list
    scores: dict[str, float]
    seconds: float
    skipped: int
    first_problem: str | None
    sources: int = 0
    references: int = 0


def source_scores(split: Split, lines: list[int], hypotheses: list[str]) -> tuple[dict[str, float], int, int]:
    """Each distinct source of ``lines`` once (the hypothesis of its first line): ``*_multi``
    against all its references in the loaded data, ``*_first`` against its first line's
    reference; with the number of sources and of their references."""
    first: dict[str, tuple[str, str]] = {}
    for i, h in zip(lines, hypotheses):
        first.setdefault(split.inputs[i], (h, split.references[i]))
    groups = split.groups or metrics.references_by_source(split.inputs, split.references)
    hyps = [h for h, _ in first.values()]
    multi = metrics.score_multi(hyps, [groups[s] for s in first])
    single = metrics.score_multi(hyps, [[r] for _, r in first.values()])
    scores = {f"{k}_multi": v for k, v in multi.items()} | {f"{k}_first": v for k, v in single.items()}
    return scores, len(first), sum(len(groups[s]) for s in first)


def evaluate(trained, split: Split, *, beam: int = 1, length_alpha: float = 0.0, batch_size: int = 256,
             on_error: str = "fail") -> Evaluation:
    """Decode ``split`` and score it. A sentence that does not fit the model's vocabulary or
    lengths raises ``ValueError`` (``on_error="fail"``) or is left out of the scores (``"skip"``)."""
    from . import translate as text

    t0 = time.perf_counter()
    results = text.translate(
        trained, [split.inputs[i] for i in split.lines], beam=beam, length_alpha=length_alpha,
        on_error="skip", batch_size=batch_size, first_number=split.lines[0] + 1 if split.contiguous else 1,
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
    lines = [split.lines[i] for i in kept]
    refs = [split.references[i] for i in lines]
    scores = metrics.score(hyps, refs) | {"bleu": metrics.bleu(hyps, [[r] for r in refs])}
    by_source, sources, references = source_scores(split, lines, hyps)
    return Evaluation(results, scores | by_source, seconds, skipped, first, sources, references)


def default_tsv(checkpoint_dir: str | os.PathLike, split: str, beam: int) -> Path:
    """``CHECKPOINT_DIR/eval-SPLIT.tsv``, or ``eval-SPLIT-beamN.tsv`` for beam search."""
    suffix = "" if beam == 1 else f"-beam{beam}"
    return Path(checkpoint_dir) / f"eval-{split}{suffix}.tsv"


def write_tsv(out: str | os.PathLike, split: Split, results) -> Path:
    """``source, reference, hypothesis, references`` per sentence (an empty hypothesis when
    skipped); ``references``: all the distinct references of the source in the loaded data,
    joined by ``" ||| "``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    groups = split.groups or metrics.references_by_source(split.inputs, split.references)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["source", "reference", "hypothesis", "references"])
        for i, r in zip(split.lines, results):
            w.writerow([r.source, split.references[i], r.output if r.problem is None else "",
                        REFERENCE_SEPARATOR.join(groups[split.inputs[i]])])
    return out
