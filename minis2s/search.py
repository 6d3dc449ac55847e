"""Search: which characters a model emits for a batch of encoded sentences.

Every decoder follows the seed's ``decode_sequence`` rules: encode the padded English
tokens, feed the start token ``"\\t"``, and extend the output one character at a time until
the end token ``"\\n"`` or until ``max_steps = max_decoder_seq_length + 1`` characters (the
seed's loop stops when ``len(decoded) > max_decoder_seq_length``).

- :func:`greedy_reference`: the seed's loop, one sentence, one Python iteration and one
  device round trip per character. Kept as the oracle and as the "before" of the benchmark.
- :func:`extend`: the one batched loop, a ``lax.while_loop`` over decoder steps that ends
  when every row has emitted ``"\\n"`` (or at the step limit), parameterised by how the next
  character is chosen from ``p(. | y_<t, x)``: :func:`argmax_next` (greedy) or
  :func:`tempered_next` (a draw from ``p^(1/T)`` renormalised).
- :func:`greedy_batch` and :func:`sample_batch`: that loop, jitted, with each rule.
- :func:`beam_batch`: beam search of width ``K``, jitted the same way. Width 1 is greedy.

Every function takes the :class:`~minis2s.models.Model` it decodes; none guesses it, and
:func:`check_params` refuses parameters that are not that model's (a Luong checkpoint holds
every array the seed model reads, so decoding it as the seed would run and be wrong).

Scores are log-probabilities of the emitted characters, the end token included:
``log p(y | x) = sum_t log p(y_t | y_<t, x)``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .data import END, START, Vocab
from .models import Memory, Model, Params, State

# choose(probs (R, V), t) -> (R,) int32: the next character of every row at step t
ChooseNext = Callable[[jax.Array, jax.Array], jax.Array]


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """``{"encoder/kernel": (V_in, 4H), ...}``: every leaf's shape, named by its path."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(a)) for path, a in flat}


@functools.lru_cache(maxsize=64)
def _expected_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """What ``model.init`` makes, traced (nothing computed)."""
    return _shapes(jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32)))


def check_params(model: Model, params: Params) -> None:
    """``ValueError`` unless ``params`` has exactly the arrays ``model.init`` makes, in shape.

    Extra arrays are refused too: they mean the parameters belong to another model (Luong's
    hold all of the seed's plus ``combine``). Only shapes are read, so it also runs on
    tracers, once per compilation.
    """
    name = f"{model.config.model}/{model.config.cell}"
    try:
        got = _shapes(params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"parameters are not a dict of arrays for the {name} model: {e}") from None
    want = _expected_shapes(model)
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    if extra or missing:
        raise ValueError(
            f"parameters do not fit the {name} model: "
            + "; ".join(([f"it does not use {', '.join(extra)}"] if extra else [])
                        + ([f"missing {', '.join(missing)}"] if missing else []))
            + " (decode with the model the parameters were trained as)"
        )
    for path, shape in want.items():
        if got[path] != shape:
            raise ValueError(f"parameters do not fit the {name} model: {path} has shape {got[path]}, expected {shape}")


def check_steps(model: Model, max_steps: int) -> None:
    """``ValueError`` when ``max_steps`` decoder steps are more than ``model`` can take
    (:attr:`Model.max_steps <minis2s.models.base.Model>`: the transformer's learned positions)."""
    if model.max_steps is not None and max_steps > model.max_steps:
        raise ValueError(f"decoding up to {max_steps} characters needs more than the {model.max_steps} positions the "
                         f"{model.config.model} model has (--max-positions)")


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
    model: Model,
    encoder_length: int | None = None,
) -> str:
    """Decode one sentence exactly as the seed's ``decode_sequence`` does.

    Args:
        encoder_tokens: ``(T_enc,)`` or ``(1, T_enc)`` int tokens of one padded sentence.
        model: the model ``params`` belong to (required: nothing is guessed).
        encoder_length: characters before the padding (default: the whole width).
    Returns:
        the decoded characters, ending in ``"\\n"`` unless the limit
        (``max_decoder_seq_length + 1`` characters, as in the seed) stopped it first.
    """
    check_params(model, params)
    check_steps(model, max_decoder_seq_length + 1)
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


# --------------------------------------------------------------------------- one loop, two rules


def argmax_next(probs: jax.Array, t: jax.Array) -> jax.Array:
    """Greedy: ``y_t = argmax_v p(v | y_<t, x)``, ``(R, V) -> (R,)`` int32."""
    return jnp.argmax(probs, axis=-1).astype(jnp.int32)


