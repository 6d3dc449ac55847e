"""Decoding many sentences: the searches of :mod:`minis2s.search` run in fixed-size chunks.

One driver, :func:`decode_rows`, cuts ``N`` encoded sentences into chunks of ``batch_size``
rows (the last chunk padded with copies of its first row up to a power of two, so a few
shapes are compiled, not one per chunk), sorts them by input length first when lengths are
given (sentences of similar length finish at similar steps, so each chunk's
``while_loop`` ends sooner), runs one search per chunk and returns :class:`Hypothesis`
objects in input order. :func:`decode_tokens` (greedy, beam) and :func:`sample_tokens`
(sampling) only check their settings and say which search the driver runs.

Every function takes the :class:`~minis2s.models.Model` it decodes; nothing falls back to
the seed. Text in, text out (vocabulary checks, padding, ``--on-error``) is
:mod:`minis2s.translate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import search
from .data import END, START, Vocab
from .models import Model, Params

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


# run(rows, encoder_tokens (R, T_enc), encoder_lengths (R,)) -> tokens (R, S, T), lengths (R, S),
# logprob (R, S): one chunk's search; ``rows`` are the chunk's row numbers in the input.
ChunkSearch = Callable[[np.ndarray, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def decode_rows(
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    run: ChunkSearch,
    *,
    batch_size: int = 256,
    input_lengths: Sequence[int] | None = None,
) -> list[list[Hypothesis]]:
    """``run`` over ``encoder_tokens (N, T_enc)`` in chunks; per row, its ``S`` hypotheses.

    ``input_lengths`` (characters before the padding) are passed to ``run`` as the encoder
    lengths a model with attention masks by (default: every row fills the width), and order
    the rows into chunks. Results come back in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    encoder_tokens = np.asarray(encoder_tokens, np.int32)
    n = encoder_tokens.shape[0]
    if input_lengths is None:
        order, lengths_all = np.arange(n), np.full(n, encoder_tokens.shape[1], np.int32)
    else:
        lengths_all = np.asarray(input_lengths, np.int32)
        order = np.argsort(lengths_all, kind="stable")
    chars = target_vocab.chars
    out: list[list[Hypothesis] | None] = [None] * n
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        padded = np.concatenate([idx, np.full(_bucket(len(idx), batch_size) - len(idx), idx[0])])
        tokens, lengths, logprob = jax.device_get(
            run(padded, jnp.asarray(encoder_tokens[padded]), jnp.asarray(lengths_all[padded]))
        )
        for j, i in enumerate(idx):
            out[i] = [
                Hypothesis("".join(chars[t] for t in tokens[j, s, : lengths[j, s]]), float(logprob[j, s]))
                for s in range(tokens.shape[1])
            ]
    return out  # type: ignore[return-value]


def _statics(target_vocab: Vocab, max_decoder_seq_length: int, model: Model) -> dict:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a minis2s.models.Model (models.build(config)), got {type(model).__name__}")
    return dict(
        model=model, start_token=target_vocab.index[START], end_token=target_vocab.index[END],
        max_steps=max_decoder_seq_length + 1,  # the seed stops after max_decoder_seq_length + 1 chars
    )


def decode_tokens(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
    *,
    model: Model,
    beam: int = 1,
    length_alpha: float = 0.0,
    batch_size: int = 256,
    input_lengths: Sequence[int] | None = None,
    keep_greedy: bool = True,
) -> list[Hypothesis]:
    """Decode ``encoder_tokens (N, T_enc)``; one :class:`Hypothesis` per row, in order.

    ``beam=1`` is :func:`minis2s.search.greedy_batch`, ``beam>1``
    :func:`minis2s.search.beam_batch` (``length_alpha`` and ``keep_greedy`` passed on),
    chunked by :func:`decode_rows`. ``model``: the model ``params`` belong to (required).
    """
    if beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam}")
    statics = _statics(target_vocab, max_decoder_seq_length, model)

    def run(rows, x, x_len):
        if beam == 1:
            tokens, lengths, logprob = search.greedy_batch(params, x, x_len, **statics)
        else:
            tokens, lengths, logprob = search.beam_batch(
                params, x, jnp.float32(length_alpha), x_len, beam_width=beam, keep_greedy=keep_greedy, **statics
            )
        return tokens[:, None], lengths[:, None], logprob[:, None]

    hyps = decode_rows(encoder_tokens, target_vocab, run, batch_size=batch_size, input_lengths=input_lengths)
    return [h for (h,) in hyps]


def sample_tokens(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
    *,
    model: Model,
    samples: int,
    temperature: float,
    seed: int,
    sentence_numbers: Sequence[int] | None = None,
    batch_size: int = 256,
    input_lengths: Sequence[int] | None = None,
) -> list[list[Hypothesis]]:
    """``samples`` :class:`Hypothesis` per row of ``encoder_tokens (N, T_enc)``, in order.

    :func:`minis2s.search.sample_batch` chunked by :func:`decode_rows`. Row ``i`` draws with
    the key ``fold_in(PRNGKey(seed), n_i)``, ``n_i = sentence_numbers[i]`` (default ``i``):
    the same seed gives the same samples whatever the chunking. ``model``: required.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not (temperature >= 0.0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    statics = _statics(target_vocab, max_decoder_seq_length, model)
    n = np.shape(encoder_tokens)[0]
    numbers = np.arange(n) if sentence_numbers is None else np.asarray(sentence_numbers)

    def run(rows, x, x_len):
        return search.sample_batch(
            params, x, search.sentence_keys(seed, numbers[rows]), jnp.float32(temperature), x_len,
            num_samples=samples, **statics,
        )

    return decode_rows(encoder_tokens, target_vocab, run, batch_size=batch_size, input_lengths=input_lengths)


__all__ = ["ChunkSearch", "Hypothesis", "decode_rows", "decode_tokens", "sample_tokens"]
