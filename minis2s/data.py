"""Data: read ``fra.txt`` (or the ``fra-eng.zip`` that holds it), build the character
vocabularies and the token arrays exactly as the Keras seed example does.

The seed turns each line ``English<TAB>French[<TAB>attribution]`` into

- an input text (English), and
- a target text ``"\\t" + French + "\\n"`` (tab = start token, newline = end token),

sorts the set of characters seen on each side into a vocabulary, and pads every sequence
with ``" "`` up to the longest text of its side. Three one-hot float arrays follow:

- ``encoder_input_data  (N, T_enc, V_in)``: the English characters, then spaces;
- ``decoder_input_data  (N, T_dec, V_out)``: the target characters, then spaces;
- ``decoder_target_data (N, T_dec, V_out)``: ``decoder_input_data`` shifted left by one
  step (teacher forcing: at step t the decoder sees character t and must predict t+1),
  with a space in the last position.

minis2s keeps the same information as integer tokens ``(N, T)`` (a one-hot row is just
the index of its 1), and :func:`one_hot` rebuilds the seed's float arrays when needed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

PAD = " "
START = "\t"
END = "\n"

DATA_URL = "http://www.manythings.org/anki/fra-eng.zip"
CACHE_ENV = "MINIS2S_CACHE"
ZIP_MEMBER = "fra.txt"


class DataError(ValueError):
    """A problem with the user's data, with a message that says what to do."""


# --------------------------------------------------------------------------- reading


