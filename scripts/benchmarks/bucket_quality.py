"""Why ``--bucket`` cost quality per epoch, and what fixed it: the same model, data, seed
and epochs, trained four ways, scored by greedy chrF on the validation pairs.

    python -m scripts.benchmarks.bucket_quality --data ../shared/data/fra-eng/fra.txt \\
        --num-samples 3000 --epochs 30 --seeds 0 1 --out runs/bucket-quality

Variants (all with ``--mask-padding``, so every variant's loss counts real characters only):

- ``none``:   no buckets (the reference);
- ``before``: buckets as minis2s cut them before the fix: batches run in the order of their
              first row in the shuffle, and each batch's loss is its own mean;
- ``order``:  batches in the order of their middle row, each batch's loss its own mean;
- ``both``:   ``order`` plus one constant denominator for every batch: ``--bucket`` now.

The old behaviours are rebuilt here by subclassing :class:`minis2s.bucketing.Batcher` (the
library keeps only the fixed one). Prints a markdown table; writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
from pathlib import Path

import numpy as np

from minis2s import bucketing, data, metrics, train, translate
from minis2s.config import Config
from minis2s.splits import split_rows
from minis2s.trained import load_trained
from minis2s.run import latest_checkpoint


class FirstRowOrder(bucketing.Batcher):
    """Batches in the order of their first row in the shuffle (the behaviour before the fix)."""

    def plan(self, indices):
        chunks = super().plan(indices)
        place = {int(row): p for p, row in enumerate(np.asarray(indices))}
        return sorted(chunks, key=lambda c: place[int(c[0])])


class PerBatchMean(bucketing.Batcher):
    """Each batch's loss its own mean over its real characters (no constant denominator)."""

    def batch(self, idx):
        out = super().batch(idx)
        out.pop("loss_scale", None)
        return out


class Before(FirstRowOrder, PerBatchMean):
    pass


VARIANTS = {"none": (False, bucketing.Batcher), "before": (True, Before),
            "order": (True, PerBatchMean), "both": (True, bucketing.Batcher)}


def run_variant(name: str, seed: int, ds, args) -> dict:
    bucket, batcher = VARIANTS[name]
    config = Config(model=args.model, num_samples=args.num_samples, epochs=args.epochs, seed=seed,
                    bucket=bucket, mask_padding=True)
    out = Path(args.out) / f"{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    saved = train.Batcher
    train.Batcher = batcher  # fit builds its batches through this name
    try:
        _, history = train.fit(config, ds, out=out, log=None)
    finally:
        train.Batcher = saved
    val = split_rows(config, ds.input_texts).val
    inputs = [ds.input_texts[i] for i in val]
    refs = [ds.target_texts[i].removeprefix(data.START).removesuffix(data.END) for i in val]
    results = translate.translate(load_trained(latest_checkpoint(out)), inputs, beam=1, on_error="skip")
    kept = [i for i, r in enumerate(results) if r.problem is None]
    chrf = 100 * metrics.chrf([results[i].output for i in kept], [refs[i] for i in kept])
    return {"variant": name, "seed": seed, "chrf": chrf, "loss": history["loss"][-1],
            "val_loss": history["val_loss"][-1], "s_per_epoch": statistics.median(history["seconds"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--num-samples", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--model", default="luong")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default="runs/bucket-quality")
    args = p.parse_args()
    ds = data.load_dataset(args.data, args.num_samples)
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            rows.append(run_variant(name, seed, ds, args))
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{args.model}, first {args.num_samples} pairs, --mask-padding, {args.epochs} epochs, "
          "greedy chrF on the validation pairs (last epoch)\n")
    print("| variant | " + " | ".join(f"seed {s}: chrF / loss / val_loss" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for name in args.variants:
        cells = [next(r for r in rows if r["variant"] == name and r["seed"] == s) for s in args.seeds]
        print(f"| {name} | " + " | ".join(f"{r['chrf']:.1f} / {r['loss']:.3f} / {r['val_loss']:.3f}" for r in cells) + " |")


if __name__ == "__main__":
    main()
