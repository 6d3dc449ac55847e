"""``minis2s plot``: a run's loss and accuracy per epoch to a PNG."""

from __future__ import annotations


def add(sub) -> None:
    p = sub.add_parser("plot", help="draw loss and accuracy per epoch (train and validation) to a PNG")
    p.add_argument("run", metavar="DIR", help="a run directory holding history.json (or the file itself)")
    p.add_argument("--out", metavar="PNG", help="PNG to write, '.png' added to a name without a suffix "
                   "(default: DIR/history.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import plot

    history_path = plot.find_history(args.run)
    history = plot.load_history(history_path)
    out = plot.plot_history(history, args.out or history_path.parent / "history.png", title=plot.run_title(history_path))
    epochs = max(len(v) for v in history.values())
    print(f"Wrote {out} ({epochs} epochs)")
    return 0
