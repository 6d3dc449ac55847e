"""Write ``MODEL_CARD.md`` and ``card.json`` for a shipped model from measured results, so that
every number on the card is computed here and none is typed in.

    python scripts/model_card.py --name fra-eng --data ../shared/data/fra-eng/fra.txt --cpu-hours 41.5

It loads the shipped model (:func:`minis2s.pretrained.load_pretrained`), rebuilds its test
split from ``--data`` (checked against the SHA-256 its manifest records) and scores it as
``minis2s evaluate --pretrained --data FRA --split test`` does, greedy and with ``--beam 4``
(the same functions: :mod:`minis2s.evaluate`), then adds what the greedy outputs say about
where the model fails: chrF by source length, and the few short sentences it gets most wrong.
The CPU hours of training are measured elsewhere (a watcher) and passed in; the training
command is rebuilt from the manifest's config unless ``--command`` gives it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import numpy as np

from minis2s import checkpoint, evaluate, metrics, pretrained, splits
from minis2s.cli.options import version
from minis2s.config import Config

DEMO_SOURCE = "the demo corpus written for minis2s (minis2s/demo_corpus.py), Apache-2.0 as minis2s"
LICENCE = ("Sentence pairs from the Tatoeba Project (tatoeba.org), distributed by manythings.org/anki, "
           "licensed CC-BY 2.0 (France) (https://creativecommons.org/licenses/by/2.0/fr/)")
BUCKETS = ((1, 20, "short (1-20 characters)"), (21, 40, "medium (21-40)"), (41, 10**9, "long (41 or more)"))
WORST = 5            # failure examples on the card
WORST_MAX_CHARS = 30  # taken among short sources only: the card stays short
# Config fields with a ``minis2s train`` flag of the same name; demo data changes these defaults.
NO_FLAG = {"rho", "epsilon"}
DEMO_DEFAULTS = ("num_samples", "epochs", "latent_dim", "batch_size", "learning_rate")


def training_command(config: Config, data_name: str, options: dict | None = None) -> str:
    """``minis2s train ...`` that trains ``config``: every setting that differs from the
    defaults, and always the model and the settings ``--data demo`` changes; ``options``: the
    manifest's ``--patience`` and ``--checkpoint-every``."""
    defaults = Config()
    words = ["minis2s", "train", "--data", data_name]
    for field in dataclasses.fields(Config):
        value = getattr(config, field.name)
        if field.name in NO_FLAG or (value == getattr(defaults, field.name)
                                      and field.name not in DEMO_DEFAULTS and field.name != "model"):
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            words += [flag] if value else []
        elif value is None:
            words += [flag, "all"] if field.name == "num_samples" else []
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    options = options or {}
    if options.get("patience") is not None:
        words += ["--patience", str(options["patience"])]
    if options.get("checkpoint_every", 1) != 1:
        words += ["--checkpoint-every", str(options["checkpoint_every"])]
    return " ".join(words)


def side_sizes(config: Config, inputs: list[str]) -> dict[str, dict[str, int]]:
    """Sentences and distinct English sentences on each side of the split training used."""
    sides = splits.split_rows(config, inputs)
    out = {}
    for name in ("train", "val", "test"):
        rows = [int(i) for i in getattr(sides, name)]
        out[name] = {"sentences": len(rows), "sources": len({inputs[i] for i in rows})}
    return out


def per_source(split: evaluate.Split, result: evaluate.Evaluation) -> list[tuple[str, str, list[str]]]:
    """``(source, hypothesis, references)`` of each distinct source once, as the scores count
    them: the first line's hypothesis, all the source's references in the loaded data."""
    groups = split.groups or metrics.references_by_source(split.inputs, split.references)
    seen: dict[str, str] = {}
    for i, r in zip(split.lines, result.results):
        if r.problem is None:
            seen.setdefault(split.inputs[i], r.output)
    return [(s, h, groups[s]) for s, h in seen.items()]


def by_length(rows) -> list[dict]:
    """chrF (all references, points) and exact share of the sources in each length bucket."""
    out = []
    for low, high, label in BUCKETS:
        chosen = [(h, refs) for s, h, refs in rows if low <= len(s) <= high]
        if chosen:
            hyps, refs = [h for h, _ in chosen], [r for _, r in chosen]
            out.append({"bucket": label, "sources": len(chosen), "chrf_multi": 100 * metrics.chrf_multi(hyps, refs),
                        "exact_match_multi": sum(h in r for h, r in chosen) / len(chosen)})
    return out


def worst(rows, k: int = WORST) -> list[dict]:
    """The ``k`` short sources whose output scores the lowest sentence chrF against all references."""
    short = [(100 * metrics.chrf_multi([h], [refs]), n, s, h, refs) for n, (s, h, refs) in enumerate(rows)
             if len(s) <= WORST_MAX_CHARS]
    return [{"source": s, "output": h, "reference": refs[0], "chrf": round(c, 1)}
            for c, _, s, h, refs in sorted(short)[:k]]


