"""Inference: turn English text into French with a trained model.

Three decoders, all following the seed's ``decode_sequence`` rules: encode the padded
English tokens, feed the start token ``"\\t"``, and extend the output one character at a
time until the end token ``"\\n"`` or until ``max_decoder_seq_length + 1`` characters
(the seed's loop stops when ``len(decoded) > max_decoder_seq_length``).

- :func:`greedy_reference`: the seed's loop, one sentence, one Python iteration and one
  device round trip per character. Kept as the oracle and as the "before" of the benchmark.
- :func:`greedy_batch`: the same argmax rule for a whole batch in one jitted function,
  a ``lax.while_loop`` over decoder steps that ends when every sentence has emitted
  ``"\\n"`` (or at the step limit). Finished rows stop contributing tokens and score.
- :func:`beam_batch`: beam search of width ``k``, jitted the same way. Width 1 is greedy.
- :func:`sample_batch`: ``S`` translations per sentence drawn from the softmax at a
  temperature (``p^(1/T)`` renormalised), jitted the same way; explicit PRNG keys, one per
  sentence, so a sentence's samples do not depend on the batch it is decoded in.
  Temperature 0 is greedy.

Scores are log-probabilities of the emitted characters, the end token included:
``log p(y | x) = sum_t log p(y_t | y_<t, x)``.

:func:`decode_tokens` runs either decoder over any number of sentences in fixed-size
batches and returns :class:`Hypothesis` objects; :func:`prepare_inputs` turns raw user text
into encoder tokens and says exactly what is wrong with text that does not fit the model.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import models
from .bucketing import encoder_pad_width
from .data import END, PAD, START, Vocab
from .models import Memory, Model, ModelConfig, Params, State


def model_for(params: Params) -> Model:
    """The seed model whose sizes fit ``params`` (the default of every decoder here): LSTM,
    or GRU when the encoder bias is Keras' ``(2, 3H)`` GRU bias.

    Other models are passed explicitly (``model=models.build(config)``); a checkpoint's is
    built by :func:`model_of`.
    """
    v_in = params["encoder"]["kernel"].shape[0]
    v_out = params["dense"]["bias"].shape[0]
    h = params["decoder"]["recurrent_kernel"].shape[0]
    cell = "gru" if params["encoder"]["bias"].ndim == 2 else "lstm"
    return models.build(ModelConfig(v_in, v_out, h, cell=cell))


def model_of(trained) -> Model:
    """The :class:`~minis2s.models.Model` a :class:`minis2s.checkpoint.Trained` was trained as."""
    return models.build(models.config_for(trained.config, trained.input_vocab, trained.target_vocab))


def _lengths(encoder_tokens: jax.Array, encoder_lengths: jax.Array | None) -> jax.Array:
    """``(B,)`` int32 lengths; ``None`` means every row fills the width (no padding)."""
    if encoder_lengths is None:
        return jnp.full((encoder_tokens.shape[0],), encoder_tokens.shape[1], jnp.int32)
    return jnp.asarray(encoder_lengths, jnp.int32)


@functools.partial(jax.jit, static_argnums=0)
def _encode_jit(model: Model, params, encoder_tokens, encoder_lengths):
    return model.encode(params, encoder_tokens, encoder_lengths)


@functools.partial(jax.jit, static_argnums=0)
def _decode_step_jit(model: Model, params, memory, token, state):
    return model.decode_step(params, memory, token, state)


def greedy_reference(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
    model: Model | None = None,
    encoder_length: int | None = None,
) -> str:
    """Decode one sentence exactly as the seed's ``decode_sequence`` does.

    Args:
        encoder_tokens: ``(T_enc,)`` or ``(1, T_enc)`` int tokens of one padded sentence.
        model: the model's functions (default: the seed LSTM, :func:`model_for`).
        encoder_length: characters before the padding (default: the whole width).
    Returns:
        the decoded characters, ending in ``"\\n"`` unless the limit
        (``max_decoder_seq_length + 1`` characters, as in the seed) stopped it first.
    """
    model = model or model_for(params)
    x = jnp.asarray(encoder_tokens).reshape(1, -1)
    length = jnp.array([x.shape[1] if encoder_length is None else encoder_length], jnp.int32)
    memory, state = _encode_jit(model, params, x, length)
    token = jnp.array([target_vocab.index[START]], jnp.int32)
    decoded = ""
    while True:
        probs, state, _ = _decode_step_jit(model, params, memory, token, state)
        k = int(jnp.argmax(probs[0]))
        char = target_vocab.chars[k]
        decoded += char
        if char == END or len(decoded) > max_decoder_seq_length:
            return decoded
        token = jnp.array([k], jnp.int32)


# --------------------------------------------------------------------------- batched greedy


def _greedy_loop(
    model: Model, params: Params, memory: Memory, state: State, *, start_token: int, end_token: int,
    max_steps: int, with_extras: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
    """The decoder loop of :func:`greedy_batch`, from the encoder's ``memory`` and ``state``.

    With ``with_extras``, each step's ``extra`` arrays (:meth:`Model.decode_step`; the
    attention weights) are kept, ``(B, max_steps, ...)``; else the last dict is ``{}``.
    """
    batch = state[0].shape[0]
    start = jnp.full((batch,), start_token, jnp.int32)
    if with_extras:
        _, _, extra_shapes = jax.eval_shape(model.decode_step, params, memory, start, state)
        extras = jax.tree.map(lambda a: jnp.zeros((max_steps, *a.shape), a.dtype), extra_shapes)
    else:
        extras = {}
    init = (
        jnp.int32(0),
        start,  # previous token
        state,
        jnp.zeros((batch,), bool),  # done
        jnp.zeros((batch,), jnp.int32),  # lengths
        jnp.zeros((batch,), jnp.float32),  # log-prob
        jnp.full((max_steps, batch), end_token, jnp.int32),  # tokens, time-major: row t is contiguous
        extras,
    )

    def cond(carry):
        t, _, _, done, _, _, _, _ = carry
        return (t < max_steps) & ~jnp.all(done)

    def body(carry):
        t, prev, state, done, lengths, logprob, tokens, extras = carry
        probs, state, extra = model.decode_step(params, memory, prev, state)  # (B, V)
        k = jnp.argmax(probs, axis=-1).astype(jnp.int32)  # (B,)
        p_k = jnp.take_along_axis(probs, k[:, None], axis=1)[:, 0]
        live = ~done
        tokens = tokens.at[t].set(jnp.where(live, k, end_token))
        lengths = lengths + live.astype(jnp.int32)
        logprob = logprob + jnp.where(live, jnp.log(p_k), 0.0)
        done = done | (k == end_token)
        if with_extras:
            extras = jax.tree.map(lambda buf, e: buf.at[t].set(e), extras, extra)
        return t + 1, k, state, done, lengths, logprob, tokens, extras

    _, _, _, _, lengths, logprob, tokens, extras = jax.lax.while_loop(cond, body, init)
    return tokens.T, lengths, logprob, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), extras)


@functools.partial(jax.jit, static_argnames=("start_token", "end_token", "max_steps", "model", "with_extras"))
def greedy_batch(
    params: Params,
    encoder_tokens: jax.Array,
    encoder_lengths: jax.Array | None = None,
    *,
    start_token: int,
    end_token: int,
    max_steps: int,
    model: Model | None = None,
    with_extras: bool = False,
):
    """Greedy decoding of a batch: ``y_t = argmax_v p(v | y_<t, x)`` for every row at once.

    A ``lax.while_loop`` runs one ``model.decode_step`` per iteration and stops as soon as
    every row has emitted ``end_token`` or after ``max_steps`` steps. A row that has
    finished keeps computing (the batch is one matrix) but its tokens, length and score
    no longer change.

    Args:
        encoder_tokens: ``(B, T_enc)`` int tokens, padded as in training.
        encoder_lengths: ``(B,)`` characters before the padding (default: the full width).
        max_steps: the most characters per row (the seed: ``max_decoder_seq_length + 1``).
        model: the model's functions (default: the seed LSTM, :func:`model_for`).
        with_extras: also return each step's ``extra`` arrays (attention weights).
    Returns:
        ``tokens (B, max_steps)`` int32 (``end_token`` after the end), ``lengths (B,)``
        (characters emitted, the end token included) and ``logprob (B,)``, the sum of
        ``log p`` of the emitted characters; with ``with_extras`` a fourth item, a dict of
        ``(B, max_steps, ...)`` arrays.
    """
    model = model or model_for(params)
    memory, state = model.encode(params, encoder_tokens, _lengths(encoder_tokens, encoder_lengths))
    tokens, lengths, logprob, extras = _greedy_loop(
        model, params, memory, state, start_token=start_token, end_token=end_token, max_steps=max_steps,
        with_extras=with_extras,
    )
    return (tokens, lengths, logprob, extras) if with_extras else (tokens, lengths, logprob)


# --------------------------------------------------------------------------- sampling


def tempered_draw(key: jax.Array, probs: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """One token per row from ``q = p^(1/T) / sum_v p_v^(1/T)``; ``T = 0`` is the argmax.

    ``q = softmax(log p / T)`` is what :func:`jax.random.categorical` draws from (the
    Gumbel-max trick: ``argmax(log p / T + g)``, ``g`` standard Gumbel noise). ``probs``
    ``(B, V)``; ``key`` one key for the whole batch. Returns ``(B,)`` int32.
    """
    safe_t = jnp.maximum(temperature, jnp.finfo(probs.dtype).tiny)
    drawn = jax.random.categorical(key, jnp.log(probs) / safe_t, axis=-1)
    return jnp.where(temperature > 0, drawn, jnp.argmax(probs, axis=-1)).astype(jnp.int32)


def sentence_keys(seed: int, index: np.ndarray) -> jax.Array:
    """``(N, 2)`` keys: ``fold_in(PRNGKey(seed), i)`` for each sentence number ``i``."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(index, jnp.uint32))


