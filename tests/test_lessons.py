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

from minis2s import data, losses, lstm, model, train
from tests.conftest import ROOT, require_module

MATH = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def in_docs(text: str, *docs: str) -> None:
    """``text`` appears in each doc (whitespace-insensitive)."""
    for doc in docs or (MATH,):
        assert squash(text) in squash(doc), text


def stated(pattern: str, doc: str = MATH) -> list[str]:
    """The numbers the doc states where ``pattern`` (a regex with one group per number,
    whitespace-insensitive) matches; it must match exactly once. So the test compares a
    computed number with the doc's text, and editing that number in the doc fails it."""
    found = re.findall(pattern, squash(doc))
    assert len(found) == 1, (pattern, found)
    return [found[0]] if isinstance(found[0], str) else list(found[0])


def sci(x: float, digits: int) -> tuple[str, str]:
    """``(mantissa, exponent)`` as the doc writes ``m\\cdot10^{e}``: ``sci(6.7e-3, 1) == ("6.7", "-3")``."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return mantissa, str(int(exponent))


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
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    inner = everything[1] - everything[0]
    mean_french = np.mean([len(t) - 2 for t in ds.target_texts])
    assert stated(r"a French sentence averages ([\d.]+) characters \(([\d.]+) target positions") == [
        f"{mean_french:.1f}", f"{mean_french + 1:.1f}"]
    assert stated(r"so ([\d.]+)% of the \$10\{,\}000 \\times (\d+)\$") == [pct(everything[0]), str(length)]
    assert stated(r"an accuracy of \*\*([\d.]+)\*\* \(padding ([\d.]+)% plus inner spaces ([\d.]+)%\)") == [
        f"{everything[1]:.3f}", pct(everything[0]), pct(inner)]
    assert stated(r"the figures are ([\d.]+)% padding and \*\*([\d.]+)\*\*") == [pct(val[0]), f"{val[1]:.3f}"]
    assert stated(r"training split ([\d.]+)% and ([\d.]+)\.") == [pct(training[0]), f"{training[1]:.3f}"]
    # val_accuracy 0.868 with every padding position right: share of real characters right
    real_right = (0.868 - val[0]) / (1 - val[0])
    assert stated(r"\$\(0\.868 - ([\d.]+)\)/\(1 - ([\d.]+)\) = (\d+)\\%\$") == [
        f"{val[0]:.3f}", f"{val[0]:.3f}", f"{100 * real_right:.0f}"]
    assert stated(r"([\d.]+)% of the target positions are padding spaces", README) == [pct(everything[0])]
    assert stated(r"([\d.]+) \(([\d.]+) on the validation split, where padding is ([\d.]+)%\)", README) == [
        f"{everything[1]:.3f}", f"{val[1]:.3f}", pct(val[0])]
    assert stated(r"about (\d+)% of the real characters right", README) == [f"{100 * real_right:.0f}"]


# --------------------------------------------------------------------------- the clip


def test_clip_bounds_loss_ceiling_and_tie_gradient():
    hi = np.float32(1 - losses.EPSILON)
    assert float(hi) == 1 - 2**-23
    perfect = float(losses.per_position_crossentropy(jnp.array([[[1.0, 0.0]]]), jnp.array([[0]]))[0, 0])
    assert perfect == pytest.approx(-math.log(1 - 2**-23), rel=1e-3)  # the loss of a perfect prediction
    assert stated(r"reports a loss of \$([\d.]+)\\cdot10\^\{(-\d+)\}\$, not 0") == list(sci(perfect, 2))
    ceiling = -math.log(losses.EPSILON)  # the clip's own bound
    assert stated(r"\$-\\log 10\^\{-7\} = 7 \\ln 10 = ([\d.]+),\$") == [f"{ceiling:.1f}"]  # section 13
    assert stated(r"at most \$-\\log 10\^\{-7\} = ([\d.]+)\$") == [f"{ceiling:.1f}"]  # section 10

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


def forget_gate_at_init(forget_bias: float) -> float:
    """The forget gate of a fresh ``lstm.init_lstm`` layer on a zero input, read off
    ``lstm.cell`` itself: with ``h_0 = 0``, ``c_0 = 1`` and ``g = tanh(0) = 0`` the new
    cell state is ``f * 1 + i * 0 = f``."""
    params = lstm.init_lstm(jax.random.PRNGKey(0), 3, 4)
    zx = (params["bias"] * forget_bias)[None]  # (1, 4H): the input part for a zero input
    _, c = lstm.cell(params, zx, (jnp.zeros((1, 4)), jnp.ones((1, 4))))
    assert np.ptp(np.asarray(c)) == 0.0  # every unit the same
    return float(c[0, 0])


@pytest.mark.slow  # ~5 s: docs/math.md's initialisation table, recomputed
def test_initialisation_numbers():
    shapes = model.param_shapes(model.ModelConfig(70, 93, 256))
    for layer in ("encoder", "decoder"):
        fan_in, fan_out = shapes[f"{layer}/kernel"]
        [limit] = stated(rf"\\sqrt{{6/\({fan_in} ?\+ ?{fan_out}\)}} = ([\d.]+)")
        theta = math.sqrt(6 / (fan_in + fan_out))
        assert limit == f"{theta:.4f}"
        w = np.asarray(lstm.glorot_uniform(jax.random.PRNGKey(1), (fan_in, fan_out)))
        assert np.abs(w).max() <= theta and np.abs(w).max() > 0.999 * theta  # the limit glorot_uniform draws to
    f_one, f_zero = forget_gate_at_init(1.0), forget_gate_at_init(0.0)  # unit_forget_bias and no bias
    [t_e] = stated(r"over the seed's (\d+) encoder steps")
    assert int(t_e) == 16  # the seed's T_e (test_the_padding_baseline_of_the_seed_data reads it off the data)
    assert stated(r"near \$\\sigma\(1\) = ([\d.]+)\$ instead of \$\\sigma\(0\) = ([\d.]+)\$") == [f"{f_one:.3f}", f"{f_zero:.1f}"]
    assert stated(r"\$([\d.]+)\^\{16\} = ([\d.]+)\\cdot10\^\{(-\d+)\}\$ instead of") == [f"{f_one:.3f}", *sci(f_one ** 16, 1)]
    assert stated(r"instead of \$([\d.]+)\^\{16\} = ([\d.]+)\\cdot10\^\{(-\d+)\}\$") == [f"{f_zero:.1f}", *sci(f_zero ** 16, 1)]
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
    # the table as the doc prints it: the header's gradients and the row's steps
    [header] = re.findall(r"^\| \$\\lvert \\delta w\\rvert\$ \|(.*)$", MATH, re.M)
    [row] = re.findall(r"^\| first step \$\\lvert\\Delta w\\rvert\$ \|(.*)$", MATH, re.M)
    cell = lambda text: text.strip().strip("$")  # noqa: E731
    as_doc = lambda x: "0" if x == 0 else ("1" if x == 1 else (lambda m, e: f"{m}\\cdot10^{{{e}}}")(*sci(x, 1)))  # noqa: E731
    assert [cell(c) for c in header.split("|")[:-1]] == ["1", *(f"10^{{{round(math.log10(g))}}}" for g in gs[1:-1]), "0"]
    steps = np.abs(np.asarray(updates["w"], np.float64))  # the optimizer's own first steps
    assert [cell(c) for c in row.split("|")[:-1]] == [as_doc(float(x)) for x in steps]
    # the large-gradient limit, from the optimizer itself: eps is negligible at |dw| = 1e3
    big, _ = opt.update({"w": jnp.full(1, 1e3, jnp.float32)}, opt.init({"w": jnp.zeros(1)}))
    assert stated(r"\$\\eta/\\sqrt\{0\.1\} = ([\d.]+)\\cdot10\^\{(-\d+)\}\$") == list(sci(-float(big["w"][0]), 2))


# --------------------------------------------------------------------------- size


def count_seed_parameters(v_in: int = 70, v_out: int = 93, h: int = 256) -> int:
    """By hand: two LSTMs ``D*4H + H*4H + 4H`` and the head ``H*V + V``."""
    return (v_in * 4 * h + h * 4 * h + 4 * h) + (v_out * 4 * h + h * 4 * h + 4 * h) + (h * v_out + v_out)


def test_seed_parameter_count():
    shapes = model.param_shapes(model.ModelConfig(70, 93, 256))
    counted = sum(math.prod(s) for s in shapes.values())
    assert counted == count_seed_parameters() == 717_149


def divmod_text(n: int) -> list[str]:
    """``18750 -> ["18", "750"]``, as the doc writes ``18{,}750``."""
    return [str(n // 1000), f"{n % 1000:03d}"]


def test_seed_flops_per_step_and_epoch():
    """scripts/benchmarks/bench.py's formula against a count from the parameter shapes: every recurrent
    kernel entry is one multiply-add per sample and step, every head entry one per sample and
    decoder step; backward is twice forward."""
    from tests.conftest import load_script
    flop_counts = load_script("benchmarks/bench").flop_counts
    shapes = model.param_shapes(model.ModelConfig(70, 93, 256))
    B, T_e, T_d = 64, 16, 59
    U = math.prod(shapes["encoder/recurrent_kernel"])
    assert U == math.prod(shapes["decoder/recurrent_kernel"])
    W_d = math.prod(shapes["dense/kernel"])
    forward = 2 * B * (U * (T_e + T_d) + W_d * T_d)
    f = flop_counts(B, T_e, T_d, 256, 93)
    assert f["eval_batch"] == forward and f["train_step"] == 3 * forward
    assert stated(r"\+ 2BT_dHV = ([\d.]+)\\cdot10\^\{(\d+)\}\$ for the seed") == list(sci(forward, 2))
    assert stated(r"a backward twice its size, \$([\d.]+)\\cdot10\^\{(\d+)\}\$") == list(sci(f["train_step"], 2))
    steps = train.split_train_val(10_000, 0.2) // B
    assert stated(r"An epoch of (\d+) training steps is \$([\d.]+)\\cdot10\^\{(\d+)\}\$") == [
        str(steps), *sci(steps * f["train_step"], 2)]
    # validation: the batches train.evaluate runs (the last one filled up with weight-0 rows)
    index, weight = train.batch_plan(np.arange(train.split_train_val(10_000, 0.2), 10_000), B)
    n_val = int(weight.sum())
    assert stated(r"Validation evaluates the ([\d,]+) validation pairs as (\d+) batches of (\d+)") == [
        f"{n_val:,}", str(len(index)), str(B)]
    assert stated(r"\$(\d+) \\times 2\.70\\cdot10\^\{9\} = ([\d.]+)\\cdot10\^\{(\d+)\}\$") == [
        str(len(index)), *sci(len(index) * f["eval_batch"], 2)]
    assert stated(r"\$2000/64 \\times 2\.70\\cdot10\^\{9\} = ([\d.]+)\\cdot10\^\{(\d+)\}\$") == list(
        sci(n_val / B * f["eval_batch"], 2))
    recurrent_share = U * (T_e + T_d) / (U * (T_e + T_d) + W_d * T_d)
    assert stated(r"([\d]+)% of the work is the recurrent matmuls") == [f"{100 * recurrent_share:.0f}"]
    assert stated(r"\$T_e \+ T_d = (\d+)\$ recurrent matmuls") == [str(T_e + T_d)]
    assert stated(r"an epoch is \$(\d+) \\times (\d+) = ([\d]+)\{,\}(\d+)\$") == [
        str(steps), str(2 * (T_e + T_d)), *divmod_text(steps * 2 * (T_e + T_d))]
    recurrent_kernels = U + math.prod(shapes["decoder/recurrent_kernel"])
    assert stated(r"(\d+)% of them are the two") == [f"{100 * recurrent_kernels / count_seed_parameters():.0f}"]


def test_rmsprop_never_steps_further_than_lr_over_sqrt_one_minus_rho():
    opt = train.make_optimizer(train.Config())
    w = {"w": jnp.zeros(5)}
    state = opt.init(w)
    rng = np.random.default_rng(0)
    config = train.Config()
    bound = config.learning_rate / math.sqrt(1 - config.rho)
    largest = 0.0
    for scale in (1e-6, 1.0, 1e3, 1e6, 1.0, 1e-3):
        g = {"w": jnp.asarray(rng.normal(size=5) * scale, jnp.float32)}
        updates, state = opt.update(g, state, w)
        largest = max(largest, float(jnp.max(jnp.abs(updates["w"]))))
        assert largest <= bound * (1 + 1e-6)
    assert largest > 0.99 * bound  # the bound is reached (at the jump to 1e6), so it is the right one
    assert stated(r"= \\frac\{\\eta\}\{\\sqrt\{1-\\rho\}\} = ([\d.]+)\\cdot10\^\{(-\d+)\}") == list(sci(bound, 2))


def test_keras_loss_versus_log_softmax_on_a_confident_mistake():
    logits = jnp.array([0.0, 0.0, -20.0])
    target = jnp.array([[2]])
    keras = lambda a: losses.per_position_crossentropy(jax.nn.softmax(a)[None, None], target)[0, 0]  # noqa: E731
    log_softmax = lambda a: -jax.nn.log_softmax(a)[2]  # noqa: E731
    p_y = math.exp(-20) / (2 + math.exp(-20))  # by hand
    assert stated(r"give \$p_y = ([\d.]+)\\cdot10\^\{(-\d+)\}\$") == list(sci(p_y, 2))
    assert float(keras(logits)) == pytest.approx(-math.log(np.float32(1e-7)), rel=1e-6)
    np.testing.assert_array_equal(np.asarray(jax.grad(keras)(logits)), 0.0)
    assert float(log_softmax(logits)) == pytest.approx(20 + math.log(2 + math.exp(-20)), rel=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(log_softmax)(logits)), [0.5, 0.5, -1.0], atol=1e-6)
    assert stated(r"the clipped Keras loss is \$([\d.]+)\$ with gradient 0, the log-softmax loss \$([\d.]+)\$ with gradient "
                  r"\$\(0\.5, 0\.5, -1\)\$") == [f"{float(keras(logits)):.3f}", f"{float(log_softmax(logits)):.3f}"]


def test_exact_match_if_characters_were_independent(shared_fra):
    ds = data.load_dataset(shared_fra, 10_000)
    split_at = train.split_train_val(len(ds), 0.2)
    real = np.mean([len(t) - 1 for t in ds.target_texts[split_at:]])  # characters after "\t", "\n" included
    pad_val = 1 - real / ds.max_decoder_seq_length
    per_char = (0.868 - pad_val) / (1 - pad_val)
    mantissa, exponent = f"{per_char ** real:.0e}".split("e")
    assert stated(r"\$([\d.]+)\^\{([\d.]+)\} = (\d)\\cdot10\^\{(-\d+)\}\$") == [
        f"{per_char:.3f}", f"{real:.1f}", mantissa, str(int(exponent))]
    assert stated(r"A validation sentence has ([\d.]+) real target positions") == [f"{real:.1f}"]


# --------------------------------------------------------------------------- math round 3 (issue 22)


def test_glorot_keeps_neither_variance_when_the_fans_differ():
    """Section 3: fan_in Var(W) and fan_out Var(W) for the seed encoder's kernel, from the
    closed form and from a draw of lstm.glorot_uniform."""
    fan_in, fan_out = model.param_shapes(model.ModelConfig(70, 93, 256))["encoder/kernel"]
    var = 2 / (fan_in + fan_out)  # Var(U(-theta, theta)) = theta^2 / 3
    drawn = float(np.var(np.asarray(lstm.glorot_uniform(jax.random.PRNGKey(0), (fan_in, fan_out)), np.float64)))
    assert drawn == pytest.approx(var, rel=0.02)
    assert stated(r"fans differ (\d+)-fold") == [f"{fan_out / fan_in:.0f}"]
    assert stated(r"\\cdot\\operatorname\{Var\}\(W\) = (\d+)/(\d+) = ([\d.]+)\$ and") == [
        str(2 * fan_in), str(fan_in + fan_out), f"{fan_in * var:.2f}"]
    assert stated(r"\\cdot\\operatorname\{Var\}\(W\) = (\d+)/(\d+) = ([\d.]+)\$ \(") == [
        str(2 * fan_out), str(fan_in + fan_out), f"{fan_out * var:.2f}"]


def test_logit_gap_where_the_clip_takes_the_gradient():
    """Section 13, exercise 3: p_y = 1 / (1 + e^gap) falls under the clip's bound above
    gap = ln(1/eps - 1); checked on the softmax in float64 on either side."""
    gap = math.log(1 / losses.EPSILON - 1)
    assert stated(r"\\Delta > \\ln\(10\^7 - 1\) = ([\d.]+)\$") == [f"{gap:.2f}"]
    with jax.enable_x64(True):
        p_y = lambda d: float(jax.nn.softmax(jnp.array([0.0, d], jnp.float64))[0])  # noqa: E731
        assert p_y(gap - 1e-6) > losses.EPSILON > p_y(gap + 1e-6)
    # and in float32, the loss's own clip: gradient through the position just below and above
    loss = lambda d: losses.per_position_crossentropy(jax.nn.softmax(jnp.array([0.0, d]))[None, None], jnp.array([[0]]))[0, 0]  # noqa: E731
    assert float(jnp.abs(jax.grad(loss)(jnp.float32(gap - 0.05)))) > 0.5
    assert float(jax.grad(loss)(jnp.float32(gap + 0.05))) == 0.0


def adam_first_step_keras(dw: float, lr=1e-3, beta_1=0.9, beta_2=0.999, eps=1e-7) -> float:
    """Keras' Adam written out: the bias correction folded into the rate, eps added to the
    uncorrected square root."""
    m, v = (1 - beta_1) * dw, (1 - beta_2) * dw * dw
    alpha = lr * math.sqrt(1 - beta_2) / (1 - beta_1)
    return alpha * m / (math.sqrt(v) + eps)


def adam_first_step_optax(dw: float, lr=1e-3, beta_1=0.9, beta_2=0.999, eps=1e-8) -> float:
    """optax.adam written out: eps added to the bias-corrected square root."""
    m_hat, v_hat = dw, dw * dw  # (1 - beta) dw / (1 - beta) after one step
    return lr * m_hat / (math.sqrt(v_hat) + eps)


def test_adam_first_step_is_about_eta_only_for_large_gradients():
    """Section 10, exercise 3: the libraries themselves against the formulas, at |dw| = 1e-5."""
    keras = require_module("keras")
    import optax

    dw = 1e-5
    opt = keras.optimizers.Adam(learning_rate=1e-3)
    w = keras.Variable(np.zeros(2, np.float32))
    opt.apply_gradients([(np.array([dw, 1.0], np.float32), w)])
    keras_steps = -np.asarray(w, np.float64) / 1e-3
    adam = optax.adam(1e-3)
    updates, _ = adam.update({"w": jnp.array([dw, 1.0])}, adam.init({"w": jnp.zeros(2)}))
    optax_steps = -np.asarray(updates["w"], np.float64) / 1e-3
    np.testing.assert_allclose(keras_steps, [adam_first_step_keras(dw) / 1e-3, adam_first_step_keras(1.0) / 1e-3], rtol=1e-5)
    np.testing.assert_allclose(optax_steps, [adam_first_step_optax(dw) / 1e-3, adam_first_step_optax(1.0) / 1e-3], rtol=1e-5)
    assert stated(r"at \$\|\\delta w\| = 10\^\{-5\}\$ that is \$([\d.]+)\\,\\eta\$ and \$([\d.]+)\\,\\eta\$") == [
        f"{keras_steps[0]:.2f}", f"{optax_steps[0]:.3f}"]
    # "about eta only when |dw| >> eps / sqrt(1 - beta_2)" (Keras) or ">> eps" (optax)
    assert stated(r"only when \$\|\\delta w\| \\gg ([\d.]+)\\cdot10\^\{(-\d+)\}\$ \(Keras\)") == list(sci(1e-7 / math.sqrt(1 - 0.999), 1))
    assert stated(r"or \$\\gg 10\^\{(-\d+)\}\$ \(optax\)") == [str(round(math.log10(1e-8)))]


def test_tensorflow_backend_loss_from_the_logits():
    """Sections 5 and 13: the JAX backend's (and minis2s') clipped loss against the
    log-softmax of the logits that Keras' TensorFlow backend computes, in NumPy float64."""
    logits = np.array([0.0, 0.0, -20.0])
    from_logits = -(logits[2] - logits.max() - np.log(np.sum(np.exp(logits - logits.max()))))
    clipped = float(losses.per_position_crossentropy(jax.nn.softmax(jnp.asarray(logits, jnp.float32))[None, None], jnp.array([[2]]))[0, 0])
    assert stated(r"reports the second, \$([\d.]+)\$, for the same model") == [f"{from_logits:.3f}"]
    assert stated(r"the clipped Keras loss is \$([\d.]+)\$ with gradient 0, the log-softmax loss \$([\d.]+)\$") == [
        f"{clipped:.3f}", f"{from_logits:.3f}"]


