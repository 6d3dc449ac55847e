"""Train several models on the same data, seed and shuffles, then score each on the validation split.

Each ``--run NAME[:field=value,...]`` is one training run; the fields override
:class:`minis2s.config.Config` (``model``, ``cell``, ``epochs``, ``num_samples``,
``bucket``, ...). Every run writes its checkpoints to ``OUT/NAME`` (resumed if present), and
is scored from its best checkpoint (lowest val_loss): greedy and beam exact match and chrF
on the validation sentences, as ``minis2s evaluate`` scores them.

    python scripts/compare_models.py --data ../shared/data/fra-eng/fra.txt --epochs 20 \\
        --run seed --run luong:model=luong --run bahdanau:model=bahdanau --out runs/compare

Prints a markdown table and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from minis2s import checkpoint, data, decode, metrics, train
from minis2s.config import Config


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
    results = decode.translate(trained, inputs, beam=beam, on_error="skip")
    kept = [i for i, r in enumerate(results) if r.problem is None]
    s = metrics.score([results[i].output for i in kept], [references[i] for i in kept])
    return {"exact_match": s["exact_match"], "chrf": 100 * s["chrf"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--num-samples", default="10000", help="a count or 'all' (default 10000)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="score at most this many validation sentences")
    p.add_argument("--run", action="append", required=True, metavar="NAME[:field=value,...]")
    p.add_argument("--out", default="runs/compare")
    args = p.parse_args()
    num_samples = None if args.num_samples == "all" else int(args.num_samples)

    rows = []
    for spec in args.run:
        name, overrides = parse_run(spec)
        config = Config(**{"num_samples": num_samples, "epochs": args.epochs, **overrides})
        ds = data.load_dataset(args.data, config.num_samples)
        out = Path(args.out) / name
        state = None
        if checkpoint.list_checkpoints(out):
            _, state, _ = train.load_state(out, ds)
        print(f"== {name}: {overrides or 'the seed recipe'}", flush=True)
        if state is None or state.epoch < config.epochs:
            train.fit(config, ds, log=lambda line: print(f"[{name}] {line}", flush=True), out=out, state=state,
                      patience=args.patience)
        _, state, _ = train.load_state(out, ds)
        best = state.best_epoch
        trained = checkpoint.load_trained(out)  # the best checkpoint by val_loss
        split_at = train.split_train_val(len(ds), config.validation_split)
        hi = len(ds) if args.limit is None else min(len(ds), split_at + args.limit)
        inputs = ds.input_texts[split_at:hi]
        refs = [t.removeprefix(data.START).removesuffix(data.END) for t in ds.target_texts[split_at:hi]]
        greedy = score_split(trained, inputs, refs, 1)
        beam = score_split(trained, inputs, refs, args.beam)
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


if __name__ == "__main__":
    main()