@functools.partial(jax.jit, static_argnames=("num_samples", "start_token", "end_token", "max_steps", "model"))
def sample_batch(
    params: Params,
    encoder_tokens: jax.Array,
    keys: jax.Array,
    temperature: float | jax.Array = 1.0,
    encoder_lengths: jax.Array | None = None,
    *,
    num_samples: int,
    start_token: int,
    end_token: int,
    max_steps: int,
    model: Model | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``S = num_samples`` translations of each row, each character drawn from the softmax.

    At step ``t`` sample ``j`` of row ``b`` draws ``y_t ~ q``, ``q_v \\propto p(v | y_<t, x)^{1/T}``,
    and feeds it back as the next input. Lower ``T`` sharpens ``q`` towards the argmax
    (``T = 0`` *is* the argmax: greedy decoding, every sample the same); ``T = 1`` samples
    from the model itself; higher ``T`` flattens it. The loop is :func:`greedy_batch`'s:
    the encoder's memory and state are tiled ``S`` times (sample ``j`` of row ``b`` at row
    ``b*S + j``) and a ``lax.while_loop`` stops when every sample has emitted ``end_token``.

    Keys: ``keys[b]`` belongs to row ``b`` (:func:`sentence_keys`); it is split into one
    key per sample, and step ``t`` uses ``fold_in(sample key, t)``; no key is used twice.

    Returns:
        ``tokens (B, S, max_steps)``, ``lengths (B, S)`` and ``logprob (B, S)``, the
        untempered ``log p(y | x)`` of each sample under the model.
    """
    model = model or model_for(params)
    memory, state = model.encode(params, encoder_tokens, _lengths(encoder_tokens, encoder_lengths))
    batch = state[0].shape[0]
    rows = batch * num_samples
    tile = lambda a: jnp.repeat(a, num_samples, axis=0)  # noqa: E731
    memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)
    sample_keys = jax.vmap(lambda k: jax.random.split(k, num_samples))(keys).reshape(rows, -1)  # (B*S, 2)
    init = (
        jnp.int32(0),
        jnp.full((rows,), start_token, jnp.int32),
        state,
        jnp.zeros((rows,), bool),  # done
        jnp.zeros((rows,), jnp.int32),  # lengths
        jnp.zeros((rows,), jnp.float32),  # log p
        jnp.full((max_steps, rows), end_token, jnp.int32),
    )

    def cond(carry):
        t, _, _, done, _, _, _ = carry
        return (t < max_steps) & ~jnp.all(done)

    def body(carry):
        t, prev, state, done, lengths, logprob, tokens = carry
        probs, state, _ = model.decode_step(params, memory, prev, state)  # (B*S, V)
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(sample_keys)
        k = jax.vmap(lambda kk, p: tempered_draw(kk, p[None], temperature)[0])(step_keys, probs)  # (B*S,)
        p_k = jnp.take_along_axis(probs, k[:, None], axis=1)[:, 0]
        live = ~done
        tokens = tokens.at[t].set(jnp.where(live, k, end_token))
        lengths = lengths + live.astype(jnp.int32)
        logprob = logprob + jnp.where(live, jnp.log(p_k), 0.0)
        return t + 1, k, state, done | (k == end_token), lengths, logprob, tokens

    _, _, _, _, lengths, logprob, tokens = jax.lax.while_loop(cond, body, init)
    shape = (batch, num_samples)
    return tokens.T.reshape(*shape, max_steps), lengths.reshape(shape), logprob.reshape(shape)


# --------------------------------------------------------------------------- beam search


def _beam_loop(
    model: Model, params: Params, memory: Memory, state: State, *, beam_width: int, start_token: int,
    end_token: int, max_steps: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The search of :func:`beam_batch`: all ``K`` final beams, ``(B, K, S)``, ``(B, K)``, ``(B, K)``."""
    batch, k_beams = state[0].shape[0], beam_width
    # (B*K, ...): beam j of row b lives at b*K + j, for the state and the memory alike
    tile = lambda a: jnp.repeat(a, k_beams, axis=0)  # noqa: E731
    state, memory = jax.tree.map(tile, state), jax.tree.map(tile, memory)
    init = (
        jnp.int32(0),
        jnp.full((batch * k_beams,), start_token, jnp.int32),
        state,
        jnp.zeros((batch, k_beams), bool),  # done
        jnp.zeros((batch, k_beams), jnp.int32),  # lengths
        jnp.full((batch, k_beams), -jnp.inf, jnp.float32).at[:, 0].set(0.0),  # log p
        jnp.full((batch, k_beams, max_steps), end_token, jnp.int32),
    )

    def cond(carry):
        t, _, _, done, _, scores, _ = carry
        # a beam at -inf (possible when V < K) can never win; do not wait for it
        return (t < max_steps) & ~jnp.all(done | jnp.isneginf(scores))

    def body(carry):
        t, prev, state, done, lengths, scores, tokens = carry
        probs, state, _ = model.decode_step(params, memory, prev, state)  # (B*K, V)
        vocab = probs.shape[-1]
        logp = jnp.log(probs).reshape(batch, k_beams, vocab)  # (B, K, V)
        # a finished beam's only proposal: itself, at column end_token, score unchanged
        stay = jnp.full((vocab,), -jnp.inf, jnp.float32).at[end_token].set(0.0)
        proposals = scores[..., None] + jnp.where(done[..., None], stay, logp)  # (B, K, V)
        scores, flat_idx = jax.lax.top_k(proposals.reshape(batch, k_beams * vocab), k_beams)  # (B, K)
        src = flat_idx // vocab  # which beam each survivor extends
        tok = (flat_idx % vocab).astype(jnp.int32)
        src_done = jnp.take_along_axis(done, src, axis=1)
        tokens = jnp.take_along_axis(tokens, src[..., None], axis=1)
        tokens = tokens.at[:, :, t].set(jnp.where(src_done, end_token, tok))
        lengths = jnp.take_along_axis(lengths, src, axis=1) + (~src_done).astype(jnp.int32)
        done = src_done | (tok == end_token)
        rows = (jnp.arange(batch)[:, None] * k_beams + src).reshape(-1)  # (B*K,)
        state = jax.tree.map(lambda a: a[rows], state)  # each survivor takes its source's state
        return t + 1, tok.reshape(-1), state, done, lengths, scores, tokens

    _, _, _, _, lengths, scores, tokens = jax.lax.while_loop(cond, body, init)
    return tokens, lengths, scores