def sample_sources(split: evaluate.Split, k: int, seed: int = 0) -> evaluate.Split:
    """The lines of ``k`` distinct sources of ``split`` drawn with ``numpy.random.default_rng(seed)``
    (all of a drawn source's lines, in file order); the whole split when it has ``k`` or fewer."""
    sources = list(dict.fromkeys(split.inputs[i] for i in split.lines))  # file order
    if k >= len(sources):
        return split
    chosen = {sources[j] for j in np.random.default_rng(seed).choice(len(sources), k, replace=False)}
    return dataclasses.replace(split, lines=tuple(i for i in split.lines if split.inputs[i] in chosen))


def _val_loss(history: dict, epoch: int) -> float | None:
    """The validation loss of ``epoch`` in a manifest's history (None when not recorded)."""
    val = history.get("val_loss") or []
    return val[epoch - 1] if 0 < epoch <= len(val) else None


def points(scores: dict[str, float]) -> dict[str, float]:
    """chrF and BLEU in points (0-100, as ``minis2s evaluate`` prints them); exact match and
    character accuracy as fractions."""
    return {k: (100 * v if k.startswith(("chrf", "bleu")) else v) for k, v in sorted(scores.items())}


def measure(args) -> dict:
    """Everything the card says, measured."""
    folder = pretrained.model_dir(args.name, args.root)
    manifest_sha = pretrained.check_shipped(folder)
    trained = pretrained.load_pretrained(args.name, args.root, command="python scripts/model_card.py")
    config, manifest = trained.config, trained.manifest
    split = evaluate.rebuild_split(trained, args.data, config.num_samples, "test", args.limit)
    runs = [("greedy", split, 1)]
    if args.beam_sources:  # beam search over all of a long split costs ~5x greedy: a fixed sample
        sample = sample_sources(split, args.beam_sources)
        runs += [(f"greedy, {args.beam_sources:,} sampled sources", sample, 1),
                 (f"beam {args.beam}, {args.beam_sources:,} sampled sources", sample, args.beam)]
    else:
        runs.append((f"beam {args.beam}", split, args.beam))
    results = {}
    for label, part, beam in runs:
        print(f"model_card.py: decoding {len(part.lines)} test sentences, {label} ...", file=sys.stderr, flush=True)
        results[label] = evaluate.evaluate(trained, part, beam=beam, batch_size=args.batch_size, on_error="skip")
    greedy = results["greedy"]
    rows = per_source(split, greedy)
    data_name = "demo" if args.data == "demo" else Path(args.data).name
    history = manifest.get("training", {}).get("history", {})
    return {
        "name": args.name,
        "manifest_sha256": manifest_sha,
        "model": config.model,
        "parameters": pretrained.parameter_count(trained.params),
        "file_bytes": pretrained.size_bytes(folder),
        "dtype": sorted({str(a.dtype) for a in checkpoint.flatten(trained.params).values()}),
        "config": config.to_dict(),
        "training_command": args.command or training_command(config, data_name, manifest.get("options")),
        "cpu_hours": args.cpu_hours,
        "beam_sources": args.beam_sources,
        "epoch": trained.epoch,
        "val_loss": _val_loss(history, trained.epoch),
        "from_checkpoint": manifest.get("shipped", {}).get("from_checkpoint"),
        "wall_hours_in_history": sum(history.get("seconds", [])) / 3600,
        "data": {"argument": data_name, "data_sha256": manifest.get("data_sha256"), "pairs": split.n,
                 "sides": side_sizes(config, split.inputs),
                 "licence": DEMO_SOURCE if data_name == "demo" else LICENCE},
        "test": {"sentences": len(split.lines), "sources": greedy.sources, "references": greedy.references,
                 "limit": args.limit, "skipped": greedy.skipped},
        "scores": {label: points(r.scores) for label, r in results.items()},
        "sentences_per_second": {label: len(r.results) / r.seconds for label, r in results.items()},
        "by_length": by_length(rows),
        "worst": worst(rows),
        "measured_with": {"minis2s": version(), "python": platform.python_version(),
                          "machine": platform.machine(), "processor": platform.processor() or "unknown"},
    }