def _decode(raw: bytes, source: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{source}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from None
    # A byte-order mark is an encoding artefact, not a character of the corpus.
    return text.removeprefix("\ufeff")


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """Return ``(text, source_name)`` of a ``fra.txt`` or of the ``fra.txt`` inside a zip."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file; pass --data PATH to a fra.txt or fra-eng.zip")
    if p.is_dir():
        raise DataError(f"{p}: is a directory; pass --data PATH to a fra.txt or fra-eng.zip file")
    if p.suffix.lower() == ".zip" or zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == ZIP_MEMBER]
                if not names:
                    raise DataError(
                        f"{p}: the zip holds no {ZIP_MEMBER} (it has: {', '.join(zf.namelist()[:5])}); "
                        "pass --data PATH to a fra.txt or to the fra-eng.zip from manythings.org"
                    )
                raw = zf.read(names[0])
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error, OSError) as e:
            raise DataError(f"{p}: not a readable zip ({e}); download it again") from None
        return _decode(raw, f"{p}!{names[0]}"), f"{p}!{names[0]}"
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None
    if not raw.strip():
        raise DataError(f"{p}: the file is empty; expected lines 'English<TAB>French'")
    return _decode(raw, str(p)), str(p)


def parse_pairs(text: str, num_samples: int | None, source: str = "<text>") -> tuple[list[str], list[str]]:
    """Split ``text`` into the first ``num_samples`` (English, French) pairs.

    Each line is ``English<TAB>French`` or ``English<TAB>French<TAB>attribution``; a line
    with no TAB, or with an empty (or blank) English or French side, raises
    :class:`DataError` naming ``source`` and the line number. Line
    endings ``\\n`` and ``\\r\\n`` are both accepted; blank lines at the end are ignored.
    ``num_samples=None`` takes every line.
    """
    if num_samples is not None and num_samples <= 0:
        raise DataError(f"num_samples must be positive, got {num_samples}")
    lines = text.split("\n")
    inputs: list[str] = []
    targets: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        if num_samples is not None and len(inputs) >= num_samples:
            break
        line = line.removesuffix("\r")  # CRLF line endings
        if "\r" in line:
            raise DataError(
                f"{source}:{lineno}: carriage return (\\r) inside a line; the file seems to use old Mac "
                "line endings; convert it to \\n line endings"
            )
        if not line.strip():
            if any(rest.strip() for rest in lines[lineno:]):
                raise DataError(f"{source}:{lineno}: empty line inside the data; remove it")
            break
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{source}:{lineno}: expected 'English<TAB>French', found no TAB: {line[:60]!r}")
        for side, field in (("English", fields[0]), ("French", fields[1])):
            if not field.strip():  # nothing to learn from, and an empty target trains "stop at once"
                raise DataError(f"{source}:{lineno}: the {side} side is empty: {line[:60]!r}; remove the line "
                                "or fill it in")
        inputs.append(fields[0])
        targets.append(START + fields[1] + END)
    if not inputs:
        raise DataError(f"{source}: contains no sentence pairs; expected lines 'English<TAB>French'")
    return inputs, targets


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocab:
    """A sorted character vocabulary: ``chars[i]`` is token ``i``."""

    chars: tuple[str, ...]

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "Vocab":
        chars = set(PAD)  # the seed pads with " "; every real corpus has it anyway
        for t in texts:
            chars.update(t)
        return cls(tuple(sorted(chars)))

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` outside the vocabulary, in order of first appearance."""
        known = set(self.chars)
        return list(dict.fromkeys(c for c in text if c not in known))

    def encode(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Token array ``(N, length)``, padded with the token of ``" "``."""
        index = self.index
        out = np.full((len(texts), length), index[PAD], dtype=np.int32)
        for i, t in enumerate(texts):
            bad = self.unknown(t)
            if bad:
                raise DataError(f"text {i} {t!r} has characters outside the vocabulary: {bad}")
            if len(t) > length:
                raise DataError(f"text {i} {t!r} is {len(t)} characters, longer than {length}")
            out[i, : len(t)] = [index[c] for c in t]
        return out

    def decode(self, tokens: Sequence[int]) -> str:
        return "".join(self.chars[int(t)] for t in tokens)


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Dataset:
    """The seed's data as integer tokens.

    Attributes:
        input_texts, target_texts: the raw texts (targets carry ``\\t`` and ``\\n``).
        input_vocab, target_vocab: sorted character vocabularies.
        encoder_tokens: ``(N, T_enc)`` int32.
        decoder_tokens: ``(N, T_dec)`` int32, the decoder input (teacher forcing).
        target_tokens:  ``(N, T_dec)`` int32, ``decoder_tokens`` shifted left by one, padded.
    """

    input_texts: list[str]
    target_texts: list[str]
    input_vocab: Vocab
    target_vocab: Vocab
    encoder_tokens: np.ndarray
    decoder_tokens: np.ndarray
    target_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.input_texts)

    @functools.cached_property
    def encoder_lengths(self) -> np.ndarray:
        """``(N,)`` int32: characters in each English sentence (its encoder tokens before
        the padding)."""
        return np.fromiter(map(len, self.input_texts), np.int32, len(self.input_texts))

    @property
    def max_encoder_seq_length(self) -> int:
        return self.encoder_tokens.shape[1]

    @property
    def max_decoder_seq_length(self) -> int:
        return self.decoder_tokens.shape[1]

    def one_hot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The seed's ``encoder_input_data, decoder_input_data, decoder_target_data``."""
        return (
            one_hot(self.encoder_tokens, len(self.input_vocab)),
            one_hot(self.decoder_tokens, len(self.target_vocab)),
            one_hot(self.target_tokens, len(self.target_vocab)),
        )


def shift_targets(decoder_tokens: np.ndarray, pad_token: int) -> np.ndarray:
    """``target[:, t] = decoder[:, t + 1]``, and the pad token in the last step."""
    pad = np.full((decoder_tokens.shape[0], 1), pad_token, dtype=decoder_tokens.dtype)
    return np.concatenate([decoder_tokens[:, 1:], pad], axis=1)


def build_dataset(input_texts: list[str], target_texts: list[str]) -> Dataset:
    """Vocabularies, lengths and token arrays from parsed texts, as the seed builds them."""
    input_vocab = Vocab.from_texts(input_texts)
    target_vocab = Vocab.from_texts(target_texts)
    t_enc = max(len(t) for t in input_texts)
    t_dec = max(len(t) for t in target_texts)
    enc = input_vocab.encode(input_texts, t_enc)
    dec = target_vocab.encode(target_texts, t_dec)
    return Dataset(
        input_texts=input_texts,
        target_texts=target_texts,
        input_vocab=input_vocab,
        target_vocab=target_vocab,
        encoder_tokens=enc,
        decoder_tokens=dec,
        target_tokens=shift_targets(dec, target_vocab.index[PAD]),
    )


def load_dataset(path: str | os.PathLike, num_samples: int | None = 10000) -> Dataset:
    """Read ``path`` (``fra.txt`` or a zip holding it) and build the seed's dataset.

    ``num_samples`` larger than the file takes the whole file; ``None`` also does.
    """
    text, source = read_text(path)
    inputs, targets = parse_pairs(text, num_samples, source)
    return build_dataset(inputs, targets)


def one_hot(tokens: np.ndarray, depth: int, dtype=np.float32) -> np.ndarray:
    """``(N, T)`` integer tokens -> ``(N, T, depth)`` one-hot floats."""
    return (tokens[..., None] == np.arange(depth)).astype(dtype)


# --------------------------------------------------------------------------- download


def cache_dir() -> Path:
    """Where downloads go: ``$MINIS2S_CACHE``, else ``$XDG_CACHE_HOME/minis2s``, else ``~/.cache/minis2s``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "minis2s"


def _check_zip(path: Path) -> None:
    """A downloaded file is accepted when it is a zip whose members pass their CRC and hold fra.txt."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{path}: member {bad} fails its CRC check")
            if not any(n.rsplit("/", 1)[-1] == ZIP_MEMBER for n in zf.namelist()):
                raise DataError(f"{path}: the zip holds no {ZIP_MEMBER}")
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a zip ({e})") from None


def download(url: str = DATA_URL, dest_dir: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Download ``fra-eng.zip`` once into the cache folder and return its path.

    The file is written to a temporary name, checked (a readable zip holding ``fra.txt``,
    every member's CRC intact) and only then renamed into place, so an interrupted or
    corrupt download is never reused. A cached file is checked again before reuse; its
    SHA-256 is recorded next to it (``fra-eng.zip.sha256``) for reproducibility.
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest = dest_dir / url.rsplit("/", 1)[-1]
    if dest.exists():
        _check_zip(dest)
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    # manythings.org refuses urllib's default agent.
    req = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 (minis2s)"})
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
    try:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError) as e:
            raise DataError(
                f"could not download {url} ({e}). If this machine is offline, download "
                "fra-eng.zip elsewhere (or use any fra.txt) and pass --data PATH"
            ) from None
        _check_zip(Path(tmp))
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, dest)
        (dest_dir / (dest.name + ".sha256")).write_text(digest + "\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


DEMO_PATH = Path(__file__).parent / "demo" / "pairs.txt"  # 140 short pairs, the tests' fixture
PHRASES_PATH = Path(__file__).parent / "demo" / "phrases.txt"  # --data demo (minis2s/demo_corpus.py)


def resolve_data(path: str | os.PathLike | None) -> Path:
    """``--data PATH`` if given (``demo``: the templated corpus shipped with minis2s,
    :data:`PHRASES_PATH`), else the cached (or freshly downloaded) ``fra-eng.zip``."""
    if path is None:
        return download()
    return PHRASES_PATH if str(path) == "demo" else Path(path)


__all__ = [
    "DATA_URL", "DEMO_PATH", "PHRASES_PATH", "DataError", "Dataset", "PAD", "START", "END", "Vocab", "build_dataset",
    "cache_dir", "download", "load_dataset", "one_hot", "parse_pairs", "read_text",
    "resolve_data", "shift_targets",
]
