"""Every number docs/math.md section 17 (the Transformer) states, computed here: the score
spread behind 1/sqrt(d_k), the FLOPs of a training step and their shares, the attention's
crossover length, and what the key/value cache saves when decoding.

The FLOP formulas written here are checked against an independent count: the matmuls
(``dot_general``) of the model's own jaxpr, for ``apply`` at two decoder lengths and for one
``decode_step``; and against ``scripts/benchmarks/torch_transformer.py: flop_counts``, the
count the benchmark's "% of peak" uses.
"""

from __future__ import annotations

import math
import re

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import models
from tests.conftest import load_script
from tests.test_lessons import MATH, stated

SECTION = MATH[MATH.index("## 17. The Transformer"):]
SEED = {"batch": 64, "t_enc": 16, "t_dec": 59, "v_out": 93}  # section 14's shapes (checked there)

if "transformer" not in models.MODELS:  # until the model is merged in
    pytest.skip("the transformer is not registered", allow_module_level=True)

DEFAULTS = {name: getattr(models.ModelConfig, name) for name in ("layers", "heads", "embed_dim", "ff_dim", "max_positions")}


def parts(t_enc: int, t_dec: int, v_out: int, layers: int, embed_dim: int, ff_dim: int, **_) -> dict[str, int]:
    """Forward matmul FLOPs of one sentence, by kind (17.6): attention scores and weighted sums,
    the four projections of each attention, the feed-forwards, the head."""
    d, f, te, td = embed_dim, ff_dim, t_enc, t_dec
    return {
        "attention": layers * (4 * te * te * d + 4 * td * td * d + 4 * td * te * d),
        "projections": layers * (8 * te * d * d + 8 * td * d * d + 4 * td * d * d + 4 * te * d * d),
        "feed_forward": layers * 4 * (te + td) * d * f,
        "head": 2 * td * d * v_out,
    }


def decode_step_flops(t_enc: int, v_out: int, layers: int, embed_dim: int, ff_dim: int, max_positions: int, **_) -> int:
    """One cached decoder step (one sentence): one position's projections, attention over the
    ``max_positions`` cache slots and the ``t_enc`` encoder positions, feed-forward, head."""
    d = embed_dim
    return layers * (8 * d * d + 4 * max_positions * d + 4 * d * d + 4 * t_enc * d + 4 * d * ff_dim) + 2 * d * v_out


def rerun_flops(t: int, t_enc: int, v_out: int, layers: int, embed_dim: int, ff_dim: int, **_) -> int:
    """The decoder re-run over a prefix of ``t`` positions (keras-io's way): its part of
    :func:`parts` at ``t_dec = t`` (the cross-attention's keys and values included)."""
    d = embed_dim
    return (layers * (8 * t * d * d + 4 * t * t * d + 4 * t * d * d + 4 * t_enc * d * d + 4 * t * t_enc * d
                      + 4 * t * d * ff_dim) + 2 * t * d * v_out)