def render(card: dict) -> str:
    """MODEL_CARD.md from ``card`` (the numbers of card.json, formatted)."""
    c, d, t = card["config"], card["data"], card["test"]
    beam = next(k for k in card["scores"] if k.startswith("beam")).split(",")[0]  # "beam 4"
    sampled = card.get("beam_sources")
    sides = d["sides"]
    lines = [
        f"# Model card: `{card['name']}`",
        "",
        f"A character-level English-to-French {card['model']} shipped with minis2s "
        f"(`minis2s translate --pretrained \"I love you.\"`). Every number here is computed by "
        "`scripts/model_card.py` and stored in `card.json`.",
        "",
        "**Intended use**: a course demo of what a small character-level model learns from Tatoeba "
        "sentences. It is not a production translator: it knows short, everyday sentences only, "
        "makes up words, and has seen no text outside the training file.",
        "",
        "## The model",
        "",
        f"- {card['parameters']:,} parameters ({', '.join(card['dtype'])}), {card['file_bytes'] / 1e6:.2f} MB "
        f"(`manifest.json` and `params.npz`); manifest SHA-256 `{card['manifest_sha256']}`",
        f"- {c['layers']} layers, {c['heads']} heads, embedding {c['embed_dim']}, feed-forward {c['ff_dim']}"
        if card["model"] == "transformer" else f"- latent size {c['latent_dim']}",
        f"- the checkpoint of epoch {card['epoch']} (`{card['from_checkpoint']}`, validation loss "
        f"{'not recorded' if card['val_loss'] is None else format(card['val_loss'], '.4f')}); "
        f"training took {card['cpu_hours']:g} CPU hours",
        f"- training command: `{card['training_command']}`",
        "",
        "## Data",
        "",
        f"{d['licence']}. File `{d['argument']}`, {d['pairs']:,} pairs (SHA-256 of its texts "
        f"`{d['data_sha256']}`), split by English sentence (`--split source`: no English sentence on two "
        f"sides): {sides['train']['sentences']:,} training, {sides['val']['sentences']:,} validation and "
        f"{sides['test']['sentences']:,} test pairs.",
        "",
        f"## Scores on the test split ({t['sentences']:,} sentences, {t['sources']:,} distinct English "
        f"sentences, {t['references'] / max(t['sources'], 1):.2f} references each)" +
        (f", first {t['limit']} sentences only" if t["limit"] else ""),
        "",
        "Each English sentence once; `all refs`: against all its translations in the file, `first ref`: "
        "against its first line's only (docs/inference.md explains both).",
        "",
        "| decoding | chrF, all refs | BLEU, all refs | exact, any ref | chrF, first ref | BLEU, first ref |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in card["scores"].items():
        lines.append(f"| {label} | {s['chrf_multi']:.2f} | {s['bleu_multi']:.2f} | {100 * s['exact_match_multi']:.1f}% "
                     f"| {s['chrf_first']:.2f} | {s['bleu_first']:.2f} |")
    lines += [
        "",
        f"Reproduce: `minis2s evaluate --pretrained --data {d['argument']} --split test`"
        + (f" (the first row; the sampled rows: `python scripts/model_card.py --beam-sources {sampled}`, the "
           f"English sentences drawn with numpy seed 0, every line of each)" if sampled else
           f" (add `--{beam}` for the second row)")
        + f"; measured on {card['measured_with']['machine']}, minis2s {card['measured_with']['minis2s']}: "
        "another CPU may round a few outputs differently.",
        "",
        "## Where it fails",
        "",
        "Greedy outputs, each English sentence once, by its length:",
        "",
        "| source length | sentences | chrF, all refs | exact, any ref |",
        "|---|---|---|---|",
        *[f"| {b['bucket']} | {b['sources']:,} | {b['chrf_multi']:.2f} | {100 * b['exact_match_multi']:.1f}% |"
          for b in card["by_length"]],
        "",
        f"The {len(card['worst'])} short test sentences (at most {WORST_MAX_CHARS} characters) with the lowest "
        "sentence chrF" + ("" if d["argument"] == "demo" else " (Tatoeba sentences, CC-BY 2.0 FR)") + ":",
        "",
        "| English | output | a reference | chrF |",
        "|---|---|---|---|",
        *[f"| {_cell(w['source'])} | {_cell(w['output'])} | {_cell(w['reference'])} | {w['chrf']:.1f} |"
          for w in card["worst"]],
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "(empty)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_card.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=pretrained.DEFAULT, help=f"the shipped model (default {pretrained.DEFAULT})")
    p.add_argument("--root", default=None, help=f"folder of the shipped models (default {pretrained.ROOT})")
    p.add_argument("--data", required=True, metavar="PATH", help="the fra.txt the model was trained on")
    p.add_argument("--cpu-hours", type=float, required=True, metavar="H", help="CPU hours of training, as measured")
    p.add_argument("--command", default=None, help="the training command as run (default: rebuilt from the config)")
    p.add_argument("--beam", type=int, default=4, metavar="N", help="the beam width of the second row (default 4)")
    p.add_argument("--beam-sources", type=int, default=None, metavar="K",
                   help="beam search (and greedy beside it) on K distinct test sources drawn with numpy seed 0, "
                   "not the whole split (default: the whole split)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="sentences per decoder call (default 256)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="score only the first N test sentences (for trying the script; default: all)")
    args = p.parse_args(argv)
    try:
        card = measure(args)
        folder = pretrained.model_dir(args.name, args.root)
        checkpoint.atomic_write_bytes(folder / pretrained.CARD_FILE, render(card).encode())
        checkpoint.atomic_write_bytes(folder / pretrained.CARD_JSON, (json.dumps(card, indent=1) + "\n").encode())
    except (checkpoint.CheckpointError, ValueError, OSError) as e:
        print(f"model_card.py: error: {e}", file=sys.stderr)
        return 2
    s = card["scores"]["greedy"]
    print(f"Wrote {folder / pretrained.CARD_FILE} and {pretrained.CARD_JSON}: greedy chrF {s['chrf_multi']:.2f}, "
          f"BLEU {s['bleu_multi']:.2f} (all references) on {card['test']['sentences']} test sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
