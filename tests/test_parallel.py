"""Data parallelism (minis2s/parallel.py), length buckets and masked loss (minis2s/bucketing.py).

Multi-device runs happen in a subprocess: ``XLA_FLAGS=--xla_force_host_platform_device_count``
must be set before JAX initialises, and this pytest process has one CPU device.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests._cli import run as cli_run
from tests.conftest import ROOT, TINY_PAIRS, assert_trees_equal, child_env, run_cli
from minis2s import bucketing, checkpoint, parallel, train, trained
from minis2s.data import PAD, build_dataset, load_dataset
from minis2s.model import ModelConfig, apply, init_params

# --------------------------------------------------------------------------- several devices

# Train the same tiny model on 1 device and on 4 (the seed's batches for 2 epochs; buckets,
# masked loss and a batch of 6 rows, which 4 devices cannot split evenly, for 1 epoch; each
# attention model for 1 epoch) and print the largest parameter differences as JSON.
_EQUIVALENCE = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from minis2s import models, parallel, train
    from minis2s.data import load_dataset

    assert jax.local_device_count() == 4, jax.local_devices()
    ds = load_dataset(sys.argv[1], 48)
    out = {}
    cases = {"plain/8": (8, 2, {}), "bucket_mask/6": (6, 1, {"bucket": True, "mask_padding": True}),
             "luong/8": (8, 1, {"model": "luong"}), "bahdanau/8": (8, 1, {"model": "bahdanau"})}
    for case, (batch_size, epochs, kw) in cases.items():
        cfg = train.Config(batch_size=batch_size, epochs=epochs, latent_dim=8, seed=3, **kw)
        p1, h1 = train.fit(cfg, ds, log=None, mesh=parallel.make_mesh(1))
        p4, h4 = train.fit(cfg, ds, log=None, mesh=parallel.make_mesh(4))
        p0 = models.build(train.model_config(cfg, ds)).init(jax.random.split(jax.random.PRNGKey(3))[0])
        maxdiff = lambda a, b: max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))
        out[case] = {
            "max_param_diff": maxdiff(p1, p4),
            "param_change": maxdiff(p1, p0),
            "loss_1": h1["loss"], "loss_4": h4["loss"],
            "val_loss_1": h1["val_loss"], "val_loss_4": h4["val_loss"],
            "param_shardings": sorted({str(x.sharding.spec) for x in jax.tree.leaves(p4)}),
            "param_devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(p4)}),
        }
    mesh = parallel.make_mesh(4)
    b = parallel.shard_batch({"x": np.arange(24).reshape(8, 3)}, mesh)["x"]
    out["shard_shape"] = list(b.sharding.shard_shape(b.shape))
    print("RESULT" + json.dumps(out))
    """
)


# XLA's CPU collectives end the process when the devices' threads do not all reach an
# all-reduce within 40 s (xla_cpu_collective_call_terminate_timeout_seconds, default 40: the
# "Termination timeout ... of 40 seconds exceeded" of its rendezvous), which happened once on a
# loaded machine where 4 devices share 2 cores; 10 minutes instead, and the "stuck" warning
# after 2 minutes instead of 20 s (flag names as jaxlib 0.10 accepts them in XLA_FLAGS).
PATIENT_COLLECTIVES = ("--xla_cpu_collective_call_terminate_timeout_seconds=600 "
                       "--xla_cpu_collective_call_warn_stuck_timeout_seconds=120")


