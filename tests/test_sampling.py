"""Sampling (search.sample_batch and ``minis2s translate --sample``): the draws follow the
tempered softmax, temperature 0 is greedy, a seed reproduces the samples."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import data, decode, models, search, train, trained
from minis2s.models import ModelConfig
from tests._cli import run
from tests.conftest import split_tiers


def tempered(p: np.ndarray, t: float) -> np.ndarray:
    q = np.asarray(p, np.float64) ** (1.0 / t)
    return q / q.sum(-1, keepdims=True)


def assert_frequencies(counts: np.ndarray, expected: np.ndarray, n: int) -> None:
    """Empirical counts within 5 binomial standard deviations of ``n * expected`` (per cell)."""
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) <= 5 * sigma + 1), (counts / n, expected)


def test_tempered_draw_follows_p_to_the_one_over_t():
    p = jnp.asarray([[0.5, 0.3, 0.15, 0.05]])
    n = 40_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    for t in (0.7, 1.0, 2.0):
        draws = np.asarray(jax.jit(jax.vmap(lambda k: search.tempered_draw(k, p, t)[0]))(keys))
        assert_frequencies(np.bincount(draws, minlength=4), tempered(p[0], t), n)
    # T = 0 is the argmax, whatever the key.
    assert set(np.asarray(jax.vmap(lambda k: search.tempered_draw(k, p, 0.0)[0])(keys[:100])).tolist()) == {0}


def _random_model(cell: str, v_in=5, v_out=4, h=3, sharpen=3.0, seed=0):
    """A random seed model whose output distributions are far from uniform."""
    m = models.build(ModelConfig(v_in, v_out, h, cell=cell))
    p = m.init(jax.random.PRNGKey(seed))
    p["dense"]["kernel"] = sharpen * p["dense"]["kernel"]
    p["dense"]["bias"] = jnp.linspace(-1.0, 1.0, v_out)
    return m, p


@pytest.mark.parametrize("temperature", split_tiers([0.7, 1.0], fast=(0,)))
def test_two_step_samples_follow_the_model_joint_distribution(temperature):
    """(y_1, y_2) drawn by sample_batch against q(y_1) q(y_2 | y_1) computed from decode_step:
    the second draw must be conditioned on the first one fed back."""
    model, params = _random_model("gru")
    start, end, n = 0, 3, 20_000
    enc = jnp.asarray([[1, 4, 2]], jnp.int32)
    tokens, lengths, logprob = search.sample_batch(
        params, enc, search.sentence_keys(0, np.array([0])), temperature,
        num_samples=n, start_token=start, end_token=end, max_steps=2, model=model,
    )
    tokens, lengths, logprob = np.asarray(tokens[0]), np.asarray(lengths[0]), np.asarray(logprob[0])
    assert tokens.shape == (n, 2)

    memory, state = model.encode(params, enc, jnp.asarray([3]))
    p1, state1, _ = model.decode_step(params, memory, jnp.asarray([start]), state)
    p1 = np.asarray(p1[0], np.float64)
    p2 = {}
    for k in range(4):
        probs, _, _ = model.decode_step(params, memory, jnp.asarray([k]), state1)
        p2[k] = np.asarray(probs[0], np.float64)
    assert np.ptp(p1) > 0.2 and np.max(p1) < 0.95  # far from uniform, far from one-hot

    expected = np.zeros((4, 4))
    for k1 in range(4):
        if k1 == end:  # the sample stops: the second token is end_token (padding)
            expected[k1, end] = tempered(p1, temperature)[k1]
        else:
            expected[k1] = tempered(p1, temperature)[k1] * tempered(p2[k1], temperature)
    counts = np.zeros((4, 4))
    np.add.at(counts, (tokens[:, 0], tokens[:, 1]), 1)
    assert_frequencies(counts, expected, n)
    # Scores are the model's own (untempered) log-probabilities of what was emitted.
    want = np.log(p1[tokens[:, 0]]) + np.where(tokens[:, 0] == end, 0.0, [np.log(p2[a][b]) for a, b in tokens])
    np.testing.assert_allclose(logprob, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lengths, np.where(tokens[:, 0] == end, 1, 2))


@pytest.mark.parametrize("cell", split_tiers(["lstm", "gru"], fast=(0,)))
def test_temperature_zero_is_greedy(cell):
    model, params = _random_model(cell, v_in=6, v_out=7, h=5, sharpen=1.0, seed=3)
    enc = jax.random.randint(jax.random.PRNGKey(1), (5, 4), 0, 6)
    statics = dict(start_token=0, end_token=6, max_steps=9, model=model)
    g_tokens, g_lengths, g_logprob = search.greedy_batch(params, enc, **statics)
    tokens, lengths, logprob = search.sample_batch(
        params, enc, search.sentence_keys(0, np.arange(5)), 0.0, num_samples=3, **statics
    )
    for s in range(3):
        np.testing.assert_array_equal(tokens[:, s], g_tokens)
        np.testing.assert_array_equal(lengths[:, s], g_lengths)
        np.testing.assert_allclose(logprob[:, s], g_logprob, rtol=1e-6)


def _tiny_dataset():
    from tests.conftest import TINY_PAIRS

    return data.build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])


def test_samples_are_reproducible_and_independent_of_batching(tiny_pairs):
    ds = _tiny_dataset()
    model, params = _random_model("lstm", len(ds.input_vocab), len(ds.target_vocab), 8, sharpen=2.0)
    args = (params, ds.encoder_tokens, ds.target_vocab, ds.max_decoder_seq_length)
    run = lambda seed, batch_size: decode.sample_tokens(  # noqa: E731
        *args, samples=4, temperature=1.0, seed=seed, batch_size=batch_size, model=model
    )
    a, b, c = run(0, 8), run(0, 3), run(1, 8)
    assert len(a) == len(tiny_pairs) and all(len(s) == 4 for s in a)
    assert a == b  # the same seed: the same samples, whatever the chunking
    assert a != c  # another seed: other samples
    assert any(len({h.chars for h in s}) > 1 for s in a)  # samples of one sentence differ


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def gru_ckpt(tmp_path_factory):
    """An untrained GRU seed checkpoint of the tiny pairs (random, so samples vary)."""
    ds = _tiny_dataset()
    config = train.Config(num_samples=None, latent_dim=8, cell="gru")
    params = models.build(train.model_config(config, ds)).init(jax.random.PRNGKey(0))
    params["dense"]["kernel"] = 4.0 * params["dense"]["kernel"]
    return str(trained.save_trained(tmp_path_factory.mktemp("gru") / "ckpt", params, config, ds))


@pytest.mark.slow
def test_translate_sample_cli(gru_ckpt):
    argv = ["translate", gru_ckpt, "Go.", "Hi.", "--sample", "--temperature", "0.7", "--samples", "5", "--seed", "0"]
    rc, out, err = run(argv)
    assert rc == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 10  # 5 per sentence, sentence by sentence
    assert run(argv)[1] == out  # reproducible
    assert run(argv[:-1] + ["1"])[1] != out
    # The first sentence's samples do not depend on what follows it.
    assert run(["translate", gru_ckpt, "Go.", "--sample", "--temperature", "0.7", "--samples", "5"])[1].split("\n")[:5] == lines[:5]
    # Temperature 0: every sample is the greedy translation.
    rc, greedy, _ = run(["translate", gru_ckpt, "Go.", "Hi."])
    rc0, zero, _ = run(["translate", gru_ckpt, "Go.", "Hi.", "--sample", "--temperature", "0", "--samples", "2"])
    g = greedy.split("\n")
    assert rc == rc0 == 0 and zero.split("\n")[:-1] == [g[0], g[0], g[1], g[1]]


def test_translate_sample_cli_refuses_contradictions(gru_ckpt):
    rc, _, err = run(["translate", gru_ckpt, "Go.", "--sample", "--beam", "3"])
    assert rc == 2 and "cannot be combined with --beam" in err
    rc, _, err = run(["translate", gru_ckpt, "Go.", "--samples", "3"])
    assert rc == 2 and "need --sample" in err
    rc, _, err = run(["translate", gru_ckpt, "Go.", "--sample", "--temperature", "-1"])
    assert rc == 2 and "must be a finite number >= 0" in err
