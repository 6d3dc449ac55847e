"""Scaling benchmarks: devices, length buckets, the full corpus.

    python scripts/benchmarks/bench_scale.py devices  [--num-samples 10000] [--steps 20]
        steps/sec of the seed's train step on 1 and on 4 host devices (a subprocess with
        XLA_FLAGS=--xla_force_host_platform_device_count=4). On a CPU, 4 "devices" share
        the same cores, so this shows the cost of the split, not a speed-up.
    python scripts/benchmarks/bench_scale.py buckets  [--num-samples 10000]
        seconds per training epoch (2nd epoch: every shape already compiled) with the
        seed's batches, with --bucket, and with --bucket --mask-padding.
    python scripts/benchmarks/bench_scale.py curve    [--num-samples 2000] [--epochs 10]
        the learning curve of the four variants (seed, --bucket, --mask-padding, both),
        each in its own metric, then every final model scored on the same validation
        rows in one metric: loss and accuracy over real characters only.
    python scripts/benchmarks/bench_scale.py full     [--steps 10]
        --num-samples all: load time, resident memory, and sec/epoch of the seed's
        batches extrapolated from --steps timed steps (a full epoch is ~2,100 steps).

Run from the repository root with ``PYTHONPATH=$PWD``. Prints one JSON object per
measurement. Timings are wall-clock on whatever machine runs them; load matters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(**kw) -> None:
    print(json.dumps(kw), flush=True)


def time_steps(config, ds, mesh, indices, steps: int, bucket: bool = False, mask: bool = False):
    """Seconds per step over ``steps`` steps after one warm-up pass over the same batches."""
    import jax

    from minis2s import parallel, train
    from minis2s.bucketing import Batcher

    params = train.init_params(jax.random.PRNGKey(0), train.model_config(config, ds))
    opt = train.make_optimizer(config)
    opt_state = opt.init(params)
    step = train.make_train_step(opt)
    rows = parallel.padded_batch_size(config.batch_size, mesh)
    batcher = Batcher(ds, config.batch_size, rows, bucket=bucket, mask_padding=mask)
    batches = [parallel.shard_batch(b, mesh) for b in batcher(indices[: steps * config.batch_size])][:steps]
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    for b in batches:  # compile every shape
        params, opt_state, m = step(params, opt_state, b)
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for b in batches:
        params, opt_state, m = step(params, opt_state, b)
    jax.block_until_ready(params)
    return (time.perf_counter() - t0) / len(batches)


def cmd_devices(args) -> None:
    if os.environ.get("_BENCH_SCALE_CHILD") != "1":
        env = dict(os.environ, _BENCH_SCALE_CHILD="1", JAX_PLATFORMS="cpu")
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        sys.exit(subprocess.call([sys.executable, __file__, *sys.argv[1:]], env=env))
    import numpy as np

    from minis2s import parallel, train
    from minis2s.data import load_dataset

    ds = load_dataset(args.data, args.num_samples)
    config = train.Config(batch_size=args.batch_size, latent_dim=args.latent_dim)
    idx = np.random.default_rng(0).permutation(len(ds))
    for d in (1, 4):
        sec = time_steps(config, ds, parallel.make_mesh(d), idx, args.steps)
        emit(bench="devices", devices=d, steps_per_sec=round(1 / sec, 3), sec_per_step=round(sec, 4),
             batch_size=args.batch_size, latent_dim=args.latent_dim, num_samples=len(ds),
             T_enc=ds.max_encoder_seq_length, T_dec=ds.max_decoder_seq_length)


def cmd_buckets(args) -> None:
    from minis2s import parallel, train
    from minis2s.data import load_dataset

    ds = load_dataset(args.data, args.num_samples)
    mesh = parallel.make_mesh(1)
    results = {}
    for name, kw in {"seed": {}, "bucket": {"bucket": True}, "bucket+mask": {"bucket": True, "mask_padding": True}}.items():
        config = train.Config(num_samples=args.num_samples, batch_size=args.batch_size, latent_dim=args.latent_dim,
                              epochs=2, **kw)
        t0 = time.perf_counter()
        _, h = train.fit(config, ds, log=None, mesh=mesh)
        results[name] = h["seconds"][1]
        emit(bench="buckets", variant=name, sec_epoch2=round(h["seconds"][1], 2), sec_epoch1=round(h["seconds"][0], 2),
             total_sec=round(time.perf_counter() - t0, 2), loss=[round(x, 4) for x in h["loss"]],
             val_loss=[round(x, 4) for x in h["val_loss"]], num_samples=len(ds), latent_dim=args.latent_dim)
    emit(bench="buckets", speedup_bucket=round(results["seed"] / results["bucket"], 2),
         speedup_bucket_mask=round(results["seed"] / results["bucket+mask"], 2))


def cmd_curve(args) -> None:
    import numpy as np

    from minis2s import parallel, train
    from minis2s.bucketing import Batcher
    from minis2s.data import load_dataset

    ds = load_dataset(args.data, args.num_samples)
    mesh = parallel.make_mesh(1)
    split_at = train.split_train_val(len(ds), 0.2)
    val = np.arange(split_at, len(ds))
    variants = {"seed": {}, "bucket": {"bucket": True}, "mask": {"mask_padding": True},
                "bucket+mask": {"bucket": True, "mask_padding": True}}
    for name, kw in variants.items():
        config = train.Config(num_samples=args.num_samples, batch_size=args.batch_size, latent_dim=args.latent_dim,
                              epochs=args.epochs, **kw)
        params, h = train.fit(config, ds, log=None, mesh=mesh)
        # Real characters only, each model fed the encoder padding it was trained with (its
        # bucket width, or the seed's full width); the decoder cut does not change this metric.
        b = Batcher(ds, config.batch_size, bucket=config.bucket, mask_padding=True)
        real = train.evaluate(params, ds, val, config.batch_size, batch_fn=b)
        emit(bench="curve", variant=name, num_samples=len(ds), epochs=args.epochs, latent_dim=args.latent_dim,
             loss=[round(x, 4) for x in h["loss"]], accuracy=[round(x, 4) for x in h["accuracy"]],
             val_loss=[round(x, 4) for x in h["val_loss"]], val_accuracy=[round(x, 4) for x in h["val_accuracy"]],
             sec=[round(x, 2) for x in h["seconds"]],
             final_val_real_chars={k: round(v, 4) for k, v in real.items()})


def cmd_full(args) -> None:
    import numpy as np

    from minis2s import parallel, train
    from minis2s.bucketing import Batcher
    from minis2s.data import load_dataset

    t0 = time.perf_counter()
    ds = load_dataset(args.data, None)
    load_s = time.perf_counter() - t0
    cur, peak = rss_mb()
    token_mb = sum(a.nbytes for a in (ds.encoder_tokens, ds.decoder_tokens, ds.target_tokens)) / 2**20
    one_hot_gb = 4 * len(ds) * (ds.max_encoder_seq_length * len(ds.input_vocab)
                                + 2 * ds.max_decoder_seq_length * len(ds.target_vocab)) / 2**30
    emit(bench="full", stage="loaded", num_samples=len(ds), load_sec=round(load_s, 1), rss_mb=round(cur),
         peak_rss_mb=round(peak), token_arrays_mb=round(token_mb), seed_one_hot_would_be_gb=round(one_hot_gb, 1),
         T_enc=ds.max_encoder_seq_length, T_dec=ds.max_decoder_seq_length,
         V_in=len(ds.input_vocab), V_out=len(ds.target_vocab))
    config = train.Config(num_samples=None, batch_size=args.batch_size, latent_dim=args.latent_dim)
    split_at = train.split_train_val(len(ds), config.validation_split)
    steps_per_epoch = -(-split_at // config.batch_size)
    idx = np.random.default_rng(0).permutation(split_at)
    mesh = parallel.make_mesh(1)
    sec = time_steps(config, ds, mesh, idx, args.steps)
    cur, peak = rss_mb()
    emit(bench="full", stage="seed batches", sec_per_step=round(sec, 3), steps_timed=args.steps,
         steps_per_epoch=steps_per_epoch, train_sec_per_epoch_extrapolated=round(sec * steps_per_epoch),
         rss_mb=round(cur), peak_rss_mb=round(peak))
    b = Batcher(ds, config.batch_size, bucket=True)
    plan = b.plan(idx)
    cells = b.shapes(idx)
    positions = sum(int(b.enc_width[i].max() + b.dec_width[i].max()) for i in plan)
    emit(bench="full", stage="bucket plan", batches=len(plan), shapes=len(cells),
         timesteps_ratio_seed_over_bucket=round(len(plan) and steps_per_epoch * (ds.max_encoder_seq_length + ds.max_decoder_seq_length) / positions, 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["devices", "buckets", "curve", "full"])
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--num-samples", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    {"devices": cmd_devices, "buckets": cmd_buckets, "curve": cmd_curve, "full": cmd_full}[args.what](args)


if __name__ == "__main__":
    main()
