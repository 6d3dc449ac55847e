"""``train --warm-start``: a new run from a checkpoint without optimizer state (a shipped model).

- :func:`minis2s.warmstart.rebuild` leaves RMSprop's ``v`` equal to the float64 recursion
  ``v = rho v + (1 - rho) g^2`` over hand-computed gradients of a least-squares loss;
- a warm start continues the checkpoint's epochs, history and shuffles, and its rebuilt ``v``
  has the size of the state the run really had (not zero, as a fresh optimizer's);
- the CLI: from a shipped folder into a new ``--out``, and one-line errors for what cannot be.

Only the first is in the fast tier: the others train a run first.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minis2s import data, pretrained, run, train, warmstart
from tests import _cli, test_resume

# test_resume's settings (one compilation of the step for both modules), two epochs
CFG = dataclasses.replace(test_resume.CFG, epochs=2)
CLI_ARGS = [*test_resume.CLI_ARGS, "--quiet"]


def _nu(opt_state):
    """RMSprop's running mean of squared gradients inside an optax state."""
    found = [s.nu for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: hasattr(s, "nu")) if hasattr(s, "nu")]
    assert len(found) == 1
    return found[0]


def test_rebuild_is_the_rmsprop_recursion_over_the_batches_gradients():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 2))
    batches = [{"x": rng.normal(size=(5, 3)), "y": rng.normal(size=(5, 2))} for _ in range(6)]

    def loss(params, batch):  # sum of squares: dL/dW = 2 x^T (x W - y)
        r = batch["x"] @ params["W"] - batch["y"]
        return jnp.sum(r * r), None

    rho = 0.9
    opt = optax.rmsprop(1e-3, decay=rho, eps=1e-7)
    params = {"W": jnp.asarray(W, jnp.float32)}
    state, used = warmstart.rebuild(opt, params, iter(batches), loss, count=4)
    assert used == 4
    expected = np.zeros_like(W)
    for b in batches[:4]:  # float64, by hand
        g = 2 * b["x"].T @ (b["x"] @ W - b["y"])
        expected = rho * expected + (1 - rho) * g**2
    np.testing.assert_allclose(np.asarray(_nu(state)["W"]), expected, rtol=1e-5)
    _, used = warmstart.rebuild(opt, params, iter(batches), loss)  # fewer batches than BATCHES: all of them
    assert used == len(batches) < warmstart.BATCHES


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset(data.DEMO_PATH, CFG.num_samples)


@pytest.fixture(scope="module")
def two_epochs(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    train.fit(CFG, ds, log=None, out=out)
    return out


@pytest.mark.slow
def test_warm_start_continues_the_record_with_an_optimizer_state_of_the_right_size(ds, two_epochs, tmp_path):
    _, real, _ = train.load_state(run.epoch_dir(two_epochs, 2), ds)
    config, state, _ = train.load_state(run.epoch_dir(two_epochs, 2), ds, optimizer_state=False)
    assert state.opt_state is None and state.epoch == 2
    lines = []
    train.fit(dataclasses.replace(config, epochs=3), ds, log=lines.append, out=tmp_path, state=state)
    # 32 training pairs in batches of 8: 4 batches an epoch, all used
    assert lines[0] == "Warm start: optimizer state rebuilt from the gradients of 4 batches (parameters unchanged)"
    _, after, _ = train.load_state(run.epoch_dir(tmp_path, 3), ds)
    assert after.epoch == 3
    for key in ("loss", "val_loss", "accuracy"):
        assert after.history[key][:2] == real.history[key]
    # the rebuilt averages (one more epoch on) are the size the run's own were, not 0
    rebuilt, had = (np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(_nu(s.opt_state))])
                    for s in (after, real))
    used = had > 0  # rows of characters the data never shows get no gradient
    assert used.mean() > 0.5
    assert 0.2 < float(np.median(rebuilt[used] / had[used])) < 5


@pytest.mark.slow
def test_cli_warm_starts_a_shipped_model_into_a_new_run(two_epochs, tmp_path):
    shipped = pretrained.export(two_epochs, "tiny", root=tmp_path / "shipped")
    assert not (shipped / "optimizer.npz").exists()
    out = tmp_path / "on"
    rc, stdout, err = _cli.run(["train", *CLI_ARGS, "--warm-start", str(shipped), "--out", str(out), "--epochs", "3"])
    assert rc == 0, err
    assert f"from {shipped}: 2 of 3 epochs done" in stdout
    assert run.latest_checkpoint(out).name == "epoch-0003"
    manifest = json.loads((run.epoch_dir(out, 3) / "manifest.json").read_text())
    assert manifest["warm_start"] == {"from": str(shipped.resolve()), "epoch": 2}
    assert len(manifest["training"]["history"]["loss"]) == 3
    rc, _, err = _cli.run(["train", "--resume", str(out), "--epochs", "4", "--data", str(data.DEMO_PATH), "--quiet"])
    assert rc == 0, err  # a resumed warm start keeps its record, and ships it by folder name
    assert json.loads((run.epoch_dir(out, 4) / "manifest.json").read_text())["warm_start"]["from"] == str(shipped.resolve())
    again = pretrained.export(out, "again", root=tmp_path / "shipped")
    assert json.loads((again / "manifest.json").read_text())["warm_start"] == {"from": "tiny", "epoch": 2}
    # from a run directory: the record names the checkpoint it resolved to, not the directory
    from_run = tmp_path / "from-run"
    rc, _, err = _cli.run(["train", *CLI_ARGS, "--warm-start", str(two_epochs), "--out", str(from_run), "--epochs", "3"])
    assert rc == 0, err
    record = json.loads((run.epoch_dir(from_run, 3) / "manifest.json").read_text())["warm_start"]
    assert record == {"from": str(run.epoch_dir(two_epochs, 2).resolve()), "epoch": 2}


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--resume", "X"], "--warm-start starts a new run from a checkpoint, --resume continues one"),
    ([], "--warm-start CHECKPOINT needs --out DIR"),
    (["--out", "NEW", "--epochs", "2"], "has 2 epochs already; pass --epochs N with N > 2"),
    (["--out", "NEW", "--latent-dim", "16"], "--latent-dim 16 differs from the run being resumed (--latent-dim 8)"),
    (["--out", "OLD"], "already holds a training run (epoch-0002)"),
])
def test_cli_refuses_in_one_line(two_epochs, tmp_path, extra, message):
    extra = [str(tmp_path / "new") if a == "NEW" else str(two_epochs) if a == "OLD" else a for a in extra]
    rc, _, err = _cli.run(["train", *CLI_ARGS, "--warm-start", str(run.epoch_dir(two_epochs, 2)), *extra])
    assert rc != 0 and message in err, err
    assert len(err.strip().splitlines()) == 1