@pytest.fixture(scope="module")
def four_devices():
    env = child_env(JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4 "
                        + PATIENT_COLLECTIVES).strip()
    r = subprocess.run(
        [sys.executable, "-c", _EQUIVALENCE, str(ROOT / "minis2s" / "demo" / "pairs.txt")],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain/8", "bucket_mask/6", "luong/8", "bahdanau/8"])
def test_one_and_four_devices_train_the_same_parameters(four_devices, case):
    r = four_devices[case]
    # docs/scaling.md measures differences of about 3e-8 (the all-reduce sums the per-device
    # gradients in another order); 1e-6 leaves a margin of 30x for other CPUs' rounding and still
    # fails on a real error (one device's share counted twice or not at all moves parameters by
    # ~1e-3, param_change below).
    assert r["max_param_diff"] < 1e-6, r
    assert r["param_change"] > 1e-3, r  # training did move them: the comparison means something
    np.testing.assert_allclose(r["loss_4"], r["loss_1"], rtol=1e-5)
    np.testing.assert_allclose(r["val_loss_4"], r["val_loss_1"], rtol=1e-5)
    # Parameters stay whole on every device.
    assert r["param_shardings"] == ["P()"] and r["param_devices"] == [4]


@pytest.mark.slow
def test_batches_are_split_along_the_batch_dimension(four_devices):
    assert four_devices["shard_shape"] == [2, 3]


def test_indivisible_batch_is_filled_with_weight_zero_rows():
    mesh = parallel.make_mesh(1)
    assert parallel.padded_batch_size(6, mesh) == 6
    # The rounding itself, for a 4-device mesh shape (no devices needed to check it):
    fake = type("M", (), {"shape": {"data": 4}})()
    assert [parallel.padded_batch_size(b, fake) for b in (1, 4, 6, 8, 9)] == [4, 4, 8, 8, 12]
    ds = build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])
    b = next(bucketing.Batcher(ds, 6, rows=8)(np.arange(8)))
    np.testing.assert_array_equal(b["weight"], [1, 1, 1, 1, 1, 1, 0, 0])
    assert b["encoder_tokens"].shape[0] == 8


def test_shard_batch_refuses_rows_not_divisible_by_devices():
    fake = type("M", (), {"shape": {"data": 4}})()
    with pytest.raises(ValueError, match="not a multiple of 4 devices"):
        parallel.shard_batch({"x": np.zeros((6, 2))}, fake)


def test_more_devices_than_present_is_a_clear_cli_error(demo_path, tmp_path):
    # in-process (tests/_cli.py): this pytest process has one CPU device
    rc, _, err = cli_run(["train", "--data", str(demo_path), "--epochs", "1", "--latent-dim", "8",
                          "--devices", "99", "--out", str(tmp_path / "run")])
    assert rc == 2
    assert "--devices 99 asks for more devices than this process has" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- masked loss


@pytest.fixture
def tiny():
    return build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])


def test_masked_loss_matches_a_hand_computation(tiny):
    params = init_params(jax.random.PRNGKey(0), ModelConfig(len(tiny.input_vocab), len(tiny.target_vocab), 8))
    batch = next(bucketing.Batcher(tiny, 8, mask_padding=True)(np.arange(8)))
    batch["weight"][5:] = 0.0  # three rows do not count
    loss, metrics = jax.jit(train.loss_fn)(params, batch)

    probs = np.asarray(jax.jit(apply)(params, batch["encoder_tokens"], batch["decoder_tokens"]), np.float64)
    ce, hits, count = 0.0, 0.0, 0
    for b in range(5):
        french = tiny.target_texts[b][1:]  # the characters to predict, end token included
        for t, char in enumerate(french):
            k = tiny.target_vocab.index[char]
            assert batch["target_tokens"][b, t] == k
            p = probs[b, t] / probs[b, t].sum()
            ce -= np.log(np.clip(p[k], 1e-7, 1 - 1e-7))
            hits += float(np.argmax(probs[b, t]) == k)
            count += 1
    assert float(metrics["count"]) == count == sum(len(t) - 1 for t in tiny.target_texts[:5])
    np.testing.assert_allclose(float(loss), ce / count, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["correct_sum"]), hits, rtol=1e-6)
    # The seed's loss counts padding positions too, so it differs.
    del batch["mask"]
    assert abs(float(jax.jit(train.loss_fn)(params, batch)[0]) - ce / count) > 1e-3


def test_mask_marks_spaces_inside_the_sentence_as_real(tiny):
    # "Va !" holds a space, the pad character: the mask comes from lengths, not from tokens.
    m = bucketing.target_mask(np.array([len("\tVa !\n")]), 8)
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 1, 0, 0, 0]])


# --------------------------------------------------------------------------- buckets


