"""A tiny model trained once per test session on the demo corpus, shared by the
decoding, translation and evaluation tests (importing this module is cheap; the
training runs on the first call of :func:`tiny_model`)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from minis2s import checkpoint, data, run, train, trained

# latent 32, lr 5e-3, 100 epochs of 14 batches (1,400 steps): ~10-15 s on 2 cores; the
# outputs are imperfect but varied (~30 distinct of 140) and all end in "\n".
TINY_CONFIG = train.Config(num_samples=None, batch_size=8, epochs=100, latent_dim=32, learning_rate=5e-3, seed=0)


def _run_dir() -> Path | None:
    """One folder per pytest-xdist run, shared by its workers (None outside xdist)."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not uid:
        return None
    from tests.conftest import SUITE_DIR

    for old in SUITE_DIR.glob("tiny-*"):  # earlier runs' copies
        if time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    path = SUITE_DIR / f"tiny-{uid}"
    path.mkdir(exist_ok=True)
    return path


@functools.lru_cache(maxsize=None)
def tiny_model():
    """``(params, dataset, config, history)`` of the tiny model. Under xdist the first worker
    to ask trains it and saves it; the others wait for it and load the same arrays (the
    training is ~10 s of a 2-minute tier)."""
    ds = data.load_dataset(data.DEMO_PATH, TINY_CONFIG.num_samples)
    shared = _run_dir()
    if shared is None:
        params, history = train.fit(TINY_CONFIG, ds, log=None)
        return params, ds, TINY_CONFIG, history
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        ckpt = shared / "ckpt"
        if checkpoint.is_checkpoint(ckpt):
            params, _ = checkpoint.load(ckpt)
            params = jax.tree.map(jnp.asarray, params)
            history = json.loads((shared / "history.json").read_text())
        else:
            params, history = train.fit(TINY_CONFIG, ds, log=None)
            (shared / "history.json").write_text(json.dumps(history))
            checkpoint.save(ckpt, params, {})
    return params, ds, TINY_CONFIG, history


def save_tiny_checkpoint(directory: Path) -> Path:
    """Write the tiny model as ``minis2s train`` would: a checkpoint and its history."""
    params, ds, config, history = tiny_model()
    trained.save_trained(directory, params, config, ds)
    run.write_history(Path(directory) / run.HISTORY_FILE, history)
    return Path(directory)
