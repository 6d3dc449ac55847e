"""Every number docs/math.md and the README state about the data, the loss, the
initialisation and the optimizer, computed here from first principles and checked against
the text."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import data, losses, model, train
from tests.conftest import ROOT

MATH = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def in_docs(text: str, *docs: str) -> None:
    """``text`` appears in each doc (whitespace-insensitive)."""
    squash = lambda s: re.sub(r"\s+", " ", s)  # noqa: E731
    for doc in docs or (MATH,):
        assert squash(text) in squash(doc), text


# --------------------------------------------------------------------------- the baseline


def space_baseline(target_texts: list[str], length: int) -> tuple[float, float]:
    """``(padding share, all-spaces accuracy)`` over ``len(texts) * length`` target positions,
    counted on the strings (independent of the token arrays). A target text ``"\\tVa !\\n"``
    has ``len - 1`` real target positions (everything after ``"\\t"``), the rest is padding."""
    positions = len(target_texts) * length
    padding = sum(length - (len(t) - 1) for t in target_texts)
    inner_spaces = sum(t.count(" ") for t in target_texts)
    return padding / positions, (padding + inner_spaces) / positions


def test_space_baseline_counts_padding_and_inner_spaces():
    pad, acc = space_baseline(["\tVa !\n", "\tSalut.\n"], 8)
    assert pad == pytest.approx((3 + 1) / 16) and acc == pytest.approx((4 + 1) / 16)


def test_the_padding_baseline_of_the_seed_data(shared_fra):
    ds = data.load_dataset(shared_fra, 10_000)
    length = ds.max_decoder_seq_length
    assert (len(ds), length) == (10_000, 59)
    split_at = train.split_train_val(len(ds), 0.2)
    everything, val, training = (space_baseline(ds.target_texts[s], length)
                                 for s in (slice(None), slice(split_at, None), slice(None, split_at)))
    # the token arrays agree with the string count
    space = ds.target_vocab.index[data.PAD]
    assert np.mean(ds.target_tokens == space) == pytest.approx(everything[1], abs=1e-12)
    assert np.mean(ds.target_tokens[split_at:] == space) == pytest.approx(val[1], abs=1e-12)
    assert f"{everything[0]:.1%}" == "67.5%" and f"{everything[1]:.3f}" == "0.716"
    assert f"{val[0]:.1%}" == "64.5%" and f"{val[1]:.3f}" == "0.690"
    assert f"{training[0]:.1%}" == "68.2%" and f"{training[1]:.3f}" == "0.722"
    inner = everything[1] - everything[0]
    assert f"{inner:.1%}" == "4.1%"
    mean_french = np.mean([len(t) - 2 for t in ds.target_texts])
    assert f"{mean_french:.1f}" == "18.2"
    # val_accuracy 0.868 with every padding position right: share of real characters right
    real_right = (0.868 - val[0]) / (1 - val[0])
    assert round(100 * real_right) == 63
    for text in ("67.5%", "**0.716**", "64.5% padding", "**0.690**", "68.2% and 0.722", "4.1%", "18.2",
                 "$(0.868 - 0.645)/(1 - 0.645) = 63\\%$"):
        in_docs(text)
    for text in ("0.716", "67.5%", "63%"):
        in_docs(text, README)


# --------------------------------------------------------------------------- the clip


def test_clip_bounds_loss_ceiling_and_tie_gradient():
    hi = np.float32(1 - losses.EPSILON)
    assert float(hi) == 1 - 2**-23
    assert float(-np.log(hi)) == pytest.approx(1.19e-7, rel=1e-2)
    ceiling = -math.log(losses.EPSILON)
    assert f"{ceiling:.1f}" == "16.1"

    def clip_grad(x):
        return float(jax.grad(lambda p: jnp.clip(p, losses.EPSILON, 1 - losses.EPSILON))(jnp.float32(x)))

    assert clip_grad(0.5) == 1.0
    assert clip_grad(1 - 2**-23) == 0.5 and clip_grad(np.float32(losses.EPSILON)) == 0.5  # ties
    assert clip_grad(1 - 2**-24) == 0.0 and clip_grad(1.0) == 0.0 and clip_grad(1e-8) == 0.0
    # the whole per-position gradient vanishes at a clipped position, both terms included
    logits = jnp.array([[20.0, 0.0, 0.0]])  # p[0] > 1 - 1e-7 in float32
    g = jax.grad(lambda a: losses.per_position_crossentropy(jax.nn.softmax(a), jnp.array([0])).sum())(logits)
    assert np.all(np.asarray(g) == 0.0)
    g = jax.grad(lambda a: losses.per_position_crossentropy(jax.nn.softmax(a), jnp.array([0])).sum())(logits / 10)
    p = np.asarray(jax.nn.softmax(logits / 10))
    np.testing.assert_allclose(np.asarray(g), p - np.array([[1.0, 0, 0]]), atol=1e-6)  # p - e_y inside


# --------------------------------------------------------------------------- initialisation


def test_initialisation_numbers():
    assert f"{math.sqrt(6 / (70 + 1024)):.4f}" == "0.0741" and f"{math.sqrt(6 / (93 + 1024)):.4f}" == "0.0733"
    f0 = 1 / (1 + math.exp(-1))
    assert f"{f0:.3f}" == "0.731"
    assert f"{f0 ** 16:.1e}" == "6.7e-03"
    assert f"{0.5 ** 16:.1e}" == "1.5e-05"
    in_docs("$0.731^{16} = 6.7\\cdot10^{-3}$")
    init_key, _ = jax.random.split(jax.random.PRNGKey(0))
    params = model.init_params(init_key, model.ModelConfig(70, 93, 256))
    for layer in ("encoder", "decoder"):
        U = np.asarray(params[layer]["recurrent_kernel"], np.float64)  # (H, 4H)
        np.testing.assert_allclose(U @ U.T, np.eye(256), atol=1e-5)
        for k in range(4):
            s = np.linalg.svd(U[:, k * 256:(k + 1) * 256], compute_uv=False)
            assert f"{np.sqrt(np.mean(s ** 2)):.2f}" == "0.50"
            assert 0.85 < s.max() < 0.87 and s.min() < 0.01
            assert not np.allclose(U[:, k * 256:(k + 1) * 256] @ U[:, k * 256:(k + 1) * 256].T, np.eye(256), atol=0.1)


# --------------------------------------------------------------------------- RMSprop


def rmsprop_first_step(g: np.ndarray, lr=1e-3, rho=0.9, eps=1e-7) -> np.ndarray:
    """The closed form: ``v = (1 - rho) g^2``, ``dw = -lr g / sqrt(v + eps)``."""
    return -lr * g / np.sqrt((1 - rho) * g * g + eps)


def test_rmsprop_first_step_table():
    gs = np.array([1.0, 1e-2, 1e-3, 1e-4, 1e-5, 0.0])
    opt = train.make_optimizer(train.Config())
    w = {"w": jnp.zeros(len(gs))}
    updates, _ = opt.update({"w": jnp.asarray(gs, jnp.float32)}, opt.init(w), w)
    np.testing.assert_allclose(np.asarray(updates["w"]), rmsprop_first_step(gs), rtol=1e-5, atol=1e-12)
    table = ["3.2", "3.1", "2.2", "3.1", "3.2", "0"]
    exps = ["-3", "-3", "-3", "-4", "-5", None]
    for g, mant, e in zip(gs, table, exps):
        step = abs(rmsprop_first_step(g))
        if e is None:
            assert step == 0.0
        else:
            assert f"{step:.1e}" == f"{mant}e{e[0]}0{e[1]}"
    in_docs("| first step $\\lvert\\Delta w\\rvert$ | $3.2\\cdot10^{-3}$ | $3.1\\cdot10^{-3}$ | $2.2\\cdot10^{-3}$ | "
            "$3.1\\cdot10^{-4}$ | $3.2\\cdot10^{-5}$ | 0 |")
    assert f"{1e-3 / math.sqrt(0.1):.2e}" == "3.16e-03"
    in_docs("$\\eta/\\sqrt{0.1} = 3.16\\cdot10^{-3}$")


# --------------------------------------------------------------------------- size


def count_seed_parameters(v_in: int = 70, v_out: int = 93, h: int = 256) -> int:
    """By hand: two LSTMs ``D*4H + H*4H + 4H`` and the head ``H*V + V``."""
    return (v_in * 4 * h + h * 4 * h + 4 * h) + (v_out * 4 * h + h * 4 * h + 4 * h) + (h * v_out + v_out)


def test_seed_parameter_count():
    shapes = model.param_shapes(model.ModelConfig(70, 93, 256))
    counted = sum(math.prod(s) for s in shapes.values())
    assert counted == count_seed_parameters() == 717_149


def test_seed_flops_per_step_and_epoch():
    """scripts/bench.py's formula against a count from the parameter shapes: every recurrent
    kernel entry is one multiply-add per sample and step, every head entry one per sample and
    decoder step; backward is twice forward."""
    from tests.conftest import load_script
    flop_counts = load_script("bench").flop_counts
    shapes = model.param_shapes(model.ModelConfig(70, 93, 256))
    B, T_e, T_d = 64, 16, 59
    U = math.prod(shapes["encoder/recurrent_kernel"])
    assert U == math.prod(shapes["decoder/recurrent_kernel"])
    W_d = math.prod(shapes["dense/kernel"])
    forward = 2 * B * (U * (T_e + T_d) + W_d * T_d)
    f = flop_counts(B, T_e, T_d, 256, 93)
    assert f["eval_batch"] == forward and f["train_step"] == 3 * forward
    assert f"{forward:.2e}" == "2.70e+09" and f"{3 * forward:.2e}" == "8.09e+09"
    in_docs("= 2.70\\cdot10^{9}$")
    in_docs("$8.09\\cdot10^{9}$")
    steps = train.split_train_val(10_000, 0.2) // B
    assert steps == 125 and f"{steps * 3 * forward:.2e}" == "1.01e+12"
    in_docs("$1.01\\cdot10^{12}$")
    assert f"{2000 / B * forward:.1e}" == "8.4e+10"
    in_docs("$8.4\\cdot10^{10}$")
    recurrent_share = U * (T_e + T_d) / (U * (T_e + T_d) + W_d * T_d)
    assert f"{recurrent_share:.0%}" == "93%" and (T_e + T_d) * 2 * steps == 18_750
    assert f"{2 * 256 * 1024 / count_seed_parameters():.0%}" == "73%"
    in_docs("73% of them are the two")


def test_rmsprop_never_steps_further_than_lr_over_sqrt_one_minus_rho():
    opt = train.make_optimizer(train.Config())
    w = {"w": jnp.zeros(5)}
    state = opt.init(w)
    rng = np.random.default_rng(0)
    bound = 1e-3 / math.sqrt(1 - 0.9)
    for scale in (1e-6, 1.0, 1e3, 1e6, 1.0, 1e-3):
        g = {"w": jnp.asarray(rng.normal(size=5) * scale, jnp.float32)}
        updates, state = opt.update(g, state, w)
        assert float(jnp.max(jnp.abs(updates["w"]))) <= bound * (1 + 1e-6)
    assert f"{bound:.2e}" == "3.16e-03"


def test_keras_loss_versus_log_softmax_on_a_confident_mistake():
    logits = jnp.array([0.0, 0.0, -20.0])
    target = jnp.array([[2]])
    keras = lambda a: losses.per_position_crossentropy(jax.nn.softmax(a)[None, None], target)[0, 0]  # noqa: E731
    log_softmax = lambda a: -jax.nn.log_softmax(a)[2]  # noqa: E731
    p_y = math.exp(-20) / (2 + math.exp(-20))  # by hand
    assert f"{p_y:.2e}" == "1.03e-09"
    assert float(keras(logits)) == pytest.approx(-math.log(np.float32(1e-7)), rel=1e-6)
    assert f"{float(keras(logits)):.3f}" == "16.118"
    np.testing.assert_array_equal(np.asarray(jax.grad(keras)(logits)), 0.0)
    assert float(log_softmax(logits)) == pytest.approx(20 + math.log(2 + math.exp(-20)), rel=1e-6)
    assert f"{float(log_softmax(logits)):.3f}" == "20.693"
    np.testing.assert_allclose(np.asarray(jax.grad(log_softmax)(logits)), [0.5, 0.5, -1.0], atol=1e-6)
    in_docs("the Keras loss is $16.118$ with gradient 0, the log-softmax loss $20.693$ with gradient $(0.5, 0.5, -1)$")


def test_exact_match_if_characters_were_independent(shared_fra):
    ds = data.load_dataset(shared_fra, 10_000)
    split_at = train.split_train_val(len(ds), 0.2)
    real = np.mean([len(t) - 1 for t in ds.target_texts[split_at:]])  # characters after "\t", "\n" included
    pad_val = 1 - real / ds.max_decoder_seq_length
    per_char = (0.868 - pad_val) / (1 - pad_val)
    assert f"{real:.1f}" == "20.9" and f"{per_char:.3f}" == "0.628" and f"{per_char ** real:.0e}" == "6e-05"
    in_docs("$0.628^{20.9} = 6\\cdot10^{-5}$")
