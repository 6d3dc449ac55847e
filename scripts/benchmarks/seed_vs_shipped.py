"""The seed recipe (the Keras example's LSTM on the first 10,000 lines) against the shipped
model, on the shipped model's whole-file, source-disjoint test split.

    nice -n 5 python -m scripts.benchmarks.seed_vs_shipped --data ../shared/data/fra-eng/fra.txt \\
        --seed-run /work/runs/seed-source [--model RUN_OR_CHECKPOINT] --out DIR

``--model`` defaults to the shipped model (:func:`minis2s.pretrained.load_pretrained`).

**The test split.** Rebuilt from ``--data`` with the model's manifest config (``num_samples``,
``split`` = ``source``, ``test_split``, ``split_seed``; the texts are checked against the
fingerprint the model recorded). Every distinct English test source is decoded once, greedily,
by both models and scored against *all* its distinct French translations in the file
(:func:`minis2s.metrics.references_by_source`). The seed run must have been trained with
``--split source`` and the same ``test_split`` and ``split_seed``: the draw is per English
sentence (:mod:`minis2s.splits`), so its test side is then exactly the whole-file test side
restricted to its first ``num_samples`` lines, and it never trained on a test source.

**Sentences a model cannot take.** The seed's encoder is as long as the longest of its first
10,000 English sentences and knows only their characters. Both models translate with
``on_error="skip"``; a skipped sentence counts as the empty string (it scores 0, and is not
left out: a score over the sentences a model chose to take would flatter it), and the table
says how many each model skipped.

**The table** (printed, and written to ``OUT/seed_vs_shipped.json``): for (a) all test sources
and (b) those that occur in the first ``num_samples`` lines of the seed run (its own domain:
short sentences) the number of sources, multi-reference chrF and BLEU, the chrF against the
first reference (the first line's French in the file), exact match against any reference
(:func:`minis2s.metrics.score_multi`, as ``minis2s evaluate`` scores ``*_multi``), for each
model, and the ratio shipped/seed of multi-reference chrF. ``--limit N`` scores a fixed random
sample (numpy seed 0) of N test sources instead of all, for a quick look; the JSON says so.

**Without ``--seed-run``** only the model is translated and scored (the seed's rows, its column
and the ratio are left out; "the first lines" are the first :data:`SEED_LINES`): the seed
recipe's side does not change when the shipped model does, so a session that re-ships the
model can quote the seed's scores from the run that measured them.

**The README's ten everyday sentences**, by a rule fixed before looking at any output:

1. the words of an English sentence are its whitespace-separated tokens, lowercased, with
   leading and trailing punctuation (:data:`PUNCTUATION`) stripped; tokens left empty are
   not words;
2. the vocabulary is the 1,000 most frequent words over the English sentences of every line of
   the *training* side (each line counts, repeats included), ties broken by first appearance in
   the file (``collections.Counter.most_common``);
3. the candidates are the distinct test-split sources, in the order they first appear in the
   file, with 3 to 7 words, every one of them in the vocabulary;
4. draw 10 with ``numpy.random.default_rng(0).choice(len(candidates), 10, replace=False)``
   and keep them in file order.

They are printed as a Markdown table (English | shipped model | seed recipe | references: at
most 3, separated by " / ", then "…"), an output equal to one of its references marked ✓,
and written to ``OUT/ten_sentences.md``.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from minis2s import data as data_mod, metrics, rebuild, splits, translate
from minis2s.checkpoint import CheckpointError

PUNCTUATION = string.punctuation + "“”‘’«»…¡¿–—"
MIN_WORDS, MAX_WORDS = 3, 7
TOP_WORDS = 1000
TEN = 10
MARK = " ✓"


# ------------------------------------------------------------------ the ten sentences rule

#: The seed recipe's lines (the Keras example's num_samples): its domain when no --seed-run is given.
SEED_LINES = 10_000


def words(sentence: str) -> list[str]:
    """The words of ``sentence``: whitespace tokens lowercased, edge punctuation stripped, empty ones dropped."""
    return [w for w in (t.lower().strip(PUNCTUATION) for t in sentence.split()) if w]


def top_words(sentences: Sequence[str], k: int = TOP_WORDS) -> set[str]:
    """The ``k`` most frequent words of ``sentences`` (every sentence counts, repeats included;
    ties: first appearance)."""
    counts: Counter = Counter()
    for s in sentences:
        counts.update(words(s))
    return {w for w, _ in counts.most_common(k)}


def everyday_candidates(sources: Sequence[str], vocabulary: set[str], lo: int = MIN_WORDS,
                        hi: int = MAX_WORDS) -> list[str]:
    """The distinct ``sources``, in order, with ``lo``..``hi`` words all in ``vocabulary``."""
    out, seen = [], set()
    for s in sources:
        if s in seen:
            continue
        seen.add(s)
        w = words(s)
        if lo <= len(w) <= hi and all(x in vocabulary for x in w):
            out.append(s)
    return out


def draw(candidates: Sequence[str], k: int = TEN, seed: int = 0) -> list[str]:
    """``k`` of ``candidates`` drawn with ``default_rng(seed)``, in their original order (all when fewer)."""
    if len(candidates) <= k:
        return list(candidates)
    picked = np.random.default_rng(seed).choice(len(candidates), k, replace=False)
    return [candidates[i] for i in sorted(int(i) for i in picked)]


# ------------------------------------------------------------------ scoring

def outputs_or_empty(results: Sequence[translate.Translation]) -> tuple[list[str], int]:
    """``(outputs, skipped)``: each translation's output, ``""`` for one the model could not take
    (``problem`` set, as ``on_error="skip"`` leaves it), and how many those were."""
    outputs = [r.output if r.problem is None else "" for r in results]
    return outputs, sum(r.problem is not None for r in results)


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Multi-reference chrF, BLEU and exact match (:func:`minis2s.metrics.score_multi`) and the
    chrF against each sentence's first reference, all on the 0-100 scale."""
    multi = metrics.score_multi(hypotheses, references)
    return {
        "chrf_multi": 100 * multi["chrf"], "bleu_multi": 100 * multi["bleu"],
        "chrf_first": 100 * metrics.chrf(hypotheses, [r[0] for r in references]),
        "exact_match_any": 100 * multi["exact_match"],
    }


