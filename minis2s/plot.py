"""Training curves: loss and accuracy per epoch, train and validation, to a PNG.

matplotlib is an optional dependency (the ``plot`` extra) and is imported only when a
plot is drawn, so the rest of minis2s never needs it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .run import HISTORY_FILE
INSTALL_HINT = 'matplotlib is not installed; install it with: pip install "minis2s[plot]"'


class PlotError(ValueError):
    """A history that cannot be plotted, or no matplotlib; the message says what to do."""


def find_history(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else ``path/history.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / HISTORY_FILE
        if not p.is_file():
            raise PlotError(f"{p.parent}: no {HISTORY_FILE} here; pass a run directory written by 'minis2s train'")
    elif not p.exists():
        raise PlotError(f"{p}: no such file or directory")
    return p


def load_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """Read a ``history.json``: a JSON object of per-epoch lists of numbers.

    Keys other than lists of numbers (for example run information) are ignored; at
    least one of ``loss, accuracy, val_loss, val_accuracy`` must be there.
    """
    p = find_history(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlotError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise PlotError(f"{p}: expected a JSON object of per-epoch lists, found {type(raw).__name__}")
    history = {
        k: [float(x) for x in v]
        for k, v in raw.items()
        if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    }
    if not any(history.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy")):
        raise PlotError(f"{p}: no per-epoch loss or accuracy in it (keys: {', '.join(raw) or 'none'})")
    return history


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotError(INSTALL_HINT) from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def run_title(history_path: str | os.PathLike) -> str:
    """A curves plot's title: the model, the data it trained on and the run's name, e.g.
    ``seed model (LSTM, latent 256), 10,000 pairs of fra.txt: runs/seed``.

    Read from the config in the newest checkpoint's manifest beside ``history.json``; a
    history without checkpoints (or with an unreadable one) gets the run's name alone.
    """
    from . import checkpoint, run

    path = Path(history_path)
    run_dir = path.parent if path.name == HISTORY_FILE or path.is_file() else path
    try:
        manifest = checkpoint.read_manifest(run.list_checkpoints(run_dir)[-1][1])
        config = manifest["config"]
        from .models import build, config_for

        sizes = build(config_for(config, manifest["input_chars"], manifest["target_chars"])).describe()
    except (IndexError, KeyError, TypeError, ValueError, OSError):  # no checkpoint, or one this version cannot read (CheckpointError is a ValueError): the name still says which run
        return str(run_dir)
    n = config.get("num_samples")
    data_file = Path(str((manifest.get("data") or {}).get("path") or "")).name
    pairs = f"{n:,} pairs" if n else "all pairs"
    if data_file:
        pairs += f" of {data_file}"
    return f"{config['model']} model ({sizes}), {pairs}: {run_dir}"


def png_path(out: str | os.PathLike) -> Path:
    """The file a figure is written to: ``out``, with ``.png`` added when it has no suffix
    (as matplotlib would add it), so the path reported is the path written."""
    out = Path(out)
    if out.is_dir():
        raise PlotError(f"{out}: is a directory; give a file name such as {out / 'figure.png'}")
    return out if out.suffix else out.with_name(out.name + ".png")


def plot_history(history: dict[str, list[float]], out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw loss (left) and accuracy (right) per epoch, train and validation, to ``out``.

    Epochs are numbered from 1, as Keras prints them. The loss axis is logarithmic: the
    first epochs' drop would otherwise flatten every later epoch, where overfitting shows
    (validation loss turning up while training loss keeps falling). Non-finite values (a
    diverged run) are left out of the line rather than breaking the axis scale.
    """
    plt = _import_pyplot()
    from matplotlib import ticker

    out = png_path(out)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label, style in ((metric, "train", "-o"), ("val_" + metric, "validation", "-s")):
            values = history.get(key) or []
            points = [(i + 1, v) for i, v in enumerate(values) if math.isfinite(v)]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, markersize=3, label=label)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # no epoch 1.2
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        if metric == "loss" and ax.lines and all(min(line.get_ydata()) > 0 for line in ax.lines):
            ax.set_yscale("log")
            ax.set_ylabel("loss (log scale)")
            # labels at 1, 2, 3 and 5 per decade, written 0.3 rather than 3e-01
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _show_char(c: str) -> str:
    """Axis label of one character: visible stand-ins for space and the end token."""
    return {" ": "\u2423", "\n": "\u23ce", "\t": "\u21e5"}.get(c, c)


def plot_attention(panels, out: str | os.PathLike) -> Path:
    """Attention heatmaps, one panel per sentence, to ``out``.

    ``panels`` is a sequence of ``(english, output_chars, weights)`` with ``weights`` of
    shape ``(len(output_chars), len(english))`` (:func:`minis2s.alignment.attention_weights`):
    the output (French) characters down the rows, the English characters along the
    columns, a darker cell where an output character drew more on an English one. Each
    panel has its own colour scale, from 0 to its largest weight, and its own colour bar:
    weights spread over a long sentence are small, and on one shared 0-1 scale such a
    panel would be nearly white. The end token is drawn as a return arrow, a space as an
    open box.
    """
    import numpy as np

    panels = list(panels)
    if not panels:
        raise PlotError("no translation to plot (every input was empty or skipped)")
    for english, chars, weights in panels:
        if np.shape(weights) != (len(chars), len(english)):
            raise PlotError(f"weights of shape {np.shape(weights)} do not fit {len(chars)} output and "
                            f"{len(english)} input characters")
    plt = _import_pyplot()
    heights = [max(len(chars), 1) for _, chars, _ in panels]
    width = max(len(english) for english, _, _ in panels)
    fig, axes = plt.subplots(
        len(panels), 1, squeeze=False, constrained_layout=True,
        figsize=(max(5.0, 0.32 * width + 3.0), sum(0.28 * h + 1.0 for h in heights)),
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (english, chars, weights) in zip(axes[:, 0], panels):
        weights = np.asarray(weights, dtype=float)
        top = float(weights.max()) if weights.size and weights.max() > 0 else 1.0
        image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=top, aspect="auto", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="attention weight")
        ax.set_xticks(range(len(english)), [_show_char(c) for c in english])
        ax.set_yticks(range(len(chars)), [_show_char(c) for c in chars])
        ax.tick_params(labelsize=8, length=0)
        ax.set_xlabel("English")
        ax.set_ylabel("French output")
        ax.set_title(f"{english} \u2192 {chars.rstrip(chr(10))}", fontsize=9)
    out = png_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
