"""What every command shares: the number validator, ``all``, and option groups.

Each flag's value is checked by argparse itself, so a bad value is argparse's one-line
``minis2s CMD: error: argument --flag: ...`` before anything is loaded.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable


class UsageError(ValueError):
    """A combination of flags that cannot work."""


class _All:
    """``--num-samples all``: every pair. Distinct from ``None``, which means "not given"."""

    def __repr__(self) -> str:
        return "all"

    __str__ = __repr__


ALL = _All()

# What jax.random.PRNGKey takes: an integer that fits a signed 64-bit C long (it raises
# OverflowError beyond; tests/test_reliability.py checks both ends against it).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1

#: The widest beam ``--beam`` accepts: each step scores N x (target vocabulary) candidates,
#: and far wider beams only cost time (issue 21: ``--beam 100000`` ran for 37 s).
MAX_BEAM = 64


def number(kind: type = int, low: float | None = None, high: float | None = None, *,
           inclusive: bool = True, what: str | None = None) -> Callable[[str], int | float]:
    """An argparse ``type``: parse ``kind`` (``int``, or a finite ``float``) within ``[low, high]``
    (``(low, high)`` when not ``inclusive``; a missing end is unbounded).

    ``what`` says the range in the message (``must be WHAT, got VALUE``); by default it is
    worded from the bounds.
    """
    if what is None:
        if low is not None and high is not None:
            what = f"between {low:g} and {high:g} ({'inclusive' if inclusive else 'exclusive'})"
        elif kind is int and low == 1 and inclusive:
            what = "positive"
        elif kind is float and low == 0 and not inclusive:
            what = "a positive finite number"
        elif low is not None:
            what = f"{'an integer' if kind is int else 'a finite number'} {'>=' if inclusive else '>'} {low:g}"
        else:
            what = f"{'an integer' if kind is int else 'a finite number'} {'<=' if inclusive else '<'} {high:g}"
    noun = "an integer" if kind is int else "a number"

    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {s!r}") from None
        ok = kind is int or math.isfinite(v)
        if low is not None:
            ok = ok and (v >= low if inclusive else v > low)
        if high is not None:
            ok = ok and (v <= high if inclusive else v < high)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" messages
    return parse


positive_int = number(int, 1)
seed = number(int, SEED_MIN, SEED_MAX, what="an integer from -2**63 to 2**63-1 (a JAX PRNG seed)")


def beam_width(s: str) -> int:
    """A positive beam width up to :data:`MAX_BEAM`."""
    v = positive_int(s)
    if v > MAX_BEAM:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BEAM} (a wider beam only costs time), got {v}")
    return v


def count_or_all(s: str):
    """A positive count, or ``all`` (:data:`ALL`)."""
    return ALL if s == "all" else positive_int(s)


def num_samples_value(v):
    """A parsed ``--num-samples`` as :class:`minis2s.config.Config` holds it: ``None`` for all."""
    return None if v is ALL else v


def add_model_options(p, default_model: str | None = None, default_cell: str | None = None) -> None:
    """``--model``, ``--cell``, ``--attention-scale`` and ``--input-feeding``, their choices read from the registries."""
    from ..cells import CELLS
    from ..models import MODELS

    p.add_argument("--model", choices=tuple(MODELS), default=default_model,
                   help="which model: 'seed' is the Keras example (default seed)")
    p.add_argument("--cell", choices=tuple(CELLS), default=default_cell,
                   help="recurrent cell of the encoder and decoder (default lstm)")
    p.add_argument("--attention-scale", action="store_true", default=None,
                   help="luong: learn a scalar on the attention scores, Keras Attention(use_scale=True) "
                   "(default: off, as Attention())")
    p.add_argument("--input-feeding", action="store_true", default=None,
                   help="luong: feed the previous attentional vector to the decoder beside the previous "
                   "character (Luong et al. 2015, 3.3; default: off)")


def add_decoding_options(p) -> None:
    p.add_argument("--beam", type=beam_width, default=1, metavar="N",
                   help=f"beam search width, at most {MAX_BEAM} (1 = greedy, the seed's decoding; default 1)")
    p.add_argument("--length-alpha", type=number(float, 0.0), default=0.0, metavar="A",
                   help="beam search ranks finished outputs by log p / length**A (default 0: plain log p)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N",
                   help="sentences decoded per call of the jitted decoder (default 256)")


def add_show_option(p, default: int, what: str) -> None:
    """``--show N`` (``--demo N``, its old name in ``evaluate``, still works, with a note)."""
    p.add_argument("--show", type=number(int, 0), default=default, metavar="N",
                   help=f"decode the first N {what} at the end, as the seed does (default {default}; 0: none)")


class DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new one's ``dest`` and says so on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is an old name of {self.new}; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def allow_intermixed(p: argparse.ArgumentParser) -> None:
    """Let options come after positionals (``translate CKPT "Go." --beam 3 "Run!"``).

    Plain argparse stops filling a ``nargs="*"`` positional at the first option and then
    rejects the rest; this subparser (it has no subparsers of its own) parses intermixed.
    """
    plain = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        p.parse_known_args = plain  # the intermixed parse calls parse_known_args itself
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = parse_known_args

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def version() -> str:
    """The installed distribution's version, else the package's own ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("minis2s")
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__
