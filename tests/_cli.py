"""Run the ``minis2s`` command in-process, as the CLI tests do."""

from __future__ import annotations

import contextlib
import io
import sys

from minis2s import cli


def run(argv, stdin: bytes | None = None):
    """``cli.main(argv)`` in-process: ``(rc, stdout, stderr)``; argparse's exits become ``rc``."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli.main(argv)
            except SystemExit as e:  # argparse's usage errors
                rc = e.code
    finally:
        sys.stdin = old_stdin
    return rc, out.getvalue(), err.getvalue()
