"""Training curves: loss and accuracy per epoch, train and validation, to a PNG.

matplotlib is an optional dependency (the ``plot`` extra) and is imported only when a
plot is drawn, so the rest of minis2s never needs it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .checkpoint import HISTORY_FILE
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


def png_path(out: str | os.PathLike) -> Path:
    """The file a figure is written to: ``out``, with ``.png`` added when it has no suffix
    (as matplotlib would add it), so the path reported is the path written."""
    out = Path(out)
    if out.is_dir():
        raise PlotError(f"{out}: is a directory; give a file name such as {out / 'figure.png'}")
    return out if out.suffix else out.with_name(out.name + ".png")


def plot_history(history: dict[str, list[float]], out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw loss (left) and accuracy (right) per epoch, train and validation, to ``out``.

    Epochs are numbered from 1, as Keras prints them. Non-finite values (a diverged
    run) are left out of the line rather than breaking the axis scale.
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
    columns, a darker cell where an output character drew more on an English one. The end
    token is drawn as a return arrow, a space as an open box.
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
        figsize=(max(4.0, 0.32 * width + 2.0), sum(0.28 * h + 1.0 for h in heights)),
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (english, chars, weights) in zip(axes[:, 0], panels):
        image = ax.imshow(np.asarray(weights), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(len(english)), [_show_char(c) for c in english])
        ax.set_yticks(range(len(chars)), [_show_char(c) for c in chars])
        ax.tick_params(labelsize=8, length=0)
        ax.set_xlabel("English")
        ax.set_ylabel("French output")
        ax.set_title(f"{english} \u2192 {chars.rstrip(chr(10))}", fontsize=9)
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.6, label="attention weight")
    out = png_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
