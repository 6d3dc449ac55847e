"""Shared fixtures: small corpora written here, the shared fra.txt when present, a CLI runner,
the skip-or-fail rule for missing oracles and data, one tree-equality assertion, the suite's
compilation cache, and a check that no test leaves the process changed."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Set once, here, before any test module is imported: the whole session (and every child it
# starts) sees the same values whatever order the tests run in.
# Keras is a test-only oracle; it must use the JAX backend (read when Keras is first imported).
os.environ["KERAS_BACKEND"] = "jax"


def _suite_dir() -> Path:
    """The suite's own folder for what outlives one run: in the system temp dir, one per user,
    never in the user's home or the checkout."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    path = Path(tempfile.gettempdir()) / f"minis2s-tests-{user}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


SUITE_DIR = _suite_dir()
# The oracles' own files go there too, not to ~/.keras, ~/.config/matplotlib or ./.hypothesis.
os.environ["KERAS_HOME"] = str(SUITE_DIR / "keras")
os.environ["MPLCONFIGDIR"] = str(SUITE_DIR / "matplotlib")
try:
    from hypothesis import configuration as _hypothesis_configuration
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_configuration.set_hypothesis_home_dir(SUITE_DIR / "hypothesis")  # its caches
    _hypothesis_settings.register_profile("minis2s-tests", database=None)  # no example database
    _hypothesis_settings.load_profile("minis2s-tests")
except ImportError:
    pass

# Two XLA flags make the suite's compilations cheaper. Its programs are tiny and most are run
# once, so compiling them is nearly all of its time:
# - the CPU backend at LLVM optimisation level 0 compiles them 2-3x faster (a transformer's init:
#   7.7 s against 3.0 s) and runs them a little slower;
# - the CPU backend's older element-wise emitters (``--xla_cpu_use_fusion_emitters=false``)
#   compile a one-operation program in about 15 ms instead of 25 (most eager operations are such
#   programs): the fast tier's first run on an idle 2-core machine, from an empty cache, took
#   2 min 30 s without it and 1 min 26 s with it, one run after the other (`time python -m pytest -q`).
# Every program and its oracle run under the same flags, and no test expects one CPU's
# rounding. Appended, so a flag given in the environment (or a test's own device count) still
# holds; a flag this jaxlib does not know (XLA aborts on one) is left out (:func:`_xla_knows`).
# Child processes inherit them (tests compare their numbers with this process's, bit for bit);
# one that runs a real model for minutes takes ``env=optimised_env()``: level 0's slower code
# there costs more than its faster compiles save (decoding the shipped model's test split ran
# 12 minutes and on).


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib's XLA accepts ``flag``: asked once per jaxlib release in a child
    process (XLA aborts the process on an unknown flag), the answer kept in the suite's folder."""
    from importlib.metadata import version

    name = flag.lstrip("-").split("=")[0]
    answer = SUITE_DIR / f"xla-knows-{name}-jaxlib-{version('jaxlib')}"
    if not answer.exists():
        probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True,
                               env={**os.environ, "XLA_FLAGS": flag}, timeout=300)
        answer.write_text("yes" if probe.returncode == 0 else "no")
    return answer.read_text() == "yes"


FAST_COMPILE = ("--xla_backend_optimization_level=0",  # long-standing: every supported jaxlib has it
                *(f for f in ("--xla_cpu_use_fusion_emitters=false",) if _xla_knows(f)))  # transitional: asked first
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *FAST_COMPILE]).strip()


def optimised_env() -> dict[str, str]:
    """``run_cli(..., env=optimised_env())``: a child compiled as users run minis2s."""
    return {"XLA_FLAGS": " ".join(f for f in os.environ["XLA_FLAGS"].split() if f not in FAST_COMPILE)}


# The persistent JAX compilation cache. Most of the suite's time is XLA compiling the same
# small programs; a warm cache serves them from disk. ``MINIS2S_TEST_JAX_CACHE`` overrides the
# place; an empty value turns the cache off.
JAX_CACHE = os.environ.get("MINIS2S_TEST_JAX_CACHE", str(SUITE_DIR / "jax-cache"))
if JAX_CACHE:
    Path(JAX_CACHE).mkdir(mode=0o700, parents=True, exist_ok=True)
    # Environment variables: read by JAX in this process when it is first imported and by every
    # subprocess a test starts (run_cli, the kill tests, the multi-device runs).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = JAX_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    import jax  # noqa: E402  (after the variables, so that it reads them; set again in case it was imported)

    jax.config.update("jax_compilation_cache_dir", JAX_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
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
    """``import name`` for a test-only oracle, or :func:`missing` when it cannot be imported.
    Variables the import adds to ``os.environ`` are removed again (Keras sets TensorFlow's
    ``TF_FORCE_GPU_ALLOW_GROWTH`` on its first import): the environment of later tests and
    their children does not depend on which test imported an oracle first."""
    before = set(os.environ)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} is not installed (pip install -e '.[test]'): {e}")
    finally:
        for added in set(os.environ) - before:
            del os.environ[added]


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


