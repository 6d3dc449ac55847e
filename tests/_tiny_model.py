"""A tiny model trained once per test session on the demo corpus, shared by the
decoding, translation and evaluation tests (importing this module is cheap; the
training runs on the first call of :func:`tiny_model`)."""

from __future__ import annotations

import functools
from pathlib import Path

from minis2s import data, run, train, trained

# latent 32, lr 5e-3, 100 epochs of 14 batches (1,400 steps): ~10-15 s on 2 cores; the
# outputs are imperfect but varied (~30 distinct of 140) and all end in "\n".
TINY_CONFIG = train.Config(num_samples=None, batch_size=8, epochs=100, latent_dim=32, learning_rate=5e-3, seed=0)


@functools.lru_cache(maxsize=None)
def tiny_model():
    """``(params, dataset, config, history)`` of the tiny model."""
    ds = data.load_dataset(data.DEMO_PATH, TINY_CONFIG.num_samples)
    params, history = train.fit(TINY_CONFIG, ds, log=None)
    return params, ds, TINY_CONFIG, history


def save_tiny_checkpoint(directory: Path) -> Path:
    """Write the tiny model as ``minis2s train`` would: a checkpoint and its history."""
    params, ds, config, history = tiny_model()
    trained.save_trained(directory, params, config, ds)
    run.write_history(Path(directory) / run.HISTORY_FILE, history)
    return Path(directory)
