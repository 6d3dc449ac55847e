#!/usr/bin/env python
"""What a progress bar costs the one-call epoch: three ways to run the same training epoch,
side by side in one process, alternating, median of ``--rounds`` epochs each::

    python scripts/bench_progress.py                       # 10,000 shared pairs, the seed model
    python scripts/bench_progress.py --num-samples 2000 --rounds 3

- ``one-call``: ``train.make_train_epoch`` over all steps (what ``fit`` runs without a bar);
- ``chunks``: the same function over at most ``train.PROGRESS_CHUNKS`` consecutive slices of
  the steps, a :class:`minis2s.progress.ProgressBar` drawn (to a string) between them (what
  ``fit(progress=...)`` runs);
- ``callback``: one call whose ``lax.scan`` body calls ``jax.debug.callback`` with the
  running sums after every step, into the same bar.

The first epoch of each (compile included) is timed apart and not in the medians. All three
start every epoch from the same parameters and shuffle, and the script checks that chunks and
callback end with the parameters of one call, bit for bit.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minis2s import data, models, parallel, train  # noqa: E402
from minis2s.progress import ProgressBar  # noqa: E402

SHARED_FRA = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"


def callback_epoch(optimizer, apply_fn, report):
    """``make_train_epoch`` with ``jax.debug.callback(report, step, totals)`` in the scan body."""
    step = train._step(optimizer, apply_fn)

    def train_epoch(params, opt_state, data, index, weight):
        def body(carry, xs):
            params, opt_state, totals, i = carry
            idx, w = xs
            batch = {k: v[idx] for k, v in data.items()}
            batch["weight"] = w
            params, opt_state, metrics = step(params, opt_state, batch)
            totals = jax.tree.map(jnp.add, totals, metrics)
            jax.debug.callback(report, i + 1, totals)
            return (params, opt_state, totals, i + 1), metrics["loss_sum"]

        zero = jnp.zeros((), weight.dtype)
        totals = {"loss_sum": zero, "correct_sum": zero, "count": zero}
        carry = (params, opt_state, totals, jnp.zeros((), jnp.int32))
        (params, opt_state, totals, _), step_losses = jax.lax.scan(body, carry, (index, weight))
        return params, opt_state, totals, step_losses

    return jax.jit(train_epoch)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED_FRA))
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per variant (default 3)")
    args = ap.parse_args(argv)

    ds = data.load_dataset(args.data, args.num_samples)
    cfg = train.Config(num_samples=args.num_samples)  # the seed: batch 64, latent 256
    split_at = train.split_train_val(len(ds), cfg.validation_split)
    optimizer, train_step, train_epoch, _ = train._compiled_steps(cfg, train.model_config(cfg, ds))
    apply_fn = models.build(train.model_config(cfg, ds), cfg.grad).apply
    state = train.initial_state(cfg, ds, optimizer)
    run_epoch, _ = train._epoch_runner(cfg, ds, parallel.make_mesh(1), train_step, train_epoch)
    on_device = train.device_data(ds)
    sink = io.StringIO()
    bar = ProgressBar(sink)
    with_callback = callback_epoch(optimizer, apply_fn, lambda done, totals: bar(int(done), steps, totals))
    steps = -(-split_at // cfg.batch_size)

    def one_call(perm):
        return run_epoch(state.params, state.opt_state, perm, progress=None)

    def chunks(perm):
        return run_epoch(state.params, state.opt_state, perm, progress=bar)

    def callback(perm):
        index, weight = train.batch_plan(perm, cfg.batch_size)
        bar(0, steps, None)
        return with_callback(state.params, state.opt_state, on_device, index, weight)

    variants = {"one-call": one_call, "chunks": chunks, "callback": callback}
    times: dict[str, list[float]] = {name: [] for name in variants}
    first: dict[str, float] = {}
    ends: dict[str, object] = {}
    for r in range(args.rounds + 1):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(state.shuffle_key, r), split_at))
        order = list(variants) if r % 2 == 0 else list(reversed(variants))  # alternate who goes first
        for name in order:
            t0 = time.perf_counter()
            out = jax.block_until_ready(variants[name](perm))
            seconds = time.perf_counter() - t0
            if r == 0:
                first[name] = seconds
            else:
                times[name].append(seconds)
            ends[name] = out[:2]
        for name in ("chunks", "callback"):
            same = all(
                np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ends[name]), jax.tree.leaves(ends["one-call"]), strict=True)
            )
            assert same, f"{name}: parameters differ from one call in round {r}"

    base = statistics.median(times["one-call"])
    print(f"{len(ds)} pairs, {steps} steps per epoch, batch {cfg.batch_size}, latent {cfg.latent_dim}; "
          f"chunks of {train._chunks(steps)[0][1]} steps ({len(train._chunks(steps))} calls); "
          f"{args.rounds} timed epochs each, alternating; device {jax.devices()[0].platform}")
    print(f"{'variant':<10} {'first epoch s':>14} {'median s':>9} {'vs one-call':>12}   epochs s")
    for name in variants:
        med = statistics.median(times[name])
        print(f"{name:<10} {first[name]:>14.2f} {med:>9.3f} {100 * (med / base - 1):>+11.2f}%   "
              + " ".join(f"{t:.2f}" for t in times[name]))
    print("parameters after chunks and after callback equal one call bit for bit: yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
