"""The rule in tests/conftest.py: a missing test oracle or data file skips locally and fails in CI."""

import pytest

from tests.conftest import in_ci, missing, require_module


@pytest.mark.parametrize("value,ci", [("", False), ("0", False), ("false", False), ("true", True), ("1", True)])
def test_ci_is_read_from_the_environment(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_missing_oracle_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_oracle_xyz"):
        require_module("no_such_oracle_xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this fails instead of skipping"):
        require_module("no_such_oracle_xyz")
    with pytest.raises(pytest.fail.Exception, match="fra.txt not present"):
        missing("fra.txt not present")
    assert require_module("json").dumps([1]) == "[1]"


def test_default_run_is_the_fast_tier_and_ci_runs_both():
    """pyproject's addopts deselect the slow tier; ``.ci/run`` selects every test again."""
    import tomllib

    from tests.conftest import ROOT

    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in opts["addopts"] and "-p no:cacheprovider" in opts["addopts"]
    assert any(m.startswith("slow:") for m in opts["markers"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert 'python -m pytest -q -m "slow or not slow"' in ci.splitlines()


def test_a_test_that_changes_the_process_is_caught_and_undone():
    import os
    import sys
    import types

    from tests.conftest import ROOT, process_state, undo_changes

    state = process_state()
    assert undo_changes(state) == []
    os.environ["MINIS2S_TEST_LEAK"] = "1"
    sys.path.append("/leaked")
    leaked = types.ModuleType("leaked_script")
    leaked.__file__ = str(ROOT / "scripts" / "leaked_script.py")
    sys.modules["leaked_script"] = leaked
    problems = undo_changes(state)
    assert problems == ["os.environ changed: ['MINIS2S_TEST_LEAK']", "sys.path changed: ['/leaked']",
                        "script modules left in sys.modules: ['leaked_script']"]
    assert "MINIS2S_TEST_LEAK" not in os.environ and "/leaked" not in sys.path and "leaked_script" not in sys.modules
    assert process_state() == state


def test_the_suite_keeps_its_files_in_its_own_temp_folder():
    """The compilation cache, Keras' and matplotlib's config and Hypothesis' storage go to one
    folder in the temp dir, for this process and for its children; none to the home or the checkout."""
    import os
    import tempfile
    from pathlib import Path

    import jax

    from tests.conftest import JAX_CACHE, ROOT, SUITE_DIR, child_env

    assert SUITE_DIR.parent == Path(tempfile.gettempdir()) and SUITE_DIR.is_dir()
    if JAX_CACHE:
        assert jax.config.jax_compilation_cache_dir == JAX_CACHE
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        assert child_env()["JAX_COMPILATION_CACHE_DIR"] == JAX_CACHE
    for name in ("KERAS_HOME", "MPLCONFIGDIR"):
        where = Path(os.environ[name])
        assert not where.is_relative_to(Path.home()) and not where.is_relative_to(ROOT), (name, where)


def test_fast_compile_flags_are_set_and_a_flag_xla_does_not_know_is_left_out(tmp_path, monkeypatch):
    """XLA aborts a process on an unknown flag, so conftest asks a child first (and keeps the
    answer): a made-up flag is refused, a real one accepted; the suite's flags are in XLA_FLAGS
    and ``optimised_env`` takes them out again."""
    import os

    from tests import conftest

    monkeypatch.setattr(conftest, "SUITE_DIR", tmp_path)
    assert conftest._xla_knows("--xla_cpu_no_such_flag_minis2s=true") is False
    assert conftest._xla_knows("--xla_backend_optimization_level=0") is True
    assert sorted(p.read_text() for p in tmp_path.glob("xla-knows-*")) == ["no", "yes"]
    assert "--xla_backend_optimization_level=0" in conftest.FAST_COMPILE
    flags = os.environ["XLA_FLAGS"].split()
    assert all(f in flags for f in conftest.FAST_COMPILE)
    assert not set(conftest.FAST_COMPILE) & set(conftest.optimised_env()["XLA_FLAGS"].split())
