"""Draw the learning curve ``learning_curve.py`` recorded: multi-reference chrF (and chrF against
the first reference) per epoch, against epochs and against CPU hours of training.

    nice -n 5 python -m scripts.benchmarks.plot_learning_curve /work/runs/full-tfm-curve \\
        --data ../shared/data/fra-eng/fra.txt --run /work/runs/full-tfm --out docs/img/full-corpus-curve.png

``--table`` prints the table only and draws nothing (no matplotlib needed, no ``--out``).

Reads ``CURVE/curve.jsonl`` (one line per decoded epoch) and ``CURVE/outputs/epoch-NNNN.tsv``
(source TAB greedy output, for the fixed sample of validation sources). The references are
rebuilt from the run's validation side (:func:`learning_curve.sources` with no limit, then every
distinct French translation of each source, :func:`minis2s.metrics.references_by_source`), so
the scores are :func:`minis2s.metrics.chrf_multi` against all of a source's translations and
:func:`minis2s.metrics.chrf` against its first one (the file's first line of that source: the
watcher's own ``chrf_first_reference``, recomputed here and printed beside it as a check).

**CPU hours.** ``train_cpu_s`` is the training process's CPU seconds (all threads) when the
watcher read the checkpoint. A resumed run is a new process whose counter starts again at 0:
where the value drops from one epoch to the next, the earlier segment's last value is added to
every later one (:func:`stitch_cpu_seconds`). The CPU the first process spent after its last
decoded checkpoint is lost, and a restart whose new counter has already passed the old one by
the next checkpoint is not seen; points without a CPU reading are left out of the CPU panel.

**Points scored earlier.** A point may carry its scores itself (``chrf_multi``, ``chrf_first``)
with a ``recorded`` note saying where they come from, when its outputs were not kept (a run
continued with ``train --warm-start`` in a later session, whose earlier epochs' checkpoints
and outputs are gone); it is used as recorded when ``outputs/epoch-NNNN.tsv`` is missing, and
marked ``*`` in the table.

Prints a Markdown table (epoch, CPU hours, val_loss, chrF multi, chrF first) and the slope of
the last two points with CPU readings, in multi-reference chrF per CPU hour: what the next hour
of training buys, if the curve goes on as it went last. A curve with one point has no slope.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from minis2s import metrics
from minis2s.checkpoint import CheckpointError
from minis2s.run import list_checkpoints
from scripts.benchmarks import learning_curve


def read_curve(path: Path) -> list[dict]:
    """The points of ``curve.jsonl``, one per epoch (the last line of a repeated epoch wins), by epoch."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SystemExit(f"{path}: cannot read ({e.strerror or e})") from None
    points: dict[int, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
            points[int(point["epoch"])] = point
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SystemExit(f"{path}:{number}: not a curve point (a JSON object with an epoch)") from None
    if not points:
        raise SystemExit(f"{path}: no points yet")
    return [points[e] for e in sorted(points)]


def read_outputs(path: Path) -> dict[str, str]:
    """``{source: output}`` of one ``outputs/epoch-NNNN.tsv`` (lines ``source TAB output``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SystemExit(f"{path}: cannot read ({e.strerror or e})") from None
    rows = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        source, tab, output = line.partition("\t")
        if not tab:
            raise SystemExit(f"{path}:{number}: expected 'source<TAB>output'")
        rows[source] = output
    return rows


def stitch_cpu_seconds(values: Sequence[float | None]) -> list[float | None]:
    """CPU seconds made cumulative across restarts: where a reading is lower than the previous
    one, the process was restarted, and the previous segment's last reading is added to it and to
    every later one. ``None`` (no reading) stays ``None`` and does not end a segment."""
    out: list[float | None] = []
    offset, last = 0.0, None
    for v in values:
        if v is None:
            out.append(None)
            continue
        if last is not None and v < last:
            offset += last
        out.append(v + offset)
        last = v
    return out


def slope(xs: Sequence[float | None], ys: Sequence[float]) -> float | None:
    """``(y_b - y_a) / (x_b - x_a)`` over the last two points whose ``x`` is known; ``None``
    with fewer than two or no ``x`` between them."""
    known = [(x, y) for x, y in zip(xs, ys) if x is not None]
    if len(known) < 2 or known[-1][0] == known[-2][0]:
        return None
    (xa, ya), (xb, yb) = known[-2], known[-1]
    return (yb - ya) / (xb - xa)


def score_epochs(points: Sequence[dict], outputs_dir: Path, refs: dict[str, list[str]]) -> list[dict]:
    """Each point with ``chrf_multi``, ``chrf_first`` (0-100) and ``cpu_hours`` added."""
    cpu = stitch_cpu_seconds([p.get("train_cpu_s") for p in points])
    rows = []
    for point, seconds in zip(points, cpu):
        path = outputs_dir / f"epoch-{int(point['epoch']):04d}.tsv"
        if "recorded" in point and not path.exists():  # scored by this script earlier; outputs not kept
            rows.append(point | {"cpu_hours": None if seconds is None else seconds / 3600, "scored_sources": None})
            continue
        outputs = read_outputs(path)
        missing = [s for s in outputs if s not in refs]
        if missing:
            raise SystemExit(f"{path}: {len(missing)} source(s) not on the run's validation side, first "
                             f"{missing[0]!r}; is --run the run this curve followed, --data its file?")
        sources = list(outputs)
        hyps = [outputs[s] for s in sources]
        rows.append(point | {
            "cpu_hours": None if seconds is None else seconds / 3600,
            "chrf_multi": 100 * metrics.chrf_multi(hyps, [refs[s] for s in sources]),
            "chrf_first": 100 * metrics.chrf(hyps, [refs[s][0] for s in sources]),
            "scored_sources": len(sources),
        })
    return rows


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def table(rows: Sequence[dict]) -> str:
    """The Markdown table: epoch, CPU hours, val_loss, chrF multi, chrF first."""
    lines = ["| epoch | CPU hours | val_loss | chrF multi | chrF first |", "|---|---|---|---|---|"]
    for r in rows:
        epoch = f"{r['epoch']}*" if "recorded" in r and r.get("scored_sources") is None else r["epoch"]
        lines.append(f"| {epoch} | {_num(r['cpu_hours'], '.2f')} | {_num(r.get('val_loss'), '.4f')} | "
                     f"{r['chrf_multi']:.1f} | {r['chrf_first']:.1f} |")
    return "\n".join(lines)


def draw(rows: Sequence[dict], out: Path, title: str) -> None:
    """Two panels: chrF against epoch, and against CPU hours; multi-reference and first-reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=120, sharey=True)
    timed = [r for r in rows if r["cpu_hours"] is not None]
    for ax, xs, data, label in ((axes[0], [r["epoch"] for r in rows], rows, "epoch"),
                                (axes[1], [r["cpu_hours"] for r in timed], timed, "CPU hours of training (all threads)")):
        ax.plot(xs, [r["chrf_multi"] for r in data], marker="o", markersize=3, label="all references")
        ax.plot(xs, [r["chrf_first"] for r in data], marker="o", markersize=3, linestyle="--",
                label="first reference only")
        ax.set_xlabel(label)
        ax.set_xlim(0, 1.08 * max(xs, default=1) or 1)  # from the start of training, the last point inside
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylim(0, 1.12 * max(r["chrf_multi"] for r in rows) or 1)
    axes[0].set_ylabel("greedy chrF, validation sample")
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("curve", type=Path, help="the --out folder of learning_curve.py")
    p.add_argument("--data", required=True, help="the run's data file")
    p.add_argument("--run", required=True, type=Path, help="the training run the curve followed")
    p.add_argument("--out", type=Path, default=None, help="the figure (PNG)")
    p.add_argument("--table", action="store_true", help="print the table only, draw nothing")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    if args.out is None and not args.table:
        p.error("--out FIGURE is required unless --table")
    if not list_checkpoints(args.run):
        raise SystemExit(f"--run {args.run}: no checkpoint, so no validation side to rebuild")
    points = read_curve(args.curve / "curve.jsonl")
    try:
        grouped = learning_curve.sources(args.run, args.data, None)
    except (CheckpointError, OSError) as e:
        raise SystemExit(f"--run {args.run}: {e}") from None
    refs = {s: list(dict.fromkeys(r)) for s, r in grouped.items()}  # distinct, in file order
    rows = score_epochs(points, args.curve / "outputs", refs)
    print(table(rows))
    rate = slope([r["cpu_hours"] for r in rows], [r["chrf_multi"] for r in rows])
    if rate is None:
        timed = sum(r["cpu_hours"] is not None for r in rows)
        print(f"\nslope of the last two points: none ({timed} point(s) with a CPU reading; a slope needs two)")
    else:
        print(f"\nslope of the last two points: {rate:+.2f} chrF (multi-reference) per CPU hour")
    checked = [r for r in rows if r.get("chrf_first_reference") is not None]
    if checked:
        gap = max(abs(r["chrf_first_reference"] - r["chrf_first"]) for r in checked)
        print(f"first-reference chrF recomputed against the watcher's: largest difference {gap:.4f}",
              file=sys.stderr)
    if not args.table:
        title = args.title or f"{args.run.name}: greedy chrF on {rows[-1]['scored_sources']} validation sources"
        draw(rows, args.out, title)
        print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
