"""Resume, best checkpoint and early stopping.

- 2 epochs, then a resumed 2 epochs == an uninterrupted 4 epochs (parameters, optimizer
  state, history), through :func:`minis2s.train.fit` and through ``minis2s train --resume``;
- the kept "best" checkpoint and the early stop are the ones Keras'
  ``ModelCheckpoint(save_best_only=True)`` and ``EarlyStopping`` choose for the same
  history (Keras' own callbacks are the oracle; without Keras the test skips, or fails in CI).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from minis2s import cli, data, run, train
from minis2s.trained import load_trained
from tests.conftest import assert_trees_equal, require_module

# One optimizer setting for the whole module, so every fit reuses one compilation.
# lr=0.05 overfits the 32 training pairs within a few epochs (val_loss turns up).
CFG = train.Config(num_samples=40, batch_size=8, epochs=4, latent_dim=8, learning_rate=0.05)
CLI_ARGS = ["--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8", "--latent-dim", "8",
            "--learning-rate", "0.05", "--show", "0"]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset(data.DEMO_PATH, CFG.num_samples)


@pytest.fixture(scope="module")
def four_epochs(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    params, history = train.fit(CFG, ds, log=None, out=out)
    return params, history, out


def _without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def test_two_plus_two_epochs_equal_four(ds, tmp_path, four_epochs):
    params4, history4, out4 = four_epochs
    out = tmp_path / "run"
    train.fit(dataclasses.replace(CFG, epochs=2), ds, log=None, out=out)
    assert [e for e, _ in run.list_checkpoints(out)][-1] == 2
    config, state, _ = train.load_state(run.latest_checkpoint(out), ds)
    assert state.epoch == 2 and len(state.history["loss"]) == 2
    params, history = train.fit(dataclasses.replace(config, epochs=4), ds, log=None, out=out, state=state)

    assert_trees_equal(params, params4)
    assert _without_seconds(history) == _without_seconds(history4)
    assert len(history["seconds"]) == 4
    # the optimizer state on disk is the same too
    _, s_resumed, _ = train.load_state(run.epoch_dir(out, 4), ds)
    _, s_straight, _ = train.load_state(run.epoch_dir(out4, 4), ds)
    assert_trees_equal(s_resumed.opt_state, s_straight.opt_state)
    assert json.loads((out / "history.json").read_text())["loss"] == history4["loss"]


@pytest.mark.slow
def test_cli_resume_continues_exactly(tmp_path, four_epochs, capsys):
    params4, history4, _ = four_epochs
    out = tmp_path / "run"
    assert cli.main(["train", *CLI_ARGS, "--epochs", "2", "--out", str(out)]) == 0
    assert cli.main(["train", "--resume", str(out), "--epochs", "4", "--show", "0"]) == 0
    text = capsys.readouterr().out
    assert "Resuming" in text and "from epoch-0002: 2 of 4 epochs done" in text
    assert "Epoch 3/4" in text and "Epoch 1/4" not in text
    t = load_trained(run.latest_checkpoint(out))
    assert t.epoch == 4
    assert_trees_equal(t.params, params4)
    assert _without_seconds(t.manifest["training"]["history"]) == _without_seconds(history4)

    # nothing left to do
    assert cli.main(["train", "--resume", str(out), "--show", "0"]) == 0
    assert "Nothing to do: the run already has 4 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_resume_refuses_changed_settings_and_data(tmp_path, four_epochs, capsys):
    _, _, out = four_epochs
    assert cli.main(["train", "--resume", str(out), "--latent-dim", "16"]) == 2
    assert "--latent-dim 16 differs from the run being resumed (--latent-dim 8)" in capsys.readouterr().err

    assert cli.main(["train", "--resume", str(out), "--out", str(tmp_path)]) == 2
    assert "leave out --out" in capsys.readouterr().err

    other = tmp_path / "other.txt"
    other.write_text(data.DEMO_PATH.read_text(encoding="utf-8").replace("Go.", "Go!"), encoding="utf-8")
    assert cli.main(["train", "--resume", str(out), "--data", str(other), "--epochs", "5"]) == 2
    assert "the data differs from the data this run was trained on" in capsys.readouterr().err

    # a new run into a directory that already holds one is refused, not overwritten
    assert cli.main(["train", *CLI_ARGS, "--out", str(out)]) == 2
    assert f"{out} already holds a training run (epoch-0004); continue it with --resume" in capsys.readouterr().err

    assert cli.main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "missing: no such directory" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "holds no checkpoint (no epoch-NNNN directory); nothing to resume" in capsys.readouterr().err


def _keras_choices(history: dict, patience: int) -> tuple[int | None, list[int]]:
    """(stopped epoch, epochs saved by save_best_only), 1-based, from Keras' own callbacks."""
    keras = require_module("keras")  # the oracle; no hand-written stand-in when it is missing

    class Dummy:
        stop_training = False
        saved: list[str] = []

        def save(self, filepath, overwrite=True):
            self.saved.append(filepath)

    model = Dummy()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    best = keras.callbacks.ModelCheckpoint("m-{epoch}.keras", monitor="val_loss", save_best_only=True)
    for cb in (stop, best):
        cb.set_model(model)
        cb.on_train_begin()
    stopped = None
    for epoch in range(len(history["val_loss"])):
        logs = {k: history[k][epoch] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        best.on_epoch_end(epoch, logs)
        stop.on_epoch_end(epoch, logs)
        if model.stop_training:
            stopped = epoch + 1
            break
    return stopped, [int(p[2:-6]) for p in model.saved]


def test_best_checkpoint_and_early_stopping_match_keras(ds, tmp_path):
    out = tmp_path / "run"
    cfg = dataclasses.replace(CFG, epochs=12)
    lines = []
    params, history = train.fit(cfg, ds, log=lines.append, out=out, patience=2)
    n = len(history["val_loss"])
    assert n < cfg.epochs, f"val_loss never stalled for 2 epochs: {history['val_loss']}"
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    assert best_epoch < n

    keras_stop, keras_saved = _keras_choices(history, patience=2)
    assert keras_stop == n
    assert keras_saved[-1] == best_epoch
    assert lines[-1].startswith(f"Epoch {n}: early stopping, val_loss has not improved for 2 epochs")

    # only the last and the best checkpoint are left; the best holds that epoch's state
    assert [e for e, _ in run.list_checkpoints(out)] == [best_epoch, n]
    t = load_trained(out)  # a run directory loads its best checkpoint
    assert t.epoch == best_epoch
    assert t.manifest["training"]["history"]["val_loss"] == history["val_loss"][:best_epoch]
    assert_trees_equal(load_trained(run.latest_checkpoint(out)).params, params)

    # the same run without early stopping passes through the same best epoch's parameters
    straight, _ = train.fit(dataclasses.replace(cfg, epochs=best_epoch), ds, log=None)
    assert_trees_equal(t.params, straight)


def test_checkpoint_every(ds, tmp_path):
    out = tmp_path / "run"
    saved = []
    real = train.save_state

    def spy(out_, state, *a, **k):
        saved.append(state.epoch)
        return real(out_, state, *a, **k)

    train.save_state = spy
    try:
        _, history = train.fit(dataclasses.replace(CFG, epochs=7), ds, log=None, out=out, checkpoint_every=3)
    finally:
        train.save_state = real
    val = history["val_loss"]
    improved = [e + 1 for e in range(7) if val[e] < min(val[:e], default=np.inf)]
    assert saved == sorted(set(improved) | {3, 6, 7})


@pytest.mark.slow
def test_resume_and_translate_pass_over_a_damaged_newest_checkpoint(ds, tmp_path, four_epochs, capsys):
    """A flipped byte in the newest checkpoint of a run: ``--resume RUN`` continues from the
    newest good one with a one-line warning naming what it skipped; ``--resume`` of the damaged
    one is refused with a command that works; either way the lost epochs are redone exactly."""
    import shutil

    _, _, out4 = four_epochs
    out = tmp_path / "run"
    shutil.copytree(out4, out)
    (_, good), (_, newest) = run.list_checkpoints(out)  # a run always keeps two
    raw = bytearray((newest / "params.npz").read_bytes())
    raw[-200] ^= 0x01
    (newest / "params.npz").write_bytes(bytes(raw))
    explicit = tmp_path / "explicit"
    shutil.copytree(out, explicit)

    args = ["--data", str(data.DEMO_PATH), "--epochs", "4", "--show", "0"]
    assert cli.main(["train", "--resume", str(explicit / newest.name), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    command = f"minis2s train --resume {explicit / good.name}"
    assert len(err) == 1 and err[0].startswith(f"minis2s train: error: {explicit / newest.name}/params.npz: ")
    assert err[0].endswith(f"the checkpoint is damaged; the newest good checkpoint is {explicit / good.name}: {command}")
    assert cli.main([*command.split()[1:], *args]) == 0

    # a run resumed from the good one that then fails names that one as kept, not the damaged one
    assert cli.main(["train", "--resume", str(out), *args, "--learning-rate", "1e38"]) == 3
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"training stopped. The last good checkpoint is kept: {good}. Lower --learning-rate (or check the data) and train again.")

    assert cli.main(["train", "--resume", str(out), *args]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {newest}/params.npz: ")
    assert warnings[0].endswith(f"the checkpoint is damaged; using {good}")
    assert f"from {good.name}:" in captured.out

    _, straight, _ = train.load_state(run.epoch_dir(out4, 4), ds)
    for d in (out, explicit):
        _, redone, _ = train.load_state(run.epoch_dir(d, 4), ds)
        assert_trees_equal(redone.params, straight.params)
        assert_trees_equal(redone.opt_state, straight.opt_state)


def test_a_fault_after_an_unsaved_epoch_saves_that_epoch_first(ds, tmp_path, monkeypatch):
    """With --checkpoint-every 5, epoch 2 (no improvement) is not saved at its end; when
    epoch 3 turns NaN, epoch 2 is written before training stops, so no finished work is lost."""
    real = train._compiled_steps(dataclasses.replace(CFG, epochs=1, num_samples=None), train.model_config(CFG, ds))
    optimizer, train_step, train_epoch, eval_step = real
    calls = {"train": 0, "eval": 0}

    def nan_in_epoch_3(params, opt_state, data, index, weight):
        calls["train"] += 1
        params, opt_state, totals, step_losses = train_epoch(params, opt_state, data, index, weight)
        assert step_losses.shape == (4,)  # 32 training samples / batch 8
        if calls["train"] == 3:  # the second step of epoch 3 turns NaN
            step_losses = step_losses.at[1].set(np.nan)
            totals = {**totals, "loss_sum": totals["loss_sum"] * np.nan}
        return params, opt_state, totals, step_losses

    def worse_each_epoch(params, batch):
        calls["eval"] += 1
        m = eval_step(params, batch)
        return {**m, "loss_sum": m["loss_sum"] * 0 + calls["eval"] * m["count"]}  # val_loss rises

    monkeypatch.setattr(train, "_compiled_steps", lambda config, model_cfg: (optimizer, train_step, nan_in_epoch_3, worse_each_epoch))
    out = tmp_path / "run"
    with pytest.raises(train.NonFiniteLoss, match=r"loss became nan in epoch 3, step 2 of 4; training stopped. "
                                                   r"The last good checkpoint is kept: .*epoch-0002"):
        train.fit(dataclasses.replace(CFG, epochs=6), ds, log=None, out=out, checkpoint_every=5)
    assert [e for e, _ in run.list_checkpoints(out)] == [1, 2]  # 1 is the best by val_loss
    _, state, _ = train.load_state(run.epoch_dir(out, 2), ds)
    assert state.epoch == 2 and state.best_epoch == 1 and state.wait == 1
    # The run directory itself resumes from its newest checkpoint, not from the best one.
    _, state, _ = train.load_state(out, ds)
    assert state.epoch == 2