def split_tiers(cases: list, fast) -> list:
    """Parametrize ``cases`` with those at the positions in ``fast`` in the default run and the
    others marked slow: every case still runs in CI, and the fast tier compiles fewer programs."""
    return [case if i in fast else pytest.param(*(case if isinstance(case, tuple) else (case,)), marks=pytest.mark.slow)
            for i, case in enumerate(cases)]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this one's (the compilation cache included), this
    checkout first on ``PYTHONPATH``, then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 600, input: str | None = None, env: dict | None = None):
    """Run ``python -m minis2s.cli ARGS`` in a subprocess with this checkout on the path: a
    ``CompletedProcess``. The child runs in its own process group, which is killed if it
    outlives ``timeout`` (``TimeoutExpired``) or the test is interrupted while it runs."""
    argv = [sys.executable, "-m", "minis2s.cli", *args]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(**(env or {})), cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def load_script(name: str):
    """``scripts/NAME.py`` as a module object, without touching ``sys.path`` or ``sys.modules``
    (a script left in ``sys.modules`` would make later tests depend on the order they run in).
    ``name`` may hold a subfolder (``"figures/attention"``)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_minis2s_script_{name.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    scripts, before = str(path.parent), set(sys.modules)
    sys.path.insert(0, scripts)  # a script may import a sibling; only while it is executed
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(scripts)
        for name in _script_modules() - before:  # the siblings it imported
            del sys.modules[name]
    return module


def _script_modules() -> set[str]:
    scripts = str(ROOT / "scripts") + os.sep
    return {name for name, m in list(sys.modules.items())
            if name.startswith("scripts.") or (getattr(m, "__file__", None) or "").startswith(scripts)}


def _environ() -> dict[str, str]:
    """``os.environ`` less what pytest itself sets for the running test."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def process_state() -> tuple:
    """What a test must leave as it found it: ``os.environ``, ``sys.path``, script modules."""
    return _environ(), list(sys.path), _script_modules()


def undo_changes(state: tuple) -> list[str]:
    """Restore ``state`` (from :func:`process_state`); one line for each kind of change found."""
    environ, path, scripts = state
    problems = []
    if _environ() != environ:
        now = _environ()
        changed = sorted(k for k in set(environ) | set(now) if environ.get(k) != now.get(k))
        problems.append(f"os.environ changed: {changed}")
        for k in changed:
            if k in environ:
                os.environ[k] = environ[k]
            else:
                del os.environ[k]
    if sys.path != path:
        problems.append(f"sys.path changed: {sorted(set(sys.path) ^ set(path))}")
        sys.path[:] = path
    left = _script_modules() - scripts
    if left:
        problems.append(f"script modules left in sys.modules: {sorted(left)}")
        for name in left:
            del sys.modules[name]
    return problems


@pytest.fixture(autouse=True)
def _leaves_the_process_as_it_found_it():
    """Fail a test that changes ``os.environ`` or ``sys.path`` or leaves a script module in
    ``sys.modules``: later tests would see it, and results would depend on the order (use
    ``monkeypatch``, :func:`load_script`). The change is undone first, so one bad test does not
    spill over."""
    state = process_state()
    yield
    problems = undo_changes(state)
    if problems:
        pytest.fail("the test left the process changed: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def children():
    """Start child processes with ``children(argv, env=..., cwd=...)`` (:class:`tests._children.Child`):
    every read of their output has a timeout, and each one's process group is killed when the
    test ends, however it ends."""
    from tests._children import Children

    started = Children()
    try:
        yield started
    finally:
        started.kill_all()


# ``MINIS2S_TEST_COMPILE_REPORT=N``: after the run, the N tests that spent the most time in XLA
# compilation (cache misses), with the number of programs each compiled: where the suite's
# time goes, and what a jit or a smaller shape would save.
_COMPILE_REPORT = int(os.environ.get("MINIS2S_TEST_COMPILE_REPORT", "0") or 0)
_compiles: dict[str, list] = {}
_running = [""]


def _count_compile(event: str, duration: float, **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        entry = _compiles.setdefault(_running[0], [0, 0.0])
        entry[0] += 1
        entry[1] += duration


if _COMPILE_REPORT:
    import jax._src.monitoring as _monitoring

    _monitoring.register_event_duration_secs_listener(_count_compile)

    def pytest_runtest_logstart(nodeid, location):
        _running[0] = nodeid

    def pytest_terminal_summary(terminalreporter):
        total = sum(n for n, _ in _compiles.values()), sum(s for _, s in _compiles.values())
        terminalreporter.write_sep("=", f"XLA compilations: {total[0]} programs, {total[1]:.1f} s")
        for nodeid, (n, s) in sorted(_compiles.items(), key=lambda kv: -kv[1][1])[:_COMPILE_REPORT]:
            terminalreporter.write_line(f"{s:7.2f} s {n:5d} programs  {nodeid or '(collection)'}")