def test_bahdanau_remat_keeps_only_the_unbatched_products(capsys):
    """Section 15: under REMAT_POLICY one decoder step saves, besides its arguments, only
    h W_q (B, d_a), the scores (B, Te) and h U (B, 4H); the batched a_t P is recomputed."""
    from jax.ad_checkpoint import print_saved_residuals

    from minis2s import cells
    from minis2s.models import bahdanau

    cell = cells.get("lstm")
    B, Te, H = 2, 3, 5  # distinct sizes: d_a = H = 5, 4H = 20
    params = bahdanau.init_params(jax.random.PRNGKey(0), model.ModelConfig(4, 6, H), cell)
    memory, state = bahdanau.encode(params, jnp.array([[1, 2, 3], [2, 1, 0]]), jnp.array([3, 2]), cell)
    zx = bahdanau.token_rows(params, jnp.array([1, 2]))

    def step(params, memory, zx, state):
        s, a = bahdanau.projected_step(params, memory, zx, state, cell.core)
        return jnp.sum(s[0]) + jnp.sum(s[1]) + jnp.sum(a)

    capsys.readouterr()
    print_saved_residuals(jax.checkpoint(step, policy=bahdanau.REMAT_POLICY), params, memory, zx, state)
    saved = [line for line in capsys.readouterr().out.splitlines() if line.strip() and "from the argument" not in line]
    shapes = sorted(re.match(r"f32\[([\d,]+)\]", line).group(1) for line in saved)
    assert all("output of dot_general" in line for line in saved), saved
    assert shapes == sorted([f"{B},{H}", f"{B},{Te}", f"{B},{4 * H}"]), saved
    assert not any("projected_step" in line and f"{B},{4 * H}" in line for line in saved), saved  # not a_t P
    in_docs("keeps only the results of the step's matmuls that have no batch dimension")