def test_width_ladder():
    np.testing.assert_array_equal(bucketing.width_ladder(20), [8, 16, 20])
    np.testing.assert_array_equal(
        bucketing.width_ladder(300), [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 300]
    )
    assert bucketing.encoder_pad_width(9, 300) == 16 and bucketing.encoder_pad_width(300, 300) == 300


def test_plain_batcher_equals_the_seed_batches(demo_path):
    ds = load_dataset(demo_path, None)
    perm = np.random.default_rng(0).permutation(len(ds))
    ours = list(bucketing.Batcher(ds, 16)(perm))
    seed = list(train.batches(ds, perm, 16))
    assert len(ours) == len(seed)
    assert_trees_equal(ours, seed)


def test_buckets_hold_every_row_once_and_cut_only_padding(demo_path):
    ds = load_dataset(demo_path, None)
    pad_in, pad_out = ds.input_vocab.index[PAD], ds.target_vocab.index[PAD]
    perm = np.random.default_rng(1).permutation(len(ds))
    batcher = bucketing.Batcher(ds, 16, rows=16, bucket=True, mask_padding=True, step=8)
    plan = batcher.plan(perm)
    seen = np.concatenate(plan)
    assert sorted(seen.tolist()) == list(range(len(ds)))  # every row once
    middles = [np.sort([np.flatnonzero(perm == i)[0] for i in idx])[(len(idx) - 1) // 2] for idx in plan]
    assert middles == sorted(middles)  # batches run in the order of their middle row
    shapes = set()
    for idx in plan:
        b = batcher.batch(idx)
        n = len(idx)
        e, d = b["encoder_tokens"].shape[1], b["decoder_tokens"].shape[1]
        shapes.add((e, d))
        for i, row in enumerate(idx):
            # One cell per batch: every row is padded to exactly its own width.
            assert e == bucketing.encoder_pad_width(len(ds.input_texts[row]), ds.max_encoder_seq_length)
            assert len(ds.target_texts[row]) <= d
            # The kept part is the row; the cut part was padding only.
            np.testing.assert_array_equal(b["encoder_tokens"][i], ds.encoder_tokens[row, :e])
            np.testing.assert_array_equal(b["decoder_tokens"][i], ds.decoder_tokens[row, :d])
            np.testing.assert_array_equal(b["target_tokens"][i], ds.target_tokens[row, :d])
            assert (ds.encoder_tokens[row, e:] == pad_in).all()
            assert (ds.decoder_tokens[row, d:] == pad_out).all()
            assert (ds.target_tokens[row, d:] == pad_out).all()
            assert b["mask"][i].sum() == len(ds.target_texts[row]) - 1
        np.testing.assert_array_equal(b["weight"], np.r_[np.ones(n), np.zeros(16 - n)])
    assert shapes == batcher.shapes(perm)
    n_enc = len(bucketing.width_ladder(ds.max_encoder_seq_length))
    n_dec = len(bucketing.width_ladder(ds.max_decoder_seq_length))
    assert 1 < len(shapes) <= n_enc * n_dec
    # Cutting pays: far fewer token positions than the seed's fixed shape.
    cut = sum(b["encoder_tokens"].size + b["decoder_tokens"].size for b in map(batcher.batch, plan))
    full = len(plan) * 16 * (ds.max_encoder_seq_length + ds.max_decoder_seq_length)
    assert cut < 0.8 * full


def test_cutting_the_decoder_leaves_the_masked_loss_unchanged(demo_path):
    """Decoder padding after the target cannot change the masked loss (the decoder is causal)."""
    ds = load_dataset(demo_path, 40)
    params = init_params(jax.random.PRNGKey(1), ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 8))
    cut = bucketing.Batcher(ds, 8, bucket=True, mask_padding=True)
    loss_fn = jax.jit(train.loss_fn)
    for idx in cut.plan(np.arange(len(ds)))[:2]:
        b = cut.batch(idx)
        full = dict(b)  # same encoder input, decoder at the seed's full length
        rows = np.concatenate([idx, np.full(8 - len(idx), idx[0])])
        full["decoder_tokens"] = ds.decoder_tokens[rows]
        full["target_tokens"] = ds.target_tokens[rows]
        full["mask"] = bucketing.target_mask(cut.target_lengths[rows], ds.max_decoder_seq_length)
        assert full["decoder_tokens"].shape[1] > b["decoder_tokens"].shape[1]
        l_cut, m_cut = loss_fn(params, b)
        l_full, m_full = loss_fn(params, full)
        np.testing.assert_allclose(float(l_cut), float(l_full), rtol=1e-6)
        np.testing.assert_allclose(float(m_cut["correct_sum"]), float(m_full["correct_sum"]), rtol=1e-6)


@pytest.mark.slow
def test_cli_bucket_and_mask_padding_train_and_are_recorded(demo_path, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--data", str(demo_path), "--num-samples", "40", "--batch-size", "8", "--epochs", "2", "--latent-dim", "8",
                "--bucket", "--mask-padding", "--devices", "1", "--show", "1", "--out", str(out),
                env={"JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    assert "Devices: 1 cpu" in r.stdout and "Epoch 2/2" in r.stdout and "Decoded sentence:" in r.stdout
    _, meta = trained.load(out)
    cfg = meta["config"]
    assert cfg["bucket"] is True and cfg["mask_padding"] is True


def test_distributed_settings_need_the_flag(demo_path, tmp_path):
    rc, _, err = cli_run(["train", "--data", str(demo_path), "--epochs", "1", "--process-id", "1",
                          "--out", str(tmp_path / "r")])
    assert rc == 2 and "need --distributed" in err


@pytest.mark.slow  # trains
def test_training_never_builds_one_hot_arrays(tiny, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("training built the seed's one-hot arrays")

    monkeypatch.setattr("minis2s.data.one_hot", refuse)
    monkeypatch.setattr("minis2s.data.Dataset.one_hot", refuse)
    cfg = train.Config(batch_size=8, epochs=1, latent_dim=4, mask_padding=True)
    _, h = train.fit(cfg, tiny, log=None)
    assert np.isfinite(h["loss"][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


_PORT_TAKEN = ("address already in use", "failed to add port", "eaddrinuse")


@pytest.mark.slow
def test_two_processes_train_what_one_device_trains(tmp_path, children):
    """The multi-host path for real: 2 processes x 2 CPU devices joined by jax.distributed."""
    common = ["--data", "demo", "--num-samples", "48", "--epochs", "1", "--latent-dim", "8", "--batch-size", "8",
              "--seed", "3", "--show", "0"]
    env = child_env(JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                    XLA_FLAGS="--xla_force_host_platform_device_count=2 " + PATIENT_COLLECTIVES)
    # The port is free when chosen but released before the coordinator binds it, so another
    # program may take it first: then the coordinator fails to bind, and the run is repeated on
    # another port. Both processes' groups are killed when the test ends, however it ends.
    for attempt in range(3):
        port = _free_port()
        procs = [
            children([sys.executable, "-m", "minis2s.cli", "train", *common, "--distributed", "--coordinator",
                      f"localhost:{port}", "--num-processes", "2", "--process-id", str(i), "--devices", "2",
                      "--out", str(tmp_path / f"multi-{attempt}")], env=env, cwd=ROOT)
            for i in range(2)
        ]
        first = procs[0].finish(timeout=600)
        if procs[0].returncode != 0 and any(s in first.lower() for s in _PORT_TAKEN):
            procs[1].kill()
            continue
        outs = [first, procs[1].finish(timeout=600)]
        break
    else:
        pytest.fail(f"the coordinator found its port taken 3 times:\n{first}")
    os.replace(tmp_path / f"multi-{attempt}", tmp_path / "multi")
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "Devices: 4 cpu (2 process(es)), 2 rows per device" in outs[0]
    assert "Saved checkpoint" in outs[0] and "Saved checkpoint" not in outs[1]  # one writer
    r = run_cli("train", *common, "--devices", "1", "--out", str(tmp_path / "one"), env={"JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    multi, _ = trained.load(tmp_path / "multi")
    one, _ = trained.load(tmp_path / "one")
    for name in checkpoint.flatten(one):
        np.testing.assert_allclose(checkpoint.flatten(multi)[name], checkpoint.flatten(one)[name], atol=1e-5)
