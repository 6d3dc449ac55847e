"""A new cell is one registry entry: a plain tanh RNN, written here and registered only for
these tests, trains every model through ``train.fit``; the Bahdanau fast path is chosen by
the cell's ``core``; the converter identifies cells by their shapes. And the compiled
training step is shared by fits that differ only in what the program does not depend on.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import cells, convert, data, models, train
from minis2s.lstm import glorot_uniform, orthogonal
from tests.conftest import TINY_PAIRS

# --------------------------------------------------------------------------- the toy cell
#   h_t = tanh(x_t W + h_{t-1} U + b),  W (D, H), U (H, H), b (H,); state (h,)


def toy_init(key, input_dim: int, units: int, dtype=jnp.float32) -> dict:
    k_w, k_u = jax.random.split(key)
    return {
        "kernel": glorot_uniform(k_w, (input_dim, units), dtype),
        "recurrent_kernel": orthogonal(k_u, (units, units), dtype),
        "bias": jnp.zeros((units,), dtype),
    }


def toy_core(params, zx_t, state):
    """The step after its input projection ``zx_t = x_t W + b``."""
    return (jnp.tanh(zx_t + state[0] @ params["recurrent_kernel"]),)


def toy_step(params, x, state):
    zx = params["kernel"][x] if jnp.issubdtype(x.dtype, jnp.integer) else x @ params["kernel"]
    return toy_core(params, zx + params["bias"], state)


def toy_zero_state(params, batch: int):
    u = params["recurrent_kernel"]
    return (jnp.zeros((batch, u.shape[0]), u.dtype),)


def toy_layer(params, inputs, initial_state=None):
    state = toy_zero_state(params, inputs.shape[0]) if initial_state is None else initial_state

    def step(s, x_t):
        s = toy_step(params, x_t, s)
        return s, s[0]

    state, hs = jax.lax.scan(step, state, jnp.swapaxes(inputs, 0, 1))  # (T, B, H)
    return jnp.swapaxes(hs, 0, 1), state


TOY = cells.Cell("toy", toy_init, toy_layer, toy_step, toy_zero_state, gates=1, core=toy_core)


@pytest.fixture
def toy():
    """``"toy"`` in the registry for one test; afterwards the registry and the caches that
    may hold a toy model are as before (no state leaks into other tests)."""
    assert "toy" not in cells.CELLS
    cells.CELLS["toy"] = {"autodiff": TOY, "bptt": TOY}
    try:
        yield TOY
    finally:
        del cells.CELLS["toy"]
        models.build.cache_clear()
        train._steps_for.cache_clear()


def tiny_dataset():
    return data.build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])


# --------------------------------------------------------------------------- a new cell


# the models built around a recurrent cell (the transformer has none, and refuses --cell)
RECURRENT_MODELS = [m for m in models.MODELS if "encoder/recurrent_kernel" in models.param_shapes(models.ModelConfig(2, 2, 1, m))]


@pytest.mark.slow
@pytest.mark.parametrize("model", RECURRENT_MODELS)
def test_a_registered_toy_cell_trains_every_model(toy, model):
    ds = tiny_dataset()
    v_in, v_out, h = len(ds.input_vocab), len(ds.target_vocab), 8
    config = train.Config(num_samples=None, batch_size=8, epochs=6, latent_dim=h, learning_rate=1e-2,
                          model=model, cell="toy")
    params, history = train.fit(config, ds, log=None)
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    shapes = {k: tuple(v.shape) for k, v in params["encoder"].items()}
    assert shapes == {"kernel": (v_in, h), "recurrent_kernel": (h, h), "bias": (h,)}  # the toy cell's, no gates
    dec_in = v_out + h if model == "bahdanau" else v_out  # Bahdanau's decoder also reads the context
    assert params["decoder"]["kernel"].shape == (dec_in, h)


def test_the_bahdanau_fast_path_is_the_cells_choice(toy):
    """With a core the decoder takes the projected path (P = H_enc W_c formed, no concatenation),
    without one the plain path; both compute the same probabilities (float64)."""
    config = models.ModelConfig(5, 6, 4, "bahdanau", "toy")
    fast = models.build(config)
    plain = models.MODELS["bahdanau"](config, dataclasses.replace(TOY, core=None))
    rng = np.random.default_rng(0)
    batch = {
        "encoder_tokens": jnp.asarray(rng.integers(0, 5, (3, 4)), jnp.int32),
        "encoder_lengths": jnp.asarray([4, 2, 1], jnp.int32),
        "decoder_tokens": jnp.asarray(rng.integers(0, 6, (3, 5)), jnp.int32),
    }
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), fast.init(jax.random.PRNGKey(1)))
        memory, _ = fast.encode(params, batch["encoder_tokens"], batch["encoder_lengths"])
        assert "projected" in memory
        assert "projected" not in plain.encode(params, batch["encoder_tokens"], batch["encoder_lengths"])[0]
        np.testing.assert_allclose(fast.apply(params, batch), plain.apply(params, batch), rtol=0, atol=1e-12)


def test_cells_are_identified_by_their_shapes(toy):
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    for name in ("lstm", "gru", "toy"):
        params = jax.eval_shape(models.build(models.ModelConfig(5, 6, 4, cell=name)).init, key)  # shapes only
        assert cells.of_params(params["encoder"]).name == name
        assert convert.cell_of(params) == name
    assert cells.of_params({"recurrent_kernel": np.zeros((4, 7)), "bias": np.zeros(7)}) is None
    assert cells.by_keras_layer("GRU").name == "gru" and cells.keras_layers() == ("LSTM", "GRU")  # the toy has none


def test_the_registry_is_clean_without_the_fixture():
    assert "toy" not in cells.CELLS


# --------------------------------------------------------------------------- one ModelConfig builder


def test_config_for_reads_a_config_or_a_manifest_dict():
    ds = tiny_dataset()
    config = train.Config(latent_dim=7, model="luong", cell="gru", attention_scale=True)
    want = models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 7, "luong", "gru", True)
    assert models.config_for(config, ds.input_vocab, ds.target_vocab) == want
    assert train.model_config(config, ds) == want
    assert models.config_for(config.to_dict(), list(ds.input_vocab.chars), list(ds.target_vocab.chars)) == want
    assert models.config_for({"latent_dim": 3}, "ab", "abc") == models.ModelConfig(2, 3, 3)  # an old manifest
    with pytest.raises(KeyError):
        models.config_for({}, "ab", "abc")


# --------------------------------------------------------------------------- the compiled step cache


@pytest.mark.slow
def test_fits_differing_only_in_epochs_seed_or_ratio_share_the_compiled_step():
    ds = tiny_dataset()
    base = train.Config(num_samples=None, batch_size=4, epochs=1, latent_dim=3, learning_rate=3e-3,
                        teacher_forcing=0.9)
    mcfg = train.model_config(base, ds)
    train.fit(base, ds, log=None)
    misses = train._steps_for.cache_info().misses
    epoch_fn = train._compiled_steps(base, mcfg)[2]  # the jitted one-call epoch
    compiled = epoch_fn._cache_size()
    for other in (dataclasses.replace(base, epochs=2, seed=5), dataclasses.replace(base, teacher_forcing=0.4),
                  dataclasses.replace(base, validation_split=0.25)):
        train.fit(other, ds, log=None)
        assert train._compiled_steps(other, mcfg)[2] is epoch_fn
    assert train._steps_for.cache_info().misses == misses
    assert epoch_fn._cache_size() == compiled  # nothing was traced again
    # what the program depends on does miss: the learning rate, the gradient, scheduled sampling on/off
    for other in (dataclasses.replace(base, learning_rate=1e-3), dataclasses.replace(base, grad="autodiff"),
                  dataclasses.replace(base, teacher_forcing=1.0)):
        assert train._compiled_steps(other, mcfg)[2] is not epoch_fn