def tempered_draw(key: jax.Array, probs: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """One token per row from ``q = p^(1/T) / sum_v p_v^(1/T)``; ``T = 0`` is the argmax.

    ``q = softmax(log p / T)`` is what :func:`jax.random.categorical` draws from (the
    Gumbel-max trick: ``argmax(log p / T + g)``, ``g`` standard Gumbel noise). ``probs``
    ``(B, V)``; ``key`` one key for the whole batch. Returns ``(B,)`` int32.
    """
    safe_t = jnp.maximum(temperature, jnp.finfo(probs.dtype).tiny)
    drawn = jax.random.categorical(key, jnp.log(probs) / safe_t, axis=-1)
    return jnp.where(temperature > 0, drawn, jnp.argmax(probs, axis=-1)).astype(jnp.int32)


def tempered_next(row_keys: jax.Array, temperature: float | jax.Array) -> ChooseNext:
    """Sampling: row ``r`` draws ``y_t ~ p^(1/T)`` with the key ``fold_in(row_keys[r], t)``.

    ``row_keys`` ``(R, 2)``, one per row; folding in the step means no key is used twice.
    """

    def choose(probs: jax.Array, t: jax.Array) -> jax.Array:
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(row_keys)  # (R, 2)
        return jax.vmap(lambda k, p: tempered_draw(k, p[None], temperature)[0])(step_keys, probs)

    return choose


def sentence_keys(seed: int, index: np.ndarray) -> jax.Array:
    """``(N, 2)`` keys: ``fold_in(PRNGKey(seed), i)`` for each sentence number ``i``."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(index, jnp.uint32))


def extend(
    model: Model, params: Params, memory: Memory, state: State, choose: ChooseNext, *, start_token: int,
    end_token: int, max_steps: int, with_extras: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
    """Feed each row its own choices, from the encoder's ``memory`` and ``state`` (``R`` rows).

    Step ``t`` computes ``p(. | y_<t, x)`` with one ``model.decode_step``, picks
    ``y_t = choose(p, t)`` and feeds it back. A row that has emitted ``end_token`` keeps
    computing (the batch is one matrix) but its tokens, length and score no longer change;
    the ``lax.while_loop`` stops when every row has, or after ``max_steps``.

    Returns ``tokens (R, max_steps)`` int32 (``end_token`` after the end), ``lengths (R,)``
    (the end token included), ``logprob (R,)`` (``sum_t log p(y_t | y_<t, x)`` of the
    emitted characters, untempered) and, with ``with_extras``, each step's ``extra`` arrays
    (the attention weights) as ``(R, max_steps, ...)``; else ``{}``.
    """
    check_steps(model, max_steps)
    rows = state[0].shape[0]
    start = jnp.full((rows,), start_token, jnp.int32)
    if with_extras:
        _, _, extra_shapes = jax.eval_shape(model.decode_step, params, memory, start, state)
        extras = jax.tree.map(lambda a: jnp.zeros((max_steps, *a.shape), a.dtype), extra_shapes)
    else:
        extras = {}
    init = (
        jnp.int32(0),
        start,  # previous token
        state,
        jnp.zeros((rows,), bool),  # done
        jnp.zeros((rows,), jnp.int32),  # lengths
        jnp.zeros((rows,), jnp.float32),  # log p
        jnp.full((max_steps, rows), end_token, jnp.int32),  # tokens, time-major: row t is contiguous
        extras,
    )

    def cond(carry):
        t, _, _, done, _, _, _, _ = carry
        return (t < max_steps) & ~jnp.all(done)

    def body(carry):
        t, prev, state, done, lengths, logprob, tokens, extras = carry
        probs, state, extra = model.decode_step(params, memory, prev, state)  # (R, V)
        k = choose(probs, t)  # (R,)
        p_k = jnp.take_along_axis(probs, k[:, None], axis=1)[:, 0]
        live = ~done
        tokens = tokens.at[t].set(jnp.where(live, k, end_token))
        lengths = lengths + live.astype(jnp.int32)
        logprob = logprob + jnp.where(live, jnp.log(p_k), 0.0)
        if with_extras:
            extras = jax.tree.map(lambda buf, e: buf.at[t].set(e), extras, extra)
        return t + 1, k, state, done | (k == end_token), lengths, logprob, tokens, extras

    _, _, _, _, lengths, logprob, tokens, extras = jax.lax.while_loop(cond, body, init)
    return tokens.T, lengths, logprob, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), extras)


def _encode(model: Model, params: Params, encoder_tokens, encoder_lengths) -> tuple[Memory, State]:
    check_params(model, params)  # at trace time: once per compilation
    return model.encode(params, encoder_tokens, _lengths(encoder_tokens, encoder_lengths))


@functools.partial(jax.jit, static_argnames=("start_token", "end_token", "max_steps", "model", "with_extras"))
def greedy_batch(
    params: Params,
    encoder_tokens: jax.Array,
    encoder_lengths: jax.Array | None = None,
    *,
    model: Model,
    start_token: int,
    end_token: int,
    max_steps: int,
    with_extras: bool = False,
):
    """Greedy decoding of a batch: ``y_t = argmax_v p(v | y_<t, x)`` for every row at once.

    :func:`extend` with :func:`argmax_next`.

    Args:
        encoder_tokens: ``(B, T_enc)`` int tokens, padded as in training.
        encoder_lengths: ``(B,)`` characters before the padding (default: the full width).
        model: the model ``params`` belong to (required).
        max_steps: the most characters per row (the seed: ``max_decoder_seq_length + 1``).
        with_extras: also return each step's ``extra`` arrays (attention weights).
    Returns:
        ``tokens (B, max_steps)``, ``lengths (B,)`` and ``logprob (B,)``; with
        ``with_extras`` a fourth item, a dict of ``(B, max_steps, ...)`` arrays.
    """
    memory, state = _encode(model, params, encoder_tokens, encoder_lengths)
    tokens, lengths, logprob, extras = extend(
        model, params, memory, state, argmax_next, start_token=start_token, end_token=end_token,
        max_steps=max_steps, with_extras=with_extras,
    )
    return (tokens, lengths, logprob, extras) if with_extras else (tokens, lengths, logprob)


@functools.partial(jax.jit, static_argnames=("num_samples", "start_token", "end_token", "max_steps", "model"))
def sample_batch(
    params: Params,
    encoder_tokens: jax.Array,
    keys: jax.Array,
    temperature: float | jax.Array = 1.0,
    encoder_lengths: jax.Array | None = None,
    *,
    model: Model,
    num_samples: int,
    start_token: int,
    end_token: int,
    max_steps: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``S = num_samples`` translations of each row, each character drawn from the softmax.

    At step ``t`` sample ``j`` of row ``b`` draws ``y_t ~ q``, ``q_v \\propto p(v | y_<t, x)^{1/T}``,
    and feeds it back as the next input. Lower ``T`` sharpens ``q`` towards the argmax
    (``T = 0`` *is* the argmax: greedy decoding, every sample the same); ``T = 1`` samples
    from the model itself; higher ``T`` flattens it. :func:`extend` with :func:`tempered_next`
    on the encoder's memory and state tiled ``S`` times (sample ``j`` of row ``b`` at row
    ``b*S + j``).

    Keys: ``keys[b]`` belongs to row ``b`` (:func:`sentence_keys`); it is split into one
    key per sample, and step ``t`` uses ``fold_in(sample key, t)``; no key is used twice.

    Returns:
        ``tokens (B, S, max_steps)``, ``lengths (B, S)`` and ``logprob (B, S)``, the
        untempered ``log p(y | x)`` of each sample under the model.
    """
    memory, state = _encode(model, params, encoder_tokens, encoder_lengths)
    batch = state[0].shape[0]
    tile = lambda a: jnp.repeat(a, num_samples, axis=0)  # noqa: E731
    memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)
    sample_keys = jax.vmap(lambda k: jax.random.split(k, num_samples))(keys).reshape(batch * num_samples, -1)
    tokens, lengths, logprob, _ = extend(
        model, params, memory, state, tempered_next(sample_keys, temperature), start_token=start_token,
        end_token=end_token, max_steps=max_steps,
    )
    shape = (batch, num_samples)
    return tokens.reshape(*shape, max_steps), lengths.reshape(shape), logprob.reshape(shape)


