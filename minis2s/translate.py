"""Text in, text out: translate English with a trained checkpoint.

A :class:`minis2s.trained.Trained` names its model (:func:`model_of`), so nothing here
takes a model separately. :func:`prepare_inputs` checks every text against the encoder's
vocabulary and length and says exactly what is wrong with text that does not fit (or
repairs or skips it, as ``--on-error`` asks); :func:`translate` and
:func:`translate_samples` pad the inputs as training padded them and run the chunked
driver of :mod:`minis2s.decode`.

Blank input (empty, or only whitespace: ``str.isspace``) translates to the empty string
without running the model, whatever ``on_error`` says: the model never saw such input in
training and would answer with a made-up sentence. ``minis2s translate`` prints an empty
line for it.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from . import models
from .bucketing import encoder_pad_width
from .checkpoint import CheckpointError
from .data import END, PAD, START, Vocab
from .decode import Hypothesis, decode_tokens, sample_tokens
from .models import Model, ModelConfig


def model_config_of(trained) -> ModelConfig:
    """The :class:`~minis2s.models.ModelConfig` a checkpoint was trained with."""
    return models.config_for(trained.config, trained.input_vocab, trained.target_vocab)


def model_of(trained) -> Model:
    """The :class:`~minis2s.models.Model` a :class:`minis2s.trained.Trained` was trained as."""
    return models.build(model_config_of(trained))


def check_trained(trained, where: str = "checkpoint") -> None:
    """Refuse a model whose parameter shapes do not fit its vocabularies.

    Decoding such a model would fail deep inside JAX (or index out of range silently), so
    say here which array is wrong. Raises :class:`minis2s.checkpoint.CheckpointError`.
    """
    p = trained.params
    v_in, v_out = len(trained.input_vocab), len(trained.target_vocab)
    try:
        sizes = model_config_of(trained)
        if "recurrent_kernel" in p.get("decoder", {}):  # a recurrent decoder: its size is read off the arrays
            sizes = dataclasses.replace(sizes, latent_dim=p["decoder"]["recurrent_kernel"].shape[0])
        h = sizes.latent_dim
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


def is_blank(text: str) -> bool:
    """Empty or only whitespace (``str.isspace``): nothing to translate."""
    return not text or text.isspace()


@dataclass(frozen=True)
class Prepared:
    """Text ready for the encoder, or the reason it is not.

    Attributes:
        source: the text as given.
        text: what is fed to the encoder (``source``, or its repaired form); ``""`` when
            there is nothing to translate (blank); ``None`` when the input is skipped.
        problem: what was wrong with ``source`` (and what was done), else ``None``.
    """

    source: str
    text: str | None
    problem: str | None


def prepare_inputs(
    texts: Sequence[str], vocab: Vocab, max_length: int, on_error: str = "fail", first_number: int = 1
) -> list[Prepared]:
    """Check every text against the encoder's vocabulary and length.

    A blank text (:func:`is_blank`) is never a problem: it becomes ``text=""``, which
    translates to ``""`` without the model. Otherwise ``on_error``:

    - ``"fail"``: raise :class:`InputError` listing every bad input (nothing is decoded);
    - ``"skip"``: keep the problem, decode nothing for that input (``text=None``);
    - ``"truncate"``: delete the characters outside the vocabulary, cut what is left to
      ``max_length`` characters, and say so in ``problem`` (what is left may be blank).

    Inputs are numbered from ``first_number`` in messages (command-line position or line).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    out: list[Prepared] = []
    for number, source in enumerate(texts, start=first_number):
        if is_blank(source):
            out.append(Prepared(source, "", None))
            continue
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
            fixed = "" if is_blank(fixed) else fixed
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
    """The result for one input: ``output`` is ``""`` for a blank or skipped input."""

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
    """Translate ``texts`` with a :class:`minis2s.trained.Trained` model, order kept.

    A blank text (empty or whitespace only) translates to ``""`` without running the model
    (the model was never trained on such input). Bad inputs are handled as
    :func:`prepare_inputs` says.
    """
    prepared = prepare_inputs(
        texts, trained.input_vocab, trained.max_encoder_seq_length, on_error, first_number
    )
    model = model_of(trained)

    def decode(tokens, lengths, todo_numbers):
        return decode_tokens(
            trained.params, tokens, trained.target_vocab, trained.max_decoder_seq_length, model=model, beam=beam,
            length_alpha=length_alpha, batch_size=batch_size, input_lengths=lengths,
        )

    hyps = _decode_prepared(trained, prepared, decode, once=True)
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
    """``samples`` sampled translations of each of ``texts`` (:func:`minis2s.search.sample_batch`), order kept.

    Text ``i`` (0-based) draws with ``fold_in(PRNGKey(seed), i)``: reproducible for a seed,
    whatever else is translated with it. A blank or skipped text gives ``samples`` empty
    translations.
    """
    prepared = prepare_inputs(
        texts, trained.input_vocab, trained.max_encoder_seq_length, on_error, first_number
    )
    model = model_of(trained)

    def decode(tokens, lengths, todo_numbers):
        return sample_tokens(
            trained.params, tokens, trained.target_vocab, trained.max_decoder_seq_length, model=model,
            samples=samples, temperature=temperature, seed=seed, sentence_numbers=todo_numbers,
            batch_size=batch_size, input_lengths=lengths,
        )

    hyps = _decode_prepared(trained, prepared, decode)
    return [
        [Translation(p.source, hyps[i][j].text if i in hyps else "", p.problem, hyps[i][j] if i in hyps else None)
         for j in range(samples)]
        for i, p in enumerate(prepared)
    ]


def _decode_prepared(trained, prepared: Sequence[Prepared], decode, once: bool = False) -> dict:
    """``{i: decode result}`` for every prepared text that needs the model, grouped by the
    width its encoder input is padded to; ``decode(tokens, lengths, numbers)`` returns one
    result per row (``numbers``: the rows' positions in ``prepared``). ``once``: a text given
    several times is decoded once and its result shared (greedy and beam search depend on the
    text alone; a test split repeats a source once per translation: 8,386 lines, ~1.5 each)."""
    todo = [i for i, p in enumerate(prepared) if p.text]  # None (skipped) and "" (blank) need no model
    first: dict[str, int] = {}
    if once:
        for i in todo:
            first.setdefault(prepared[i].text, i)
        todo = sorted(first.values())
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
    if once:
        hyps.update((i, hyps[first[p.text]]) for i, p in enumerate(prepared) if p.text and i not in hyps)
    return hyps


__all__ = [
    "InputError", "ON_ERROR", "Prepared", "Translation", "check_trained", "describe_char", "is_blank",
    "model_config_of", "model_of", "prepare_inputs", "translate", "translate_samples",
]
