"""Time the Bahdanau training gradient with and without rematerialising the decoder's steps.

``minis2s.models.bahdanau.apply(remat=True)`` (the default) keeps only the matmul results of
each decoder step for the backward pass and recomputes the element-wise work (the ``tanh``
of the ``(B, Te, A)`` scores, the softmax, the gates); ``remat=False`` stores all of it.
This script jits ``value_and_grad`` of the training loss for both on the benchmark's shapes
(random tokens; B 64, T_enc 16, T_dec 59, V_in 70, V_out 93, latent 256), checks the two
gradients agree, and times them interleaved (CPU and wall ms per call, medians).

    python scripts/bahdanau_remat.py [--rounds 6] [--calls 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from minis2s import cells, train
from minis2s.models import bahdanau
from minis2s.models.base import ModelConfig


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def random_batch(rng: np.random.Generator, b: int, t_enc: int, t_dec: int, v_in: int, v_out: int) -> dict:
    return {
        "encoder_tokens": jnp.asarray(rng.integers(0, v_in, (b, t_enc))),
        "encoder_lengths": jnp.asarray(rng.integers(2, t_enc + 1, b)),
        "decoder_tokens": jnp.asarray(rng.integers(0, v_out, (b, t_dec))),
        "target_tokens": jnp.asarray(rng.integers(0, v_out, (b, t_dec))),
        "weight": jnp.ones(b, jnp.float32),
    }


def gradient_fn(cell, remat: bool):
    apply = lambda params, batch: bahdanau.apply(params, batch, cell, remat=remat)  # noqa: E731
    return jax.jit(jax.value_and_grad(lambda params, batch: train.loss_fn(params, batch, apply)[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=5, help="calls per timing")
    args = p.parse_args()
    b, t_enc, t_dec, v_in, v_out, h = 64, 16, 59, 70, 93, 256
    cell = cells.get("lstm", "bptt")
    config = ModelConfig(v_in, v_out, h, model="bahdanau", cell="lstm")
    params = bahdanau.init_params(jax.random.key(0), config, cell)
    batch = random_batch(np.random.default_rng(0), b, t_enc, t_dec, v_in, v_out)
    fns = {"stored": gradient_fn(cell, False), "remat": gradient_fn(cell, True)}
    (l0, g0), (l1, g1) = (jax.block_until_ready(f(params, batch)) for f in fns.values())  # compile
    worst = max(float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(x))) for x, y in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
    print(f"loss {float(l0):.6f} / {float(l1):.6f}; largest gradient difference {worst:.1e} of the leaf's largest entry")
    times = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, f in fns.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            for _ in range(args.calls):
                jax.block_until_ready(f(params, batch))
            times[name].append(((cpu_seconds() - c0) / args.calls * 1e3, (time.perf_counter() - t0) / args.calls * 1e3))
    for name, ts in times.items():
        print(f"{name}: {statistics.median(t[0] for t in ts):.0f} ms CPU, {statistics.median(t[1] for t in ts):.0f} ms wall per call")
    print(f"remat / stored (CPU): {statistics.median(t[0] for t in times['remat']) / statistics.median(t[0] for t in times['stored']):.2f}")


if __name__ == "__main__":
    main()
