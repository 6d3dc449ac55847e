"""Shared fixtures: small corpora written here, the shared fra.txt when present, a CLI runner,
the skip-or-fail rule for missing oracles and data, and one tree-equality assertion."""

from __future__ import annotations

import importlib
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


def in_ci() -> bool:
    """Whether this is a CI run: the environment variable ``CI`` is set (``.ci/run`` sets it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """A test oracle (Keras, sacreBLEU, matplotlib) or data file is absent: skip locally,
    fail in CI, where a skip would hide a broken oracle. Works inside a test or at module level."""
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str):
    """``import name`` for a test-only oracle, or :func:`missing` when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} is not installed (pip install -e '.[test]'): {e}")


@pytest.fixture
def shared_fra() -> Path:
    if not SHARED_FRA.is_file():
        missing(f"{SHARED_FRA} not present")
    return SHARED_FRA


def assert_trees_equal(a, b, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """``a`` and ``b`` are the same pytree: the same structure (keys, nesting, container types)
    first, then, leaf by leaf, the same shape and dtype and equal values (or within
    ``rtol``/``atol``). Empty trees are refused: comparing nothing proves nothing."""
    import jax
    import numpy as np

    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    assert sa == sb, f"tree structures differ:\n  {sa}\n  {sb}"
    la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves(b)
    assert la, "empty trees"
    for (path, x), y in zip(la, lb, strict=True):
        name = jax.tree_util.keystr(path)
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, f"{name}: shape {x.shape} != {y.shape}"
        assert x.dtype == y.dtype, f"{name}: dtype {x.dtype} != {y.dtype}"
        if rtol == 0.0 and atol == 0.0:
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)


def run_cli(*args: str, timeout: float = 600, input: str | None = None, env: dict | None = None):
    """Run ``python -m minis2s.cli ARGS`` in a subprocess with this checkout on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "minis2s.cli", *args],
        capture_output=True, text=True, timeout=timeout, input=input, env=full_env, cwd=ROOT,
    )
