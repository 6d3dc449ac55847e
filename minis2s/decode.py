"""Inference: turn English text into French with a trained model.

:func:`greedy_reference` is the seed's ``decode_sequence``, one sentence at a time:
encode, then feed the start token ``"\\t"`` and, at each step, the most probable
character of the previous step, until ``"\\n"`` or the length limit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .data import END, START, Vocab
from .model import Params, decode_step, encode

_encode = jax.jit(encode)
_decode_step = jax.jit(decode_step)


def greedy_reference(
    params: Params,
    encoder_tokens: np.ndarray,
    target_vocab: Vocab,
    max_decoder_seq_length: int,
) -> str:
    """Decode one sentence exactly as the seed's ``decode_sequence`` does.

    Args:
        encoder_tokens: ``(T_enc,)`` or ``(1, T_enc)`` int tokens of one padded sentence.
    Returns:
        the decoded characters, ending in ``"\\n"`` unless the limit
        (``max_decoder_seq_length + 1`` characters, as in the seed) stopped it first.
    """
    state = _encode(params, jnp.asarray(encoder_tokens).reshape(1, -1))
    token = jnp.array([target_vocab.index[START]], jnp.int32)
    decoded = ""
    while True:
        probs, state = _decode_step(params, token, state)
        k = int(jnp.argmax(probs[0]))
        char = target_vocab.chars[k]
        decoded += char
        if char == END or len(decoded) > max_decoder_seq_length:
            return decoded
        token = jnp.array([k], jnp.int32)
