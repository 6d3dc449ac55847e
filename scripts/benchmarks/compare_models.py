"""Train several models on the same data, seed and shuffles, then score each on the validation split.

Each ``--run NAME[:field=value,...]`` is one training run; the fields override
:class:`minis2s.config.Config` (``model``, ``cell``, ``epochs``, ``num_samples``,
``bucket``, ...). Every run writes its checkpoints to ``OUT/NAME`` (resumed if present), and
is scored from its best checkpoint (lowest val_loss): greedy and beam exact match and chrF
on the validation sentences, as ``minis2s evaluate`` scores them.

    python scripts/benchmarks/compare_models.py --data ../shared/data/fra-eng/fra.txt --epochs 20 \\
        --run seed --run luong:model=luong --run bahdanau:model=bahdanau --out runs/compare

Prints a markdown table and writes ``OUT/results.json``. With ``--score-every K`` each run
also stops every K epochs to score its latest checkpoint greedily (the learning curve in chrF,
``OUT/curves.json``); resuming makes the segments one uninterrupted run. ``--beam 0`` skips
beam search (slow on large validation splits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from minis2s import data, metrics, train, translate
from minis2s.run import latest_checkpoint, list_checkpoints
from minis2s.trained import load_trained
from minis2s.config import Config
from minis2s.splits import split_rows


def parse_run(spec: str) -> tuple[str, dict]:
    """``"luong:model=luong,cell=gru"`` -> ``("luong", {"model": "luong", "cell": "gru"})``,
    each value converted to the type of the Config field it sets."""
    name, _, rest = spec.partition(":")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            sys.exit(f"--run {spec}: {key!r} is not a Config field ({', '.join(fields)})")
        default = getattr(Config(), key)
        if isinstance(default, bool):
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif default is None or isinstance(default, int):
            overrides[key] = None if value == "all" else int(value)
        elif isinstance(default, float):
            overrides[key] = float(value)
        else:
            overrides[key] = value
    return name, overrides


def score_split(trained, inputs: list[str], references: list[str], beam: int) -> dict[str, float]:
    results = translate.translate(trained, inputs, beam=beam, on_error="skip")
    kept = [i for i, r in enumerate(results) if r.problem is None]
    s = metrics.score([results[i].output for i in kept], [references[i] for i in kept])
    return {"exact_match": s["exact_match"], "chrf": 100 * s["chrf"]}


def validation_texts(ds, config: Config, limit: int | None) -> tuple[list[str], list[str]]:
    """The validation inputs and their references without the start and end markers."""
    rows = split_rows(config, ds.input_texts).val[:limit]  # the seed's: split_at .. split_at + limit - 1
    refs = [ds.target_texts[i].removeprefix(data.START).removesuffix(data.END) for i in rows]
    return [ds.input_texts[i] for i in rows], refs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--num-samples", default="10000", help="a count or 'all' (default 10000)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--beam", type=int, default=4, help="beam width for the second score; 0 skips it")
    p.add_argument("--score-every", type=int, default=None, metavar="K",
                   help="also score the latest checkpoint greedily every K epochs (OUT/curves.json)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many validation sentences")
    p.add_argument("--run", action="append", required=True, metavar="NAME[:field=value,...]")
    p.add_argument("--out", default="runs/compare")
    args = p.parse_args()
    num_samples = None if args.num_samples == "all" else int(args.num_samples)

    rows, curves = [], {}
    for spec in args.run:
        name, overrides = parse_run(spec)
        config = Config(**{"num_samples": num_samples, "epochs": args.epochs, **overrides})
        ds = data.load_dataset(args.data, config.num_samples)
        inputs, refs = validation_texts(ds, config, args.limit)
        out = Path(args.out) / name
        state = None
        if list_checkpoints(out):
            _, state, _ = train.load_state(out, ds)
        print(f"== {name}: {overrides or 'the seed recipe'}", flush=True)
        if args.score_every and config.teacher_forcing_end is not None:
            sys.exit(f"--run {spec}: --score-every trains in segments, which would change a schedule "
                     "that depends on the number of epochs (teacher_forcing_end)")
        every = args.score_every or config.epochs
        for target in [*range(every, config.epochs, every), config.epochs]:
            if state is not None and (state.epoch >= target or state.wait >= args.patience):
                continue
            train.fit(dataclasses.replace(config, epochs=target), ds, out=out, state=state,
                      log=lambda line: print(f"[{name}] {line}", flush=True), patience=args.patience)
            _, state, _ = train.load_state(out, ds)
            if args.score_every:
                latest = load_trained(latest_checkpoint(out))
                point = {"epoch": state.epoch, "val_loss": state.history["val_loss"][-1],
                         **score_split(latest, inputs, refs, 1)}
                curves.setdefault(name, []).append(point)
                print(f"[{name}] curve {json.dumps(point)}", flush=True)
        _, state, _ = train.load_state(out, ds)
        best = state.best_epoch
        trained = load_trained(out)  # the best checkpoint by val_loss
        greedy = score_split(trained, inputs, refs, 1)
        beam = score_split(trained, inputs, refs, args.beam) if args.beam else {"exact_match": float("nan"), "chrf": float("nan")}
        h = state.history
        rows.append({
            "run": name, **overrides, "epochs_run": state.epoch, "best_epoch": best,
            "best_val_loss": h["val_loss"][best - 1], "val_accuracy": h["val_accuracy"][best - 1],
            "greedy_exact": greedy["exact_match"], "greedy_chrf": greedy["chrf"],
            "beam_exact": beam["exact_match"], "beam_chrf": beam["chrf"],
            "s_per_epoch": statistics.median(h["seconds"]), "validation_sentences": len(inputs),
        })
        print(json.dumps(rows[-1]), flush=True)

    print(f"\n| run | best val_loss (epoch) | val_accuracy | greedy exact / chrF | beam {args.beam} exact / chrF | s/epoch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['best_val_loss']:.4f} ({r['best_epoch']} of {r['epochs_run']}) | "
              f"{r['val_accuracy']:.4f} | {100 * r['greedy_exact']:.1f}% / {r['greedy_chrf']:.1f} | "
              f"{100 * r['beam_exact']:.1f}% / {r['beam_chrf']:.1f} | {r['s_per_epoch']:.1f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    if curves:
        (Path(args.out) / "curves.json").write_text(json.dumps(curves, indent=1) + "\n")
        print("\n| run | epoch | val_loss | greedy exact | greedy chrF |\n|---|---|---|---|---|")
        for name, points in curves.items():
            for q in points:
                print(f"| {name} | {q['epoch']} | {q['val_loss']:.4f} | {100 * q['exact_match']:.1f}% | {q['chrf']:.1f} |")


if __name__ == "__main__":
    main()