def ratio(a: float, b: float) -> float | None:
    """``a / b``, ``None`` when ``b`` is 0."""
    return a / b if b else None


# ------------------------------------------------------------------ tables

def reference_cell(refs: Sequence[str], most: int = 3) -> str:
    """``"a / b / c …"``: at most ``most`` references, then an ellipsis when there are more."""
    return " / ".join(refs[:most]) + (" …" if len(refs) > most else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


def ten_table(sentences: Sequence[str], shipped: dict[str, str], seed: dict[str, str],
              refs: dict[str, list[str]]) -> str:
    """English | shipped model | seed recipe | references, an exact output marked ✓."""
    lines = ["| English | shipped model | seed recipe | references |", "|---|---|---|---|"]
    for s in sentences:
        cells = [_cell(s)]
        for out in (shipped[s], None if seed is None else seed[s]):
            cells.append("(not run)" if out is None else _cell(out) + (MARK if out in refs[s] else ""))
        cells.append(_cell(reference_cell(refs[s])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_table(result: dict) -> str:
    """The Markdown table of :func:`compare`'s result."""
    lines = ["| sources | n | model | skipped | chrF multi | BLEU multi | chrF first | exact (any) | chrF shipped/seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, part in result["parts"].items():
        r = part["ratio_chrf_multi"]
        for model in ("shipped", "seed"):
            s = part.get(model)
            if s is None:  # no --seed-run
                continue
            lines.append(f"| {name} | {part['sources']} | {model} | {s['skipped']} | {s['chrf_multi']:.1f} | "
                         f"{s['bleu_multi']:.1f} | {s['chrf_first']:.1f} | {s['exact_match_any']:.1f} | "
                         f"{'—' if r is None else f'{r:.2f}'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the comparison

def check_seed(model_config, seed_config, seed_path) -> None:
    """Refuse a seed run whose test side is not the model's test side cut to its lines."""
    get = lambda c, k: getattr(c, k, None)  # noqa: E731
    if get(seed_config, "split") != "source":
        raise SystemExit(f"--seed-run {seed_path}: trained with --split {get(seed_config, 'split')}, not source; "
                         "its training side may hold the test sources")
    for key in ("test_split", "split_seed"):
        if get(seed_config, key) != get(model_config, key):
            raise SystemExit(f"--seed-run {seed_path}: {key} {get(seed_config, key)} differs from the model's "
                             f"{get(model_config, key)}; its training side may hold the test sources")


def compare(model, seed, data: str, limit: int | None = None, batch_size: int = 256, log=print) -> dict:
    """Rebuild the test split, translate it with both models, score; see the module docstring."""
    config = model.config
    if getattr(config, "split", "keras") != "source":
        raise SystemExit(f"--model {model.path}: trained with --split {config.split}; it holds out no "
                         "source-disjoint test split")
    if seed is not None:
        check_seed(config, seed.config, seed.path)
    path = data_mod.resolve_data(data)
    text, where = data_mod.read_text(path)
    inputs, targets = data_mod.parse_pairs(text, config.num_samples, where)
    rebuild.check_same_data(model.manifest, model.path, path, True, inputs, targets)
    seed_n = SEED_LINES if seed is None else (seed.config.num_samples if seed.config.num_samples is not None
                                              else len(inputs))
    if seed is not None:
        rebuild.check_same_data(seed.manifest, seed.path, path, True, inputs[:seed_n], targets[:seed_n])
    references = [t.removeprefix(data_mod.START).removesuffix(data_mod.END) for t in targets]
    groups = metrics.references_by_source(inputs, references)
    sides = splits.split_rows(config, inputs)
    test = list(dict.fromkeys(inputs[i] for i in sides.test))
    first_lines = set(inputs[:seed_n])

    ten = draw(everyday_candidates(test, top_words([inputs[i] for i in sides.train])))
    scored = test
    if limit is not None and limit < len(test):
        scored = [test[i] for i in sorted(int(i) for i in np.random.default_rng(0).choice(len(test), limit, replace=False))]
    todo = list(dict.fromkeys(scored + ten))
    log(f"{len(test)} test sources ({len(scored)} scored), {sum(s in first_lines for s in scored)} of them in the "
        f"first {seed_n} lines; translating {len(todo)} with each model")

    outs, skipped = {}, {}
    models = (("shipped", model),) + ((("seed", seed),) if seed is not None else ())
    for name, trained in models:
        results = translate.translate(trained, todo, beam=1, on_error="skip", batch_size=batch_size)
        texts, _ = outputs_or_empty(results)
        outs[name] = dict(zip(todo, texts))
        skipped[name] = {r.source for r in results if r.problem is not None}

    parts = {}
    for part, sources in (("all test sources", scored),
                          (f"in the first {seed_n} lines", [s for s in scored if s in first_lines])):
        if not sources:
            continue
        refs = [groups[s] for s in sources]
        entry = {"sources": len(sources)}
        for name, _ in models:
            entry[name] = score([outs[name][s] for s in sources], refs) | {
                "skipped": sum(s in skipped[name] for s in sources)}
        entry["ratio_chrf_multi"] = None if seed is None else ratio(entry["shipped"]["chrf_multi"],
                                                                    entry["seed"]["chrf_multi"])
        parts[part] = entry
    return {
        "model": str(model.path), "seed": None if seed is None else str(seed.path), "data": str(path),
        "test_split": config.test_split, "split_seed": config.split_seed, "seed_num_samples": seed_n,
        "test_sources": len(test), "limit": limit, "parts": parts,
        "ten_sentences": [{"english": s, "shipped": outs["shipped"][s], "seed": outs.get("seed", {}).get(s),
                           "references": groups[s]} for s in ten],
        "ten_table": ten_table(ten, outs["shipped"], outs.get("seed"), groups),
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the corpus both models were trained on (fra.txt)")
    p.add_argument("--seed-run", type=Path, default=None,
                   help="the seed recipe's run or checkpoint (default: none; the shipped model's side only, the "
                   f"seed's columns left out and its domain taken as the first {SEED_LINES} lines)")
    p.add_argument("--model", default=None, help="run or checkpoint (default: the shipped model)")
    p.add_argument("--limit", type=int, default=None, help="score a fixed random sample of this many test sources")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from minis2s import pretrained
    from minis2s.trained import load_trained

    try:
        model = pretrained.load_pretrained() if args.model is None else load_trained(args.model, warn=None)
    except CheckpointError as e:
        raise SystemExit(f"--model: {e}") from None
    try:
        seed = None if args.seed_run is None else load_trained(args.seed_run, warn=None)
    except CheckpointError as e:
        raise SystemExit(f"--seed-run: {e}") from None
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    result = compare(model, seed, args.data, args.limit, args.batch_size, log)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_vs_shipped.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    (args.out / "ten_sentences.md").write_text(result["ten_table"] + "\n", encoding="utf-8")
    print(f"model {result['model']} against seed {result['seed']}; {result['test_sources']} test sources")
    print(score_table(result))
    print()
    print(result["ten_table"])


if __name__ == "__main__":
    main()
