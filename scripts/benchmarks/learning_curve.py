"""Follow a training run and decode a fixed sample of its validation sources after every epoch,
so its learning curve survives the pruning of old checkpoints.

    nice -n 19 python -m scripts.benchmarks.learning_curve /work/runs/full-luong \\
        --data ../shared/data/fra-eng/fra.txt --limit 2000 --out /work/runs/full-luong-curve

Runs beside ``minis2s train`` (or after it) and returns when the run's process has ended and
every checkpoint it finds is decoded (``--once``: decode what is there now, then return). For
each new checkpoint ``epoch-NNNN`` it writes ``OUT/outputs/epoch-NNNN.tsv`` (source, greedy
output) and appends to ``OUT/curve.jsonl`` one line: the epoch, its val_loss, the training
time so far (the run's history, wall seconds), the training process's CPU seconds when the
checkpoint was read (``--pid``; from /proc), and the single-reference chrF against the first
reference of each source (the multi-reference scores are computed from the saved outputs by
``minis2s.metrics`` afterwards, so they never need the model again).

The sources are every distinct English sentence of the run's validation side, or a fixed
random sample of ``--limit`` of them (numpy seed 0), the same for every epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from minis2s import data as data_mod, metrics, rebuild, translate
from minis2s.checkpoint import CheckpointError, read_manifest
from minis2s.run import list_checkpoints
from minis2s.splits import split_rows
from minis2s.trained import load_trained


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def sources(run_dir: Path, data_path: str, limit: int | None) -> dict[str, list[str]]:
    """``{English source: [its French references]}`` of the run's validation side."""
    config = read_manifest(list_checkpoints(run_dir)[-1][1])["config"]
    ds, _ = rebuild.load_dataset(data_mod.resolve_data(data_path), config.get("num_samples"))
    refs: dict[str, list[str]] = {}
    for i in split_rows(config, ds.input_texts).val:
        refs.setdefault(ds.input_texts[i], []).append(ds.target_texts[i].removeprefix(data_mod.START).removesuffix(data_mod.END))
    keys = list(refs)
    if limit is not None and limit < len(keys):
        keys = [keys[i] for i in sorted(np.random.default_rng(0).choice(len(keys), limit, replace=False))]
    return {k: refs[k] for k in keys}


def decode_epoch(path: Path, refs: dict[str, list[str]], out: Path, pid: int | None) -> dict | None:
    cpu = cpu_seconds(pid)
    try:
        trained = load_trained(path, warn=None)
        manifest = read_manifest(path)
    except (CheckpointError, OSError):
        return None  # pruned or still being written: the next one will do
    inputs = list(refs)
    outputs = [r.output for r in translate.translate(trained, inputs, beam=1, on_error="truncate")]
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{x}\t{y}\n" for x, y in zip(inputs, outputs))
    (out / "outputs" / f"{path.name}.tsv").write_text(rows, encoding="utf-8")
    history = manifest.get("training", {}).get("history", {})
    return {
        "epoch": trained.epoch, "val_loss": (history.get("val_loss") or [None])[-1],
        "train_wall_s": float(sum(history.get("seconds", []))), "train_cpu_s": cpu,
        "chrf_first_reference": 100 * metrics.chrf(outputs, [r[0] for r in refs.values()]),
        "sources": len(inputs), "decoded_at": time.time(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--pid", type=int, default=None, help="the training process (for its CPU seconds)")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between looks at the run directory")
    p.add_argument("--once", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    curve = args.out / "curve.jsonl"
    done = {json.loads(line)["epoch"] for line in curve.read_text().splitlines()} if curve.exists() else set()
    while not list_checkpoints(args.run):  # the run's first epoch is still training
        if args.once:
            return
        time.sleep(args.poll)
    refs = sources(args.run, args.data, args.limit)
    while True:
        for epoch, path in list_checkpoints(args.run):
            if epoch not in done:
                point = decode_epoch(path, refs, args.out, args.pid)
                if point is not None:
                    done.add(epoch)
                    with curve.open("a") as f:
                        f.write(json.dumps(point) + "\n")
                    print(json.dumps(point), flush=True)
        alive = args.pid is not None and Path(f"/proc/{args.pid}").exists()
        if args.once or not alive:
            return
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