def matmul_flops(jaxpr) -> int:
    """``2 * prod(output dims) * prod(contracted dims)`` summed over every ``dot_general`` of a
    (closed) jaxpr and the jaxprs nested in it (jit, custom_vjp, ...)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, ClosedJaxpr):
                    total += matmul_flops(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    total += matmul_flops(sub)
    return total


def _model(v_in: int, v_out: int):
    return models.build(models.ModelConfig(v_in, v_out, model="transformer"))


def test_formulas_count_the_models_own_matmuls():
    """The formulas above against the dot_generals of the model's jaxpr (default sizes, small
    vocabularies and lengths: shapes are all the trace needs)."""
    v_in, v_out, b = 11, 13, 2
    model = _model(v_in, v_out)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    bench = load_script("benchmarks/torch_transformer")
    for t_enc, t_dec in ((5, 7), (6, 3)):
        batch = {"encoder_tokens": jnp.zeros((b, t_enc), jnp.int32), "encoder_lengths": jnp.full((b,), t_enc, jnp.int32),
                 "decoder_tokens": jnp.zeros((b, t_dec), jnp.int32)}
        counted = matmul_flops(jax.make_jaxpr(model.apply)(params, batch).jaxpr)
        assert counted == b * sum(parts(t_enc, t_dec, v_out, **DEFAULTS).values()), (t_enc, t_dec)
        assert bench.flop_counts(b, t_enc, t_dec, v_out, **DEFAULTS)["eval_batch"] == counted
    memory, state = jax.eval_shape(model.encode, params, batch["encoder_tokens"], batch["encoder_lengths"])
    step = jax.make_jaxpr(model.decode_step)(params, memory, jnp.zeros((b,), jnp.int32), state).jaxpr
    assert matmul_flops(step) == b * decode_step_flops(6, v_out, **DEFAULTS)


def test_section_17_numbers():
    d, h, f, layers = DEFAULTS["embed_dim"], DEFAULTS["heads"], DEFAULTS["ff_dim"], DEFAULTS["layers"]
    d_k = d // h
    # the defaults the section names
    assert stated(r"the defaults \(\$n_L = (\d+)\$, \$n_h = (\d+)\$, \$d_m = (\d+)\$, \$d_\{ff\} = (\d+)\$\)", SECTION) == [
        str(layers), str(h), str(d), str(f)]
    # 17.2: the spread of an unscaled score, checked by sampling too
    assert stated(r"standard deviation \$\\sqrt\{d_k\}\$: \*\*([\d.]+)\*\* for the default \$d_k = (\d+)\$", SECTION) == [
        f"{math.sqrt(d_k):.2f}", str(d_k)]
    q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 20000, d_k))
    assert float(jnp.std(jnp.sum(q * k, -1))) == pytest.approx(math.sqrt(d_k), rel=0.03)
    # 17.6: where the attention overtakes the projections of a self-attention: 4 T^2 d > 8 T d^2
    crossover = next(t for t in range(1, 10_000) if 4 * t * t * d >= 8 * t * d * d)
    assert stated(r"up to \*\*(\d+)\*\* characters for the default \$d_m = (\d+)\$", SECTION) == [str(crossover), str(d)]
    # 17.6: the training step at the seed's shapes
    p = parts(SEED["t_enc"], SEED["t_dec"], SEED["v_out"], **DEFAULTS)
    forward = SEED["batch"] * sum(p.values())
    share = {kind: f"{100 * v / sum(p.values()):.1f}" for kind, v in p.items()}
    assert stated(r"one batch is \*\*([\d.]+)\*\* GFLOP: \*\*([\d.]+)%\*\* in the feed-forwards, \*\*([\d.]+)%\*\* in the "
                  r"projections, \*\*([\d.]+)%\*\* in the attention scores and weighted sums, \*\*([\d.]+)%\*\* in the head",
                  SECTION) == [f"{forward / 1e9:.2f}", share["feed_forward"], share["projections"], share["attention"], share["head"]]
    seed = 2 * SEED["batch"] * 256 * 4 * 256 * (SEED["t_enc"] + SEED["t_dec"]) + 2 * SEED["batch"] * SEED["t_dec"] * 256 * SEED["v_out"]
    assert stated(r"twice the forward, is \*\*([\d.]+)\*\* GFLOP, \*\*([\d.]+)\*\* times the seed", SECTION) == [
        f"{3 * forward / 1e9:.1f}", f"{forward / seed:.2f}"]
    assert stated(r"a step is \$2n_L = (\d+)\$ blocks deep instead of \$T_e \+ T_d = (\d+)\$", SECTION) == [
        str(2 * layers), str(SEED["t_enc"] + SEED["t_dec"])]
    # 17.6: decoding one sentence of T_d characters, re-run against cached
    td, te = SEED["t_dec"], SEED["t_enc"]
    rerun = sum(rerun_flops(t, te, SEED["v_out"], **DEFAULTS) for t in range(1, td + 1))
    cached = td * decode_step_flops(te, SEED["v_out"], **DEFAULTS) + layers * 4 * te * d * d  # + cross K, V once
    assert stated(r"\$T_d = (\d+)\$ characters at the defaults that is \*\*([\d.]+)\*\* GFLOP against \*\*([\d.]+)\*\* "
                  r"GFLOP, \*\*([\d.]+)\*\* times fewer", SECTION) == [
        str(td), f"{rerun / 1e9:.2f}", f"{cached / 1e9:.4f}", f"{rerun / cached:.1f}"]


def test_section_17_ends_with_exercises_and_hints():
    items = re.split(r"^\d+\. ", SECTION.split("**Exercises.**")[1], flags=re.M)[1:]
    assert len(items) >= 3 and all("*Hint:*" in item for item in items)


@pytest.mark.slow  # ~4 s: the figure's weights against a decode, a lesson not a module's oracle
def test_figure_weights_are_what_decoding_saw():
    """scripts/lessons/transformer_heads.py: the per-head weights of the teacher-forced pass,
    averaged over the heads, equal the cached decode_step's weights (its ``extra``) step by step;
    each head's rows sum to 1 over the real English characters."""
    heads = load_script("lessons/transformer_heads")
    config = models.ModelConfig(7, 9, model="transformer", layers=2, heads=2, embed_dim=8, ff_dim=12, max_positions=6)
    model = models.build(config)
    params = model.init(jax.random.PRNGKey(2))
    enc = jnp.array([[1, 2, 3, 4, 0], [5, 6, 0, 0, 0]], jnp.int32)
    lengths = jnp.array([5, 2], jnp.int32)
    dec = jnp.array([[1, 4, 2, 8], [1, 3, 3, 0]], jnp.int32)
    weights = jax.jit(heads.head_weights, static_argnums=1)(params, config, enc, lengths, dec)  # (B, n_h, T_d, T_e)
    weights = np.asarray(weights)
    assert weights.shape == (2, 2, 4, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert not np.any(weights[1, :, :, 2:])  # padding gets nothing
    memory, state = jax.jit(model.encode)(params, enc, lengths)
    step = jax.jit(model.decode_step)
    for t in range(dec.shape[1]):
        _, state, extra = step(params, memory, dec[:, t], state)
        np.testing.assert_allclose(extra["attention"], weights[:, :, t].mean(1), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_figure_script_draws_a_trained_transformer(tmp_path):
    """scripts/lessons/transformer_heads.py end to end: a tiny transformer trained for two epochs
    on the demo corpus, then one panel per head and their mean written as a PNG."""
    from tests.conftest import require_module, run_cli

    require_module("matplotlib")
    run = tmp_path / "run"
    done = run_cli("train", "--model", "transformer", "--data", "demo", "--epochs", "2", "--layers", "1",
                   "--heads", "2", "--embed-dim", "8", "--ff-dim", "16", "--out", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    heads = load_script("lessons/transformer_heads")
    out = tmp_path / "heads.png"
    assert heads.main([str(run), "--sentence", "I see.", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