# --------------------------------------------------------------------------- beam search


def _beam_loop(
    model: Model, params: Params, memory: Memory, state: State, *, beam_width: int, start_token: int,
    end_token: int, max_steps: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The search of :func:`beam_batch`: all ``K`` final beams, ``(B, K, S)``, ``(B, K)``, ``(B, K)``."""
    check_steps(model, max_steps)
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
    model: Model,
    beam_width: int,
    keep_greedy: bool = True,
    start_token: int,
    end_token: int,
    max_steps: int,
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
    than greedy's output would have. With it, the result never ranks below greedy's; it
    costs one more decoder row per ``K``.

    Returns:
        ``tokens (B, max_steps)``, ``lengths (B,)`` and ``logprob (B,)`` of each row's
        winner, as :func:`greedy_batch` returns them.
    """
    statics = dict(start_token=start_token, end_token=end_token, max_steps=max_steps)
    memory, state = _encode(model, params, encoder_tokens, encoder_lengths)
    tokens, lengths, scores = _beam_loop(model, params, memory, state, beam_width=beam_width, **statics)
    if keep_greedy and beam_width > 1:
        g_tokens, g_lengths, g_scores, _ = extend(model, params, memory, state, argmax_next, **statics)
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


__all__ = [
    "ChooseNext", "argmax_next", "beam_batch", "check_params", "check_steps", "extend", "greedy_batch", "greedy_reference",
    "sample_batch", "sentence_keys", "tempered_draw", "tempered_next",
]
