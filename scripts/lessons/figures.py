"""Draw the figures of docs/math.md into docs/img/ (matplotlib).

- ``rmsprop-first-step.png``: the size of RMSprop's first update against the gradient,
  ``lr |g| / sqrt(0.1 g^2 + 1e-7)`` (math.md section 7), computed with the optimizer
  minis2s trains with (``minis2s.config.make_optimizer``).
- ``lstm-cell.png``: one LSTM step, the equations of math.md section 3 as a data-flow diagram
  (the cell path ``c_{t-1} -> x f_t -> + -> c_t`` along the top, the gates below).
- ``encoder-decoder.png``: the seed model unrolled on the pair ``Go. -> Va !``, with the
  teacher-forcing table: decoder input ``\\tVa !`` against decoder target ``Va !\\n``, the
  strings taken from :func:`minis2s.data.build_dataset` itself.

Run: ``python scripts/lessons/figures.py [--out docs/img]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

from minis2s import data, train  # noqa: E402


def rmsprop_first_steps(gs: np.ndarray) -> np.ndarray:
    """``|update|`` of the first RMSprop step for each gradient value in ``gs`` (seed config)."""
    opt = train.make_optimizer(train.Config())
    w = {"w": jnp.zeros(len(gs))}
    updates, _ = opt.update({"w": jnp.asarray(gs, jnp.float32)}, opt.init(w), w)
    return np.abs(np.asarray(updates["w"]))


def draw_rmsprop(out: Path) -> Path:
    gs = np.logspace(-7, 1, 200)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.loglog(gs, rmsprop_first_steps(gs), label="first step  lr |g| / sqrt(0.1 g² + 1e-7)")
    ax.axhline(1e-3 / np.sqrt(0.1), ls="--", c="gray", label="lr / sqrt(0.1) = 3.16e-3")
    ax.axvline(1e-3, ls=":", c="gray", label="|g| = sqrt(1e-7 / 0.1) = 1e-3")
    ax.set_xlabel("|g|, the first gradient of a weight")
    ax.set_ylabel("|Δw| after one step")
    ax.set_title("RMSprop's first step (rho 0.9, eps 1e-7 inside the root)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out / "rmsprop-first-step.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- diagrams


def _box(ax, x, y, text, w=0.9, h=0.55, fc="#dde8f5", fs=11):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=fc, ec="black", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fs)


def _op(ax, x, y, text, r=0.22):
    ax.add_patch(Circle((x, y), r, fc="#fff3cc", ec="black", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=12)


def _arrow(ax, a, b, text=None, color="black", offset=(0.08, 0.08), shrink=12, **kw):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2, shrinkA=shrink, shrinkB=shrink, **kw))
    if text:
        ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], text, fontsize=9, color=color)


def draw_lstm_cell(out: Path) -> Path:
    """One step of math.md section 3: z_t = x_t W + h_{t-1} U + b, four gates, c_t, h_t."""
    fig, ax = plt.subplots(figsize=(8.2, 5.0))
    ax.set_xlim(-0.9, 9.4)
    ax.set_ylim(-0.9, 5.4)
    ax.axis("off")
    # inputs and the pre-activation
    ax.text(-0.8, -0.1, "$h_{t-1}$", fontsize=12, va="center")
    ax.text(-0.8, -0.5, "$x_t$", fontsize=12, va="center")
    _box(ax, 1.6, -0.3, "$z_t = x_t W + h_{t-1} U + b$\n$(B, 4H)$: blocks i | f | c | o", w=3.0, h=0.8, fc="#eeeeee", fs=10)
    _arrow(ax, (-0.2, -0.1), (0.06, -0.1), shrink=0)
    _arrow(ax, (-0.2, -0.5), (0.06, -0.5), shrink=0)
    # the four gates
    gates = [("$f_t = \\sigma(z^f)$", 2.2), ("$i_t = \\sigma(z^i)$", 3.6), ("$g_t = \\tanh(z^c)$", 5.0), ("$o_t = \\sigma(z^o)$", 6.6)]
    for text, x in gates:
        _box(ax, x, 1.5, text, w=1.35, h=0.5, fs=10)
        ax.annotate("", xy=(x, 1.25), xytext=(1.6 + (x - 4) * 0.25, 0.1),
                    arrowprops=dict(arrowstyle="-|>", lw=1, color="gray", shrinkA=0, shrinkB=0))
    # the cell path along the top
    y_c = 4.2
    ax.text(-0.4, y_c, "$c_{t-1}$", fontsize=12, va="center")
    _op(ax, 2.2, y_c, "×")
    _op(ax, 4.3, y_c, "+")
    ax.text(9.0, y_c, "$c_t$", fontsize=12, va="center")
    _arrow(ax, (0.1, y_c), (2.2, y_c), color="#b03030")
    _arrow(ax, (2.2, y_c), (4.3, y_c), "$f_t \\odot c_{t-1}$", color="#b03030", offset=(-0.5, 0.15))
    _arrow(ax, (4.3, y_c), (8.95, y_c), color="#b03030")
    _arrow(ax, (2.2, 1.75), (2.2, y_c))
    _op(ax, 4.3, 3.0, "×")
    _arrow(ax, (3.6, 1.75), (4.3, 3.0))
    _arrow(ax, (5.0, 1.75), (4.3, 3.0))
    _arrow(ax, (4.3, 3.0), (4.3, y_c), "$i_t \\odot g_t$", offset=(0.1, -0.1))
    # the output
    _box(ax, 6.6, 3.4, "tanh", w=0.8, h=0.4, fs=10)
    ax.annotate("", xy=(6.6, 3.6), xytext=(6.6, y_c), arrowprops=dict(arrowstyle="-|>", lw=1.2, shrinkA=0, shrinkB=0))
    _op(ax, 7.6, 2.5, "×")
    _arrow(ax, (6.6, 3.2), (7.6, 2.5))
    _arrow(ax, (6.6, 1.75), (7.6, 2.5))
    ax.text(9.0, 2.5, "$h_t$", fontsize=12, va="center")
    _arrow(ax, (7.6, 2.5), (8.95, 2.5))
    ax.text(7.9, 2.0, "$o_t \\odot \\tanh(c_t)$", fontsize=9)
    ax.text(4.6, 5.1, "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$,    $h_t = o_t \\odot \\tanh(c_t)$",
            ha="center", fontsize=12)
    ax.text(4.6, 4.65, "backward along the red cell path: $\\delta c_{t-1} = \\delta c_t \\odot f_t$ (+ the part through $h_{t-1}$)",
            ha="center", fontsize=9, color="#b03030")
    fig.tight_layout()
    path = out / "lstm-cell.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def teacher_forcing_rows(english: str = "Go.", french: str = "Va !") -> tuple[str, str, str]:
    """``(encoder input, decoder input, decoder target)`` of one pair as :mod:`minis2s.data`
    builds them (padding stripped): ``("Go.", "\\tVa !", "Va !\\n")``."""
    ds = data.build_dataset([english], ["\t" + french + "\n"])
    inp = "".join(ds.input_vocab.chars[k] for k in ds.encoder_tokens[0])
    dec = "".join(ds.target_vocab.chars[k] for k in ds.decoder_tokens[0])
    tgt = "".join(ds.target_vocab.chars[k] for k in ds.target_tokens[0])
    n = len(french) + 1
    return inp, dec[:n], tgt[:n]


def draw_encoder_decoder(out: Path) -> Path:
    """The seed model unrolled on ``Go. -> Va !`` with the teacher-forcing table."""
    english, dec_in, target = teacher_forcing_rows()
    show = lambda ch: {"\t": "\\t", "\n": "\\n", " ": "␣"}.get(ch, ch)  # noqa: E731
    fig, ax = plt.subplots(figsize=(10.6, 4.6))
    ax.set_xlim(-1.5, 10.6)
    ax.set_ylim(-2.6, 3.6)
    ax.axis("off")
    xs_enc = [0.4 + 1.2 * k for k in range(len(english))]
    xs_dec = [4.4 + 1.25 * k for k in range(len(dec_in))]
    for k, (x, ch) in enumerate(zip(xs_enc, english)):
        _box(ax, x, 1.0, "LSTM$_{enc}$", w=0.95, h=0.6, fs=9)
        ax.text(x, -0.2, show(ch), ha="center", fontsize=13, family="monospace")
        _arrow(ax, (x, -0.05), (x, 1.0))
        ax.text(x, 1.75, "(discarded)", ha="center", fontsize=7, color="gray")
        if k:
            _arrow(ax, (xs_enc[k - 1] + 0.48, 1.0), (x - 0.48, 1.0), shrink=0)
    # the initial state enters the first encoder step from the left, clear of its box
    ax.text(xs_enc[0] - 1.35, 1.0, "$h_0{=}0$\n$c_0{=}0$", fontsize=8, ha="center", va="center")
    _arrow(ax, (xs_enc[0] - 1.0, 1.0), (xs_enc[0] - 0.48, 1.0), shrink=0)
    _arrow(ax, (xs_enc[-1] + 0.48, 1.0), (xs_dec[0] - 0.48, 1.0), color="#b03030", shrink=0)
    ax.text((xs_enc[-1] + xs_dec[0]) / 2, 1.4, "final $(h, c)$", fontsize=8, color="#b03030", ha="center")
    for k, (x, ch, y) in enumerate(zip(xs_dec, dec_in, target)):
        _box(ax, x, 1.0, "LSTM$_{dec}$", w=0.95, h=0.6, fc="#e3f2e1", fs=9)
        _box(ax, x, 2.3, "softmax", w=0.95, h=0.45, fc="#f7e3e3", fs=8)
        _arrow(ax, (x, 1.0), (x, 2.3))
        ax.text(x, 3.05, show(y), ha="center", fontsize=13, family="monospace", color="#1f5fa8")
        _arrow(ax, (x, 2.3), (x, 3.0))
        ax.text(x, -0.2, show(ch), ha="center", fontsize=13, family="monospace")
        _arrow(ax, (x, -0.05), (x, 1.0))
        if k:
            _arrow(ax, (xs_dec[k - 1] + 0.48, 1.0), (x - 0.48, 1.0), shrink=0)
            # teacher forcing: the true previous target is the next input. The dashed line
            # runs down the gap between two columns, so it crosses no box and no label.
            gap = (xs_dec[k - 1] + x) / 2
            ax.plot([xs_dec[k - 1] + 0.2, gap, gap], [3.12, 3.12, 0.0], ls="--", lw=0.8, color="#1f5fa8")
            ax.annotate("", xy=(x - 0.17, -0.12), xytext=(gap, 0.0),
                        arrowprops=dict(arrowstyle="-|>", lw=0.8, ls="--", color="#1f5fa8", shrinkA=0, shrinkB=0))
    ax.text(xs_dec[0] - 0.6, 3.05, "target", fontsize=9, color="#1f5fa8", ha="right")
    ax.text(xs_dec[0] - 0.6, -0.2, "input", fontsize=9, ha="right")
    # the table
    cols = ["step t"] + [str(k + 1) for k in range(len(dec_in))]
    rows = [["decoder input"] + [show(c) for c in dec_in], ["decoder target"] + [show(c) for c in target]]
    table = ax.table(cellText=rows, colLabels=cols, loc="bottom", cellLoc="center", bbox=[0.38, 0.0, 0.6, 0.27])
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    for (r, c), cell in table.get_celld().items():
        cell.set_width(0.22 if c == 0 else 0.076)
    ax.text(-1.3, -1.6, "teacher forcing: in training the\ndecoder reads the TRUE previous\n"
            "character (dashed), not its own\nprediction; ␣ is a space", fontsize=8.5, va="center")
    ax.set_title("The seed model unrolled on  Go. → Va !", fontsize=12)
    fig.tight_layout()
    path = out / "encoder-decoder.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (draw_rmsprop(out), draw_lstm_cell(out), draw_encoder_decoder(out)):
        print("wrote", path)
