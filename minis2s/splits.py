"""Which pairs train, which validate, which are held out for the test.

Two ways, named by ``Config.split``:

``"keras"`` (the seed's, the default)
    Keras' ``validation_split``: the **last** ``validation_split`` of the loaded lines
    validate, the rest train; there is no test side. fra.txt is sorted by length, so this
    validates on the longest sentences, and near the cut the same English sentence sits on
    both sides with another translation. Right for reproducing the Keras example's numbers;
    wrong for saying how well a model translates.

``"source"`` (a fair held-out split)
    Every distinct English sentence (a *source*) draws one number ``u`` in ``[0, 1)`` from a
    hash of ``split_seed`` and its text::

        u(x) = int(blake2b(f"{split_seed}\\0{x}")[:8]) / 2**64
        test        if u <  test_split
        validation  if test_split <= u < test_split + validation_split
        training    otherwise

    so every translation of a source lands on the same side, the sides do not depend on
    the line order, and a source keeps its side whichever lines are loaded
    (``--num-samples``): the test sources of the first 10,000 lines are exactly the test
    sources of the whole file that lie in those lines. The fractions are fractions of
    sources, so the sides' shares of *pairs* differ a little (sources with many
    translations weigh more).

Vocabularies and maximum lengths are still read off every loaded line (training,
validation and test): the model's tables cover the characters of the test sentences, as
the seed's covered its validation sentences.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPLITS = ("keras", "source")


@dataclass(frozen=True)
class Sides:
    """Row indices of each side, ascending: ``train``, ``val``, ``test`` (``(n_side,)`` int64)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def keras_split_at(n: int, validation_split: float) -> int:
    """Index where validation starts, as Keras' ``validation_split`` computes it:
    ``floor(n (1 - validation_split))``."""
    return int(np.floor(n * (1.0 - validation_split)))


def source_draw(text: str, split_seed: int) -> float:
    """``u in [0, 1)``: the source's draw, from the first 8 bytes of its BLAKE2b hash
    (stable across machines, Python versions and processes, unlike ``hash``)."""
    digest = hashlib.blake2b(f"{split_seed}\0{text}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def source_split(input_texts: Sequence[str], test_fraction: float, validation_fraction: float,
                 seed: int = 0) -> Sides:
    """The source-disjoint split of pairs whose English sentences are ``input_texts``."""
    draws: dict[str, float] = {}  # one hash per distinct source
    for x in input_texts:
        if x not in draws:
            draws[x] = source_draw(x, seed)
    u = np.array([draws[x] for x in input_texts], dtype=np.float64).reshape(-1)
    test = u < test_fraction
    val = ~test & (u < test_fraction + validation_fraction)
    return Sides(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))


def split_rows(config, input_texts: Sequence[str]) -> Sides:
    """The sides ``config`` names (``split``, ``validation_split``, ``test_split``,
    ``split_seed``; a :class:`minis2s.config.Config` or a checkpoint manifest's dict) for
    the pairs whose English sentences are ``input_texts``."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    kind = get("split", "keras")
    n = len(input_texts)
    if kind == "keras":
        split_at = keras_split_at(n, get("validation_split"))
        return Sides(np.arange(split_at), np.arange(split_at, n), np.arange(0))
    if kind == "source":
        return source_split(input_texts, get("test_split"), get("validation_split"), get("split_seed", 0))
    raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {kind!r}")


def describe(sides: Sides) -> str:
    """``"Train on 900 samples, validate on 50 samples, hold out 50 for the test"``."""
    text = f"Train on {len(sides.train)} samples, validate on {len(sides.val)} samples"
    return text + (f", hold out {len(sides.test)} for the test" if len(sides.test) else "")


__all__ = ["SPLITS", "Sides", "describe", "keras_split_at", "source_draw", "source_split", "split_rows"]
