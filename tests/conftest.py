"""Shared fixtures: small corpora written here, the shared fra.txt when present, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keras is a test-only oracle; it must use the JAX backend (set before any test imports it).
os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parent.parent
SHARED_FRA = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"
DEMO = ROOT / "minis2s" / "demo" / "pairs.txt"

# Eight short pairs a tiny model can memorise.
TINY_PAIRS = [
    ("Go.", "Va !"),
    ("Run!", "Cours !"),
    ("Hi.", "Salut."),
    ("Stop!", "Arrête !"),
    ("Wait.", "Attends."),
    ("I see.", "Je vois."),
    ("Help!", "À l'aide !"),
    ("Thanks.", "Merci."),
]


@pytest.fixture
def tiny_pairs():
    return list(TINY_PAIRS)


@pytest.fixture
def demo_path() -> Path:
    return DEMO


@pytest.fixture
def two_column_file(tmp_path) -> Path:
    p = tmp_path / "fra.txt"
    p.write_text("".join(f"{e}\t{f}\n" for e, f in TINY_PAIRS), encoding="utf-8")
    return p


@pytest.fixture
def three_column_file(tmp_path) -> Path:
    p = tmp_path / "fra3.txt"
    attribution = "CC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)"
    p.write_text("".join(f"{e}\t{f}\t{attribution}\n" for e, f in TINY_PAIRS), encoding="utf-8")
    return p


@pytest.fixture
def shared_fra() -> Path:
    if not SHARED_FRA.is_file():
        pytest.skip(f"{SHARED_FRA} not present")
    return SHARED_FRA


def run_cli(*args: str, timeout: float = 600, input: str | None = None, env: dict | None = None):
    """Run ``python -m minis2s.cli ARGS`` in a subprocess with this checkout on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "minis2s.cli", *args],
        capture_output=True, text=True, timeout=timeout, input=input, env=full_env, cwd=ROOT,
    )