@functools.partial(
    jax.jit, static_argnames=("beam_width", "keep_greedy", "start_token", "end_token", "max_steps", "model")
)
def beam_batch(
    params: Params,
    encoder_tokens: jax.Array,
    length_alpha: float | jax.Array = 0.0,
    encoder_lengths: jax.Array | None = None,
    *,
    beam_width: int,
    keep_greedy: bool = True,
    start_token: int,
    end_token: int,
    max_steps: int,
    model: Model | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Beam search of width ``K`` over a batch; returns the best hypothesis of each row.

    Each row keeps ``K`` partial outputs (beams) with scores ``s = log p(y_1..y_t | x)``.
    At every step each live beam proposes all ``V`` one-character extensions with score
    ``s + log p(v | y_<=t, x)``; a finished beam (it emitted ``end_token``) proposes only
    itself, unchanged. The ``K`` best of the ``K * V`` proposals survive (``lax.top_k``),
    their decoder states are gathered from the beams they extend (the encoder's memory is
    tiled once, ``K`` copies per row). At step 0 all beams hold the same start, so only
    beam 0 proposes (the others start at ``-inf``). The search stops when every beam of
    every row has finished, or after ``max_steps``. With ``K = 1`` every step keeps the
    single most probable character: greedy decoding.

    The winner of each row is the final beam with the highest

    .. math::  \\text{rank} = \\log p(y \\mid x) \\,/\\, |y|^{\\alpha}

    (``length_alpha`` = α; 0 ranks by plain log-probability, 1 by log-probability per
    character, which stops beam search from preferring short outputs). Pruning always
    uses the plain log-probability.

    ``keep_greedy`` (default) also runs greedy decoding and lets its output compete in
    the final ranking. Plain beam search can lose the greedy output: when ``K`` other
    prefixes score higher at some step it is pruned, and those prefixes may end lower
    than greedy's output would have (on the tests' tiny model this happens for 3 of 140
    sentences at ``K = 2``). With it, the result never ranks below greedy's; it costs
    one more decoder row per ``K``.

    Returns:
        ``tokens (B, max_steps)``, ``lengths (B,)`` and ``logprob (B,)`` of each row's
        winner, as :func:`greedy_batch` returns them.
    """
    model = model or model_for(params)
    statics = dict(start_token=start_token, end_token=end_token, max_steps=max_steps)
    memory, state = model.encode(params, encoder_tokens, _lengths(encoder_tokens, encoder_lengths))
    tokens, lengths, scores = _beam_loop(model, params, memory, state, beam_width=beam_width, **statics)
    if keep_greedy and beam_width > 1:
        g_tokens, g_lengths, g_scores, _ = _greedy_loop(model, params, memory, state, **statics)
        # greedy's output joins as candidate K; on a tie the beam's (earlier) wins
        tokens = jnp.concatenate([tokens, g_tokens[:, None]], axis=1)  # (B, K+1, S)
        lengths = jnp.concatenate([lengths, g_lengths[:, None]], axis=1)
        scores = jnp.concatenate([scores, g_scores[:, None]], axis=1)
    ranking = scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_alpha  # (B, K or K+1)
    best = jnp.argmax(ranking, axis=1)  # (B,)
    return (
        jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0],  # (B, max_steps)
        jnp.take_along_axis(lengths, best[:, None], axis=1)[:, 0],
        jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0],
    )


# --------------------------------------------------------------------------- many sentences


@dataclass(frozen=True)
class Hypothesis:
    """One decoded sentence.

    Attributes:
        chars: the emitted characters as the seed returns them, ``"\\n"`` included when
            the decoder stopped by itself.
        logprob: ``log p(chars | input)`` under the model.
    """

    chars: str
    logprob: float

    @property
    def finished(self) -> bool:
        """Whether the decoder emitted the end token (rather than hitting the length limit)."""
        return self.chars.endswith(END)

    @property
    def text(self) -> str:
        """The translation: ``chars`` without the end token."""
        return self.chars.removesuffix(END)


def _bucket(n: int, batch_size: int) -> int:
    """Rows per call: the next power of two >= n, at most ``batch_size`` (few compilations)."""
    return min(batch_size, 1 << max(0, (n - 1).bit_length()))


def decode_tokens(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
    *,
    beam: int = 1,
    length_alpha: float = 0.0,
    batch_size: int = 256,
    input_lengths: Sequence[int] | None = None,
    keep_greedy: bool = True,
    model: Model | None = None,
) -> list[Hypothesis]:
    """Decode ``encoder_tokens (N, T_enc)`` in batches; one :class:`Hypothesis` per row, in order.

    ``beam=1`` uses :func:`greedy_batch`, ``beam>1`` :func:`beam_batch` (``keep_greedy``
    passed on). Rows are decoded in chunks of ``batch_size`` (the last chunk padded with
    copies of its first row up to a power of two, so a few shapes are compiled, not one
    per chunk). When ``input_lengths`` is given, rows are
    grouped by input length first: sentences of similar length finish at similar steps, so
    the ``while_loop`` of each chunk ends sooner; they are also the encoder lengths a model
    with attention masks by (without them every row fills the width). ``model``: the
    model's functions (default: the seed LSTM). Results are returned in input order.
    """
    if beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    encoder_tokens = np.asarray(encoder_tokens, np.int32)
    n = encoder_tokens.shape[0]
    if n == 0:
        return []
    if input_lengths is None:
        order, lengths_all = np.arange(n), np.full(n, encoder_tokens.shape[1], np.int32)
    else:
        lengths_all = np.asarray(input_lengths, np.int32)
        order = np.argsort(lengths_all, kind="stable")
    statics = dict(
        start_token=target_vocab.index[START],
        end_token=target_vocab.index[END],
        max_steps=max_decoder_seq_length + 1,  # the seed stops after max_decoder_seq_length + 1 chars
        model=model or model_for(params),
    )
    chars = target_vocab.chars
    out: list[Hypothesis | None] = [None] * n
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        rows = _bucket(len(idx), batch_size)
        padded = np.concatenate([idx, np.full(rows - len(idx), idx[0])])
        x, x_len = jnp.asarray(encoder_tokens[padded]), jnp.asarray(lengths_all[padded])
        if beam == 1:
            tokens, lengths, logprob = greedy_batch(params, x, x_len, **statics)
        else:
            tokens, lengths, logprob = beam_batch(
                params, x, jnp.float32(length_alpha), x_len, beam_width=beam, keep_greedy=keep_greedy, **statics
            )
        tokens, lengths, logprob = jax.device_get((tokens, lengths, logprob))
        for j, i in enumerate(idx):
            out[i] = Hypothesis("".join(chars[t] for t in tokens[j, : lengths[j]]), float(logprob[j]))
    return out  # type: ignore[return-value]


def sample_tokens(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
    *,
    samples: int,
    temperature: float,
    seed: int,
    sentence_numbers: Sequence[int] | None = None,
    batch_size: int = 256,
    input_lengths: Sequence[int] | None = None,
    model: Model | None = None,
) -> list[list[Hypothesis]]:
    """``samples`` :class:`Hypothesis` per row of ``encoder_tokens (N, T_enc)``, in order.

    :func:`sample_batch` in chunks of ``batch_size`` rows (padded to a power of two, as
    :func:`decode_tokens`). Row ``i`` draws with the key ``fold_in(PRNGKey(seed), n_i)``,
    ``n_i = sentence_numbers[i]`` (default ``i``): the same seed gives the same samples
    whatever the chunking.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not (temperature >= 0.0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    encoder_tokens = np.asarray(encoder_tokens, np.int32)
    n = encoder_tokens.shape[0]
    numbers = np.arange(n) if sentence_numbers is None else np.asarray(sentence_numbers)
    lengths_all = np.full(n, encoder_tokens.shape[1], np.int32) if input_lengths is None else np.asarray(input_lengths, np.int32)
    statics = dict(
        num_samples=samples, start_token=target_vocab.index[START], end_token=target_vocab.index[END],
        max_steps=max_decoder_seq_length + 1, model=model or model_for(params),
    )
    chars = target_vocab.chars
    out: list[list[Hypothesis]] = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        padded = np.concatenate([idx, np.full(_bucket(len(idx), batch_size) - len(idx), idx[0])])
        tokens, lengths, logprob = jax.device_get(sample_batch(
            params, jnp.asarray(encoder_tokens[padded]), sentence_keys(seed, numbers[padded]),
            jnp.float32(temperature), jnp.asarray(lengths_all[padded]), **statics,
        ))
        for j in range(len(idx)):
            out.append([
                Hypothesis("".join(chars[t] for t in tokens[j, s, : lengths[j, s]]), float(logprob[j, s]))
                for s in range(samples)
            ])
    return out


# --------------------------------------------------------------------------- user text


def check_trained(trained, where: str = "checkpoint") -> None:
    """Refuse a model whose parameter shapes do not fit its vocabularies.

    Decoding such a model would fail deep inside JAX (or index out of range silently), so
    say here which array is wrong. Raises :class:`minis2s.checkpoint.CheckpointError`.
    """
    from .checkpoint import CheckpointError

    p = trained.params
    v_in, v_out = len(trained.input_vocab), len(trained.target_vocab)
    try:
        h = p["decoder"]["recurrent_kernel"].shape[0]
        sizes = models.config_for(trained.config, trained.input_vocab, trained.target_vocab, latent_dim=h)
        for path, shape in models.param_shapes(sizes).items():
            node = p
            for key in path.split("/"):
                node = node[key]
            got = tuple(node.shape)
            if got != shape:
                raise CheckpointError(
                    f"{where}: {path} has shape {got}, expected {shape} for "
                    f"{v_in} input and {v_out} target characters and latent size {h}"
                )
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{where}: parameters incomplete (missing {e})") from None
    for c in (START, END):
        if c not in trained.target_vocab.index:
            raise CheckpointError(f"{where}: the target vocabulary lacks the {c!r} token")
    if PAD not in trained.input_vocab.index:
        raise CheckpointError(f"{where}: the input vocabulary lacks the padding character ' '")



ON_ERROR = ("fail", "skip", "truncate")


class InputError(ValueError):
    """User text the model cannot take.

    ``problems`` holds one line per bad input (which input, which characters or what
    length); ``hint`` says what the user can do. ``str()`` gives all of it.
    """

    def __init__(self, problems: Sequence[str], hint: str = ""):
        self.problems = list(problems)
        self.hint = hint
        super().__init__("\n".join(self.problems + ([hint] if hint else [])))


def describe_char(c: str) -> str:
    """``'é' (U+00E9 LATIN SMALL LETTER E WITH ACUTE)``; unprintable characters by code only."""
    name = unicodedata.name(c, "")
    shown = repr(c) if c.isprintable() else "unprintable"
    return f"{shown} (U+{ord(c):04X}{' ' + name if name else ''})"


def _snippet(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class Prepared:
    """Text ready for the encoder, or the reason it is not.

    Attributes:
        source: the text as given.
        text: what is fed to the encoder (``source``, or its repaired form), or ``None``
            when the input is skipped.
        problem: what was wrong with ``source`` (and what was done), else ``None``.
    """

    source: str
    text: str | None
    problem: str | None


def prepare_inputs(
    texts: Sequence[str], vocab: Vocab, max_length: int, on_error: str = "fail", first_number: int = 1
) -> list[Prepared]:
    """Check every text against the encoder's vocabulary and length.

    ``on_error``:

    - ``"fail"``: raise :class:`InputError` listing every bad input (nothing is decoded);
    - ``"skip"``: keep the problem, decode nothing for that input (``text=None``);
    - ``"truncate"``: delete the characters outside the vocabulary, cut what is left to
      ``max_length`` characters, and say so in ``problem``.

    Inputs are numbered from ``first_number`` in messages (command-line position or line).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    out: list[Prepared] = []
    for number, source in enumerate(texts, start=first_number):
        reasons = []
        unknown = vocab.unknown(source)
        if unknown:
            shown = ", ".join(describe_char(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            reasons.append(f"{len(unknown)} character(s) outside the training vocabulary: {shown}{more}")
        kept = "".join(c for c in source if c not in set(unknown)) if unknown else source
        if len(kept) > max_length:
            reasons.append(f"{len(kept)} characters, longer than the encoder's {max_length}")
        if not reasons:
            out.append(Prepared(source, source, None))
            continue
        problem = f"input {number} {_snippet(source)}: " + "; ".join(reasons)
        if on_error == "truncate":
            fixed = kept[:max_length]
            out.append(Prepared(source, fixed, f"{problem}; translated as {_snippet(fixed)}"))
        else:
            out.append(Prepared(source, None, problem))
    if on_error == "fail":
        problems = [p.problem for p in out if p.problem]
        if problems:
            raise InputError(problems, "use --on-error skip or --on-error truncate to go on without them")
    return out


@dataclass(frozen=True)
class Translation:
    """The result for one input: ``output`` is ``""`` for an empty or skipped input."""

    source: str
    output: str
    problem: str | None = None
    hypothesis: Hypothesis | None = None


def translate(
    trained,
    texts: Sequence[str],
    *,
    beam: int = 1,
    length_alpha: float = 0.0,
    on_error: str = "fail",
    batch_size: int = 256,
    first_number: int = 1,
) -> list[Translation]:
    """Translate ``texts`` with a :class:`minis2s.checkpoint.Trained` model, order kept.

    An empty text translates to ``""`` without running the model (the model was never
    trained on empty input). Bad inputs are handled as :func:`prepare_inputs` says.
    """
    prepared = prepare_inputs(
        texts, trained.input_vocab, trained.max_encoder_seq_length, on_error, first_number
    )

    def decode(tokens, lengths, todo_numbers):
        return decode_tokens(
            trained.params, tokens, trained.target_vocab, trained.max_decoder_seq_length, beam=beam,
            length_alpha=length_alpha, batch_size=batch_size, input_lengths=lengths, model=model_of(trained),
        )

    hyps = _decode_prepared(trained, prepared, decode)
    return [
        Translation(p.source, hyps[i].text if i in hyps else "", p.problem, hyps.get(i))
        for i, p in enumerate(prepared)
    ]


def translate_samples(
    trained,
    texts: Sequence[str],
    *,
    samples: int,
    temperature: float,
    seed: int,
    on_error: str = "fail",
    batch_size: int = 256,
    first_number: int = 1,
) -> list[list[Translation]]:
    """``samples`` sampled translations of each of ``texts`` (:func:`sample_batch`), order kept.

    Text ``i`` (0-based) draws with ``fold_in(PRNGKey(seed), i)``: reproducible for a seed,
    whatever else is translated with it. An empty or skipped text gives ``samples`` empty
    translations.
    """
    prepared = prepare_inputs(
        texts, trained.input_vocab, trained.max_encoder_seq_length, on_error, first_number
    )

    def decode(tokens, lengths, todo_numbers):
        return sample_tokens(
            trained.params, tokens, trained.target_vocab, trained.max_decoder_seq_length, samples=samples,
            temperature=temperature, seed=seed, sentence_numbers=todo_numbers, batch_size=batch_size,
            input_lengths=lengths, model=model_of(trained),
        )

    hyps = _decode_prepared(trained, prepared, decode)
    return [
        [Translation(p.source, hyps[i][j].text if i in hyps else "", p.problem, hyps[i][j] if i in hyps else None)
         for j in range(samples)]
        for i, p in enumerate(prepared)
    ]


def _decode_prepared(trained, prepared: Sequence[Prepared], decode) -> dict:
    """``{i: decode result}`` for every prepared text that needs the model, grouped by the
    width its encoder input is padded to; ``decode(tokens, lengths, numbers)`` returns one
    result per row (``numbers``: the rows' positions in ``prepared``)."""
    todo = [i for i, p in enumerate(prepared) if p.text]  # None (skipped) and "" need no model
    hyps: dict = {}
    enc_texts = [prepared[i].text for i in todo]
    max_enc = trained.max_encoder_seq_length
    # The encoder reads its padding too, so inputs are padded as training padded them: to the
    # full encoder length, or, for a --bucket model, only to the sentence's bucket width.
    if getattr(trained.config, "bucket", False):
        widths = [encoder_pad_width(len(t), max_enc) for t in enc_texts]
    else:
        widths = [max_enc] * len(enc_texts)
    for width in sorted(set(widths)):
        group = [j for j, w in enumerate(widths) if w == width]
        group_texts = [enc_texts[j] for j in group]
        decoded = decode(
            trained.input_vocab.encode(group_texts, width), [len(t) for t in group_texts], [todo[j] for j in group]
        )
        hyps.update((todo[j], h) for j, h in zip(group, decoded))
    return hyps


__all__ = [
    "Hypothesis", "InputError", "check_trained", "ON_ERROR", "Prepared", "Translation", "beam_batch", "decode_tokens",
    "describe_char", "greedy_batch", "greedy_reference", "model_for", "model_of", "prepare_inputs", "sample_batch", "sample_tokens",
    "sentence_keys", "tempered_draw", "translate", "translate_samples",
]
