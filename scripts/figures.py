"""Draw the figures of docs/math.md into docs/img/ (matplotlib).

- ``rmsprop-first-step.png``: the size of RMSprop's first update against the gradient,
  ``lr |g| / sqrt(0.1 g^2 + 1e-7)`` (math.md section 7), computed with the optimizer
  minis2s trains with (``minis2s.config.make_optimizer``).

Run: ``python scripts/figures.py [--out docs/img]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minis2s import train  # noqa: E402


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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (draw_rmsprop(out),):
        print("wrote", path)
