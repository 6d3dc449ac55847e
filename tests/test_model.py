"""Model: shapes, NumPy reference, encode/decode_step consistency, float64 finite differences."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from minis2s import losses, model
from minis2s.train import loss_fn
from tests import reference as ref

CFG = model.ModelConfig(num_encoder_tokens=6, num_decoder_tokens=7, latent_dim=5)


def batch(rng, b=3, t_enc=4, t_dec=5, cfg=CFG):
    dec = rng.integers(0, cfg.num_decoder_tokens, (b, t_dec)).astype(np.int32)
    return {
        "encoder_tokens": rng.integers(0, cfg.num_encoder_tokens, (b, t_enc)).astype(np.int32),
        "decoder_tokens": dec,
        "target_tokens": np.concatenate([dec[:, 1:], np.zeros((b, 1), np.int32)], 1),
        "weight": np.ones(b, np.float32),
    }


def test_param_tree_shapes():
    p = model.init_params(jax.random.PRNGKey(0), CFG)
    shapes = jax.tree.map(lambda a: a.shape, p)
    assert shapes == {
        "encoder": {"kernel": (6, 20), "recurrent_kernel": (5, 20), "bias": (20,)},
        "decoder": {"kernel": (7, 20), "recurrent_kernel": (5, 20), "bias": (20,)},
        "dense": {"kernel": (5, 7), "bias": (7,)},
    }
    np.testing.assert_array_equal(p["dense"]["bias"], 0.0)


def test_apply_matches_numpy_reference():
    rng = np.random.default_rng(0)
    p = model.init_params(jax.random.PRNGKey(1), CFG)
    bt = batch(rng)
    probs = model.apply(p, bt["encoder_tokens"], bt["decoder_tokens"])
    assert probs.shape == (3, 5, 7)
    want = ref.seed_model(
        p, np.eye(6)[bt["encoder_tokens"]], np.eye(7)[bt["decoder_tokens"]]
    )
    np.testing.assert_allclose(probs, want, atol=1e-6)
    loss = losses.categorical_crossentropy(probs, bt["target_tokens"])
    assert float(loss) == pytest.approx(ref.keras_crossentropy(want, np.eye(7)[bt["target_tokens"]]), rel=1e-5)


def test_decode_steps_equal_teacher_forced_apply():
    rng = np.random.default_rng(1)
    p = model.init_params(jax.random.PRNGKey(2), CFG)
    bt = batch(rng)
    probs = model.apply(p, bt["encoder_tokens"], bt["decoder_tokens"])
    state = model.encode(p, bt["encoder_tokens"])
    for t in range(bt["decoder_tokens"].shape[1]):
        step_probs, state = model.decode_step(p, bt["decoder_tokens"][:, t], state)
        np.testing.assert_allclose(step_probs, probs[:, t], atol=1e-6)


def test_full_model_gradient_matches_finite_differences_float64():
    """Every leaf of the full model loss gradient vs central differences, float64."""
    rng = np.random.default_rng(2)
    bt = batch(rng, b=2, t_enc=3, t_dec=4)
    with jax.enable_x64(True):
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init_params(jax.random.PRNGKey(3), CFG))
        bt = {k: jnp.asarray(v, jnp.float64 if k == "weight" else jnp.int32) for k, v in bt.items()}
        f = jax.jit(lambda q: loss_fn(q, bt)[0])
        grads = jax.grad(f)(p)
        eps = 1e-6
        # every parameter's +eps and -eps in one vectorised program, not one call per entry
        flat, unravel = ravel_pytree(p)
        moved = jax.jit(jax.vmap(lambda e: f(unravel(flat + e))))
        steps = eps * jnp.eye(flat.size, dtype=jnp.float64)
        fds = unravel((moved(steps) - moved(-steps)) / (2 * eps))
        for layer in p:
            for name, leaf in p[layer].items():
                g = np.asarray(grads[layer][name]).ravel()
                fd = np.asarray(fds[layer][name]).ravel()
                # Relative to the leaf's largest gradient entry: entries near zero would
                # otherwise compare finite-difference round-off (~1e-10) with itself.
                rel = np.abs(g - fd).max() / np.abs(g).max()
                print(f"{layer}/{name}: max rel err {rel:.2e}, max abs err {np.abs(g - fd).max():.2e}")
                assert rel < 1e-6, f"{layer}/{name}: max relative error {rel:.2e}"
                assert np.abs(g).max() > 0, f"{layer}/{name}: gradient is all zero"
