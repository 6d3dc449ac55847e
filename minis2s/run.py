"""The state of a training run and its round trip through a checkpoint.

:class:`TrainState` is everything a resumed run needs besides the config and the data;
:func:`save_state` writes it as ``out/epoch-NNNN`` (see :mod:`minis2s.checkpoint`) and
:func:`load_state` reads it back, verified.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass

import jax
import numpy as np
import optax

from . import checkpoint, models
from .config import HISTORY_KEYS, Config, make_optimizer, model_config
from .data import Dataset
from .models import Params


@dataclass(frozen=True)
class TrainState:
    """Everything a resumed run needs besides the config and the data.

    ``epoch`` counts finished epochs; the shuffle order of epoch ``e`` (0-based) is
    ``permutation(fold_in(shuffle_key, e))``, so the key and the epoch fix every future
    shuffle. ``best_val_loss``, ``best_epoch`` and ``wait`` are Keras'
    ``ModelCheckpoint(save_best_only=True)`` / ``EarlyStopping`` bookkeeping.
    """

    params: Params
    opt_state: optax.OptState
    epoch: int
    history: dict[str, list[float]]
    shuffle_key: np.ndarray  # (2,) uint32, a raw PRNG key
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0

    def training_meta(self) -> dict:
        """The JSON part of the state, as stored in a checkpoint manifest."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "shuffle_key": [int(x) for x in np.asarray(self.shuffle_key).ravel()],
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
        }


def initial_state(config: Config, data: Dataset, optimizer: optax.GradientTransformation, params: Params | None = None) -> TrainState:
    """Epoch 0: parameters from ``split(PRNGKey(seed))[0]`` (unless given), shuffles from ``[1]``."""
    init_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if params is None:
        params = models.build(model_config(config, data)).init(init_key)
    return TrainState(params, optimizer.init(params), 0, {k: [] for k in HISTORY_KEYS}, np.asarray(shuffle_key))


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 of the training texts, so a resumed run can tell it got the same data."""
    h = hashlib.sha256()
    for t in (*data.input_texts, *data.target_texts):
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def save_state(out: str | os.PathLike, state: TrainState, config: Config, data: Dataset, extra: dict | None = None) -> str:
    """Write ``out/epoch-NNNN`` (params, optimizer state, manifest), then keep only it and
    the best checkpoint, and update ``out/history.json``. Returns the checkpoint path."""
    meta = {
        **checkpoint.model_meta(config, data),
        "training": state.training_meta(),
        "data_sha256": data_fingerprint(data),
        **(extra or {}),
    }
    path = checkpoint.save(checkpoint.epoch_dir(out, state.epoch), state.params, meta, state.opt_state)
    checkpoint.prune(out, keep={state.epoch, state.best_epoch})
    checkpoint.write_history(os.path.join(out, checkpoint.HISTORY_FILE), state.history)
    return str(path)


def load_state(directory: str | os.PathLike, data: Dataset | None = None) -> tuple[Config, TrainState, dict]:
    """``(config, state, manifest)`` of a training checkpoint, verified (see
    :mod:`minis2s.checkpoint`); with ``data``, also check it is the data the run used."""
    # A run directory resumes from its newest checkpoint (checkpoint.load alone would pick
    # the best one, which is for translating, not for continuing).
    if not checkpoint.is_checkpoint(directory) and checkpoint.list_checkpoints(directory):
        directory = checkpoint.latest_checkpoint(directory)
    params, manifest = checkpoint.load(directory)
    try:
        config = Config.from_dict(manifest["config"])
        t = manifest["training"]
        if data is not None:
            if manifest.get("data_sha256") != data_fingerprint(data):
                raise checkpoint.CheckpointError(
                    f"{directory}: the data differs from the data this run was trained on "
                    f"({manifest.get('data', {}).get('path', 'path unknown')}, num_samples={config.num_samples}); "
                    "pass the same --data"
                )
        template = make_optimizer(config).init(params)
        opt_state = checkpoint.load_optimizer_state(directory, manifest, template)
        history = {k: [float(x) for x in t["history"][k]] for k in HISTORY_KEYS}
        state = TrainState(
            params=params,
            opt_state=opt_state,
            epoch=int(t["epoch"]),
            history=history,
            shuffle_key=np.asarray(t["shuffle_key"], dtype=np.uint32),
            best_val_loss=float(t["best_val_loss"]),
            best_epoch=int(t["best_epoch"]),
            wait=int(t["wait"]),
        )
    except (KeyError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{directory}: not a training checkpoint (manifest lacks {e})") from None
    if any(len(v) != state.epoch for v in history.values()):
        raise checkpoint.CheckpointError(f"{directory}: history length does not match epoch {state.epoch}")
    return config, state, manifest
