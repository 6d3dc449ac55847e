"""The ``minis2s`` command: one module per subcommand (``train``, ``translate``,
``evaluate``, ``plot``, ``gradcheck``), each parsing its flags, calling the library and
printing. Errors the user can act on are one line and a non-zero exit status:

- 2: a bad flag, bad data or a bad checkpoint (argparse's own usage errors too);
- 3: training diverged (the loss became NaN or infinite);
- 1: the system refused (disk full, permissions, out of memory), or gradcheck failed;
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys

from .. import checkpoint, resources
from ..data import DataError
from . import evaluate, gradcheck, plot, train, translate
from .options import ALL, SEED_MAX, SEED_MIN, UsageError, version

COMMANDS = [train.add, translate.add, evaluate.add, plot.add, gradcheck.add]

_load_data = train.load_data  # the name tests/test_reliability.py calls


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minis2s", description="Character-level English-to-French seq2seq in pure JAX"
    )
    parser.add_argument("--version", action="version", version=f"minis2s {version()}",
                        help="print the version of minis2s and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, checkpoint.CheckpointError, ValueError) as e:
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # callbacks.NonFiniteLoss: the message says where and what is kept
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 3
    except OSError as e:  # disk full, permissions: name the path, no traceback
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        if not resources.is_out_of_memory(e):
            raise
        lower = "--latent-dim or --batch-size" if args.command == "train" else "--batch-size"
        first = (str(e).strip().splitlines() or ["MemoryError"])[0][:200]
        print(f"minis2s {args.command}: error: out of memory ({first}); lower {lower}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(train.interrupted_advice(args) if args.command == "train" else "interrupted", file=sys.stderr)
        return 130


__all__ = ["ALL", "COMMANDS", "SEED_MAX", "SEED_MIN", "UsageError", "build_parser", "main"]
