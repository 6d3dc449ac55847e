"""The data splits (minis2s/splits.py) and the bucketed batches' order and weights
(minis2s/bucketing.py), against plain-Python and NumPy restatements of their rules."""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import numpy as np
import pytest

from tests._cli import run as cli_run
from minis2s import bucketing, splits, train
from minis2s.config import Config
from minis2s.data import END, START, build_dataset


def _draw(text: str, seed: int) -> float:
    """The draw as the module docstring states it, written out again."""
    h = hashlib.blake2b((str(seed) + "\x00" + text).encode(), digest_size=8).hexdigest()
    return int(h, 16) / 2**64


def _corpus(n_sources: int, rng) -> list[str]:
    """English sides with 1 to 4 translations per source, sources interleaved."""
    copies = rng.integers(1, 5, n_sources)
    texts = [f"sentence {i}." for i, c in enumerate(copies) for _ in range(c)]
    return [texts[i] for i in rng.permutation(len(texts))]


def test_keras_split_is_the_last_fraction():
    for n, v in [(10000, 0.2), (10, 0.3), (7, 0.5)]:
        sides = splits.split_rows(Config(validation_split=v), [str(i) for i in range(n)])
        at = int(np.floor(n * (1 - v)))
        assert sides.train.tolist() == list(range(at)) and sides.val.tolist() == list(range(at, n))
        assert sides.test.size == 0


def test_source_split_keeps_every_translation_of_a_source_on_one_side():
    texts = _corpus(3000, np.random.default_rng(0))
    sides = splits.source_split(texts, 0.1, 0.2, seed=3)
    assert sorted(np.concatenate([sides.train, sides.val, sides.test]).tolist()) == list(range(len(texts)))
    side_of = {}
    for name in ("train", "val", "test"):
        for i in getattr(sides, name):
            assert side_of.setdefault(texts[i], name) == name
            u = _draw(texts[i], 3)
            assert name == ("test" if u < 0.1 else "val" if u < 0.3 else "train")
    # Fractions of sources, within 4 standard deviations of a binomial draw.
    n = len(side_of)
    for name, f in (("test", 0.1), ("val", 0.2)):
        k = sum(v == name for v in side_of.values())
        assert abs(k - f * n) < 4 * np.sqrt(n * f * (1 - f))


def test_a_source_keeps_its_side_whatever_lines_are_loaded():
    texts = _corpus(500, np.random.default_rng(1))
    whole = splits.source_split(texts, 0.2, 0.2)
    test_sources = {texts[i] for i in whole.test}
    first = texts[:300]  # --num-samples 300
    part = splits.source_split(first, 0.2, 0.2)
    assert {first[i] for i in part.test} == test_sources & set(first)
    shuffled = list(reversed(texts))
    assert {shuffled[i] for i in splits.source_split(shuffled, 0.2, 0.2).test} == test_sources
    other = splits.source_split(texts, 0.2, 0.2, seed=1)
    assert {texts[i] for i in other.test} != test_sources


@pytest.mark.slow  # a training
def test_fit_trains_on_the_training_side_and_validates_on_the_validation_side(monkeypatch):
    pairs = [(f"w{i % 40}.", f"m{i}.") for i in range(80)]  # 40 sources, two translations each
    ds = build_dataset([e for e, _ in pairs], [START + f + END for _, f in pairs])
    config = Config(batch_size=4, epochs=1, latent_dim=4, split="source", test_split=0.3, validation_split=0.3)
    sides = splits.split_rows(config, ds.input_texts)
    assert len(sides.train) and len(sides.val) and len(sides.test)
    seen = []
    plan = bucketing.Batcher.plan
    monkeypatch.setattr(bucketing.Batcher, "plan", lambda self, idx: seen.append(np.sort(idx)) or plan(self, idx))
    train.fit(dataclasses.replace(config, mask_padding=True), ds, log=None)
    assert [s.tolist() for s in seen] == [sides.val.tolist(), sides.train.tolist()]  # val batches are built first


def test_split_flags_are_checked():
    with pytest.raises(ValueError, match="split must be one of keras, source"):
        Config(split="random").validate()
    with pytest.raises(ValueError, match="test_split must be positive"):
        Config(split="source", test_split=0.5, validation_split=0.5).validate()
    rc, _, err = cli_run(["train", "--data", "demo", "--epochs", "1", "--test-split", "0.1", "--out", "unused"])
    assert rc == 2 and "--test-split and --split-seed need --split source" in err


# --------------------------------------------------------------------------- bucketed batches


def _lengths_dataset(lengths: list[int]):
    """Pairs whose English and French sides are ``n`` characters long, for each ``n``."""
    return build_dataset(["a" * n for n in lengths], [START + "b" * n + END for n in lengths])


def test_bucketed_batches_spread_every_cell_over_the_epoch():
    """A rare cell's batch sits, on average, in the middle of the epoch, not at its start.

    Seven rare cells of 8 rows (one batch each) beside a common cell of 800: the first of a
    cell's 8 rows lies on average at 1/9 of the shuffle, its middle row at 1/2."""
    rare_lengths = [10, 18, 26, 34, 42, 50, 58]  # one bucket width each
    ds = _lengths_dataset([3] * 800 + [n for n in rare_lengths for _ in range(8)])
    batcher = bucketing.Batcher(ds, 16, bucket=True)
    places = []
    for seed in range(20):
        plan = batcher.plan(np.random.default_rng(seed).permutation(len(ds)))
        places += [k / (len(plan) - 1) for k, idx in enumerate(plan) if idx[0] >= 800]
        for idx in plan:  # every batch still comes from one cell
            assert len(set(batcher.cell[idx].tolist())) == 1
    assert len(places) == 20 * len(rare_lengths)
    assert 0.4 < np.mean(places) < 0.6


def test_bucketed_objective_is_a_sum_over_one_constant_denominator():
    """Every batch's objective is its real characters' loss sum over B * (mean real characters
    per row); a short batch and a long one, or a full and a partial one, weigh by what they hold."""
    lengths = [2, 3, 3, 5, 9, 9, 12, 20]
    ds = _lengths_dataset(lengths)
    batcher = bucketing.Batcher(ds, 4, bucket=True, mask_padding=True)
    real = np.array([len(t) - 1 for t in ds.target_texts])  # target text has \t and \n: n + 1 real positions
    denominator = 4 * real.mean()
    from minis2s import models

    model = models.build(models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 4))
    params = model.init(jax.random.PRNGKey(0))
    objective = jax.jit(lambda p, b: train.loss_fn(p, b, model.apply)[0])
    for idx in batcher.plan(np.arange(len(ds))):
        b = batcher.batch(idx)
        probs = np.asarray(model.apply(params, b), np.float64)
        p = probs / probs.sum(-1, keepdims=True)
        ce = -np.log(np.clip(np.take_along_axis(p, b["target_tokens"][..., None], -1)[..., 0], 1e-7, 1 - 1e-7))
        expected = (b["weight"][:, None] * b["mask"] * ce).sum() / denominator
        np.testing.assert_allclose(float(objective(params, b)), expected, rtol=1e-5)
