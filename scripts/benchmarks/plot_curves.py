"""Draw the learning curves ``compare_models.py --score-every`` wrote: greedy chrF against
CPU minutes (or epochs), one line per run.

    python -m scripts.benchmarks.plot_curves /work/runs/ttq/curves.json --out docs/img/time-to-quality.png

Prints the table the figure shows (markdown). Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(curves: dict, x: str) -> str:
    lines = [f"| run | {x.replace('_', ' ')} | epoch | val_loss | greedy chrF |", "|---|---|---|---|---|"]
    for name, points in curves.items():
        for p in points:
            if x in p:
                lines.append(f"| {name} | {p[x]:.1f} | {p['epoch']} | {p['val_loss']:.4f} | {p['chrf']:.1f} |")
    return "\n".join(lines)


def draw(curves: dict, x: str, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, points in curves.items():
        points = [p for p in points if x in p]
        ax.plot([p[x] for p in points], [p["chrf"] for p in points], marker="o", markersize=3, label=name)
    ax.set_xlabel({"cpu_minutes": "CPU minutes of training (all threads)", "epoch": "epoch"}.get(x, x))
    ax.set_ylabel("greedy chrF, validation")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("curves", type=Path)
    p.add_argument("--x", default="cpu_minutes", choices=("cpu_minutes", "epoch"))
    p.add_argument("--title", default="greedy chrF against training CPU time")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    curves = json.loads(args.curves.read_text())
    draw(curves, args.x, args.out, args.title)
    print(table(curves, args.x))


if __name__ == "__main__":
    main()
