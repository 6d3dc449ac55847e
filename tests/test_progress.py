"""Progress within an epoch: the bar's formatting and rate limiting, the chunked epoch (same
numbers bit for bit as one call), what ``fit`` reports, and the CLI on a terminal and off it."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from minis2s import data, models, train
from minis2s.progress import ProgressBar, format_bar, format_eta
from tests.conftest import ROOT, assert_trees_equal, child_env, optimised_env, require_module

# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (-3, "0s"), (59.9, "59s"), (60, "1:00"), (461, "7:41"), (3599, "59:59"), (3600, "1:00:00"),
     (3723.5, "1:02:03"), (36000 + 61, "10:01:01")],
)
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


def test_format_bar_as_in_the_issue():
    line = format_bar(312, 2090, 461, {"loss": 0.81234})
    assert line == " 312/2090 [===>" + "." * 26 + "] - ETA: 7:41 - loss: 0.8123"  # padded as Keras does


@pytest.mark.parametrize("width", [1, 10, 30])
def test_format_bar_width_and_shape(width):
    total = 37
    for done in range(total + 1):
        line = format_bar(done, total, None, {}, width=width)
        counter, bar = line.split(" [", 1)
        assert counter == f"{done:>2d}/{total}"  # right-aligned: the line does not jump
        assert bar[-1] == "]"
        inner = bar[:-1]
        assert len(inner) == width, (done, inner)
        filled = len(inner.rstrip("."))
        if done == 0:
            assert inner == "." * width
        elif done == total:
            assert inner == "=" * width
        else:
            assert inner[filled - 1] == ">" and set(inner[: filled - 1]) <= {"="}
            assert filled == max(width * done // total, 1)


def test_format_bar_logs_and_eta_are_optional():
    assert format_bar(5, 10, None, {}, width=4) == " 5/10 [=>..]"
    assert format_bar(10, 10, 0.0, {"loss": 1.0, "acc": 0.5}, width=4) == "10/10 [====] - ETA: 0s - loss: 1.0000 - acc: 0.5000"


@pytest.mark.parametrize("done, total", [(-1, 10), (11, 10), (0, 0)])
def test_format_bar_refuses_impossible_counts(done, total):
    with pytest.raises(ValueError, match="progress"):
        format_bar(done, total, None, {})


# --------------------------------------------------------------------------- the bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Totals(dict):
    """Metric sums that count how often they are read (a read waits for the device)."""

    reads = 0

    def __getitem__(self, key):
        Totals.reads += 1
        return super().__getitem__(key)


def totals(loss: float, count: float = 1.0) -> Totals:
    return Totals(loss_sum=loss * count, correct_sum=0.0, count=count)


def test_bar_rate_limits_reads_and_draws_with_an_injected_clock():
    out, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(out, interval=0.5, clock=clock, width=10)
    bar(0, 100, None)
    assert out.getvalue() == ""
    clock.now += 2.0
    bar(10, 100, totals(0.9))  # first step report of the epoch: drawn
    assert out.getvalue() == "\r 10/100 [>.........] - ETA: 18s - loss: 0.9000"  # 2 s per 10 steps, 90 left
    Totals.reads = 0
    for done in range(11, 20):  # within 0.5 s: skipped, and the device values are not read
        clock.now += 0.05
        bar(done, 100, totals(0.8))
    assert Totals.reads == 0 and out.getvalue().count("\r") == 1
    clock.now += 0.1  # 0.55 s after the last draw
    bar(20, 100, totals(0.5))
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith(" 20/100 [=>........] - ETA: 10s - loss: 0.5000")
    clock.now += 0.01
    bar(100, 100, totals(0.25))  # the last step is always drawn
    assert out.getvalue().endswith("\r100/100 [==========] - ETA: 0s - loss: 0.2500 ")  # a space covers "18s"


def test_bar_log_replaces_the_bar_and_a_new_epoch_restarts_the_eta():
    out, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(out, interval=0.0, clock=clock, width=4)
    bar(0, 4, None)
    clock.now += 1.0
    bar(1, 4, totals(2.0))
    shown = "1/4 [>...] - ETA: 3s - loss: 2.0000"
    bar.log("Epoch 1/2 - 1.0s")
    assert out.getvalue() == "\r" + shown + "\r" + " " * len(shown) + "\r" + "Epoch 1/2 - 1.0s\n"
    clock.now += 50.0  # validation, saving: not counted in the next epoch's ETA
    bar(0, 4, None)
    clock.now += 4.0
    bar(2, 4, totals(1.0))
    assert out.getvalue().endswith("Epoch 1/2 - 1.0s\n\r2/4 [=>..] - ETA: 4s - loss: 1.0000")


def test_bar_covers_a_longer_previous_line_and_close_ends_it():
    out, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(out, interval=0.0, clock=clock, width=4)
    bar(0, 10, None)
    clock.now += 1000.0
    bar(1, 10, totals(1.0))  # ETA 2:30:00
    long = out.getvalue()
    clock.now += 0.001
    bar(9, 10, totals(1.0))  # ETA 1:51, a shorter line
    second = out.getvalue()[len(long):]
    assert len(second) == len(long) and second.startswith("\r 9/10 [==>.] - ETA: 1:51")
    bar.close()
    assert out.getvalue().endswith("\n")
    bar.close()  # nothing on screen: nothing written
    bar.log("done")
    assert out.getvalue().endswith(" \ndone\n")


# --------------------------------------------------------------------------- training


def test_chunks_cover_the_epoch_in_at_most_two_shapes():
    for steps in (1, 2, 7, 99, 100, 101, 125, 2090):
        for most in (1, 3, 100):
            chunks = train._chunks(steps, most)
            assert chunks[0][0] == 0 and chunks[-1][1] == steps
            assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
            assert len(chunks) <= most
            sizes = [b - a for a, b in chunks]
            assert len(set(sizes[:-1])) <= 1 and 0 < sizes[-1] <= sizes[0]


def _demo(n: int = 60):
    return data.load_dataset(data.DEMO_PATH, n)


@pytest.mark.slow  # trains
def test_epoch_in_chunks_equals_one_call_bit_for_bit():
    """Two epochs of 8 steps, as one call each and as chunks of 3, 3, 2 steps: identical
    parameters, optimizer state, metric sums and step losses."""
    ds = _demo()
    cfg = train.Config(batch_size=6, latent_dim=16, seed=7)
    mcfg = train.model_config(cfg, ds)
    opt = train.make_optimizer(cfg)
    train_epoch = train.make_train_epoch(opt, models.build(mcfg, cfg.grad).apply)
    on_device = train.device_data(ds)
    state = train.initial_state(cfg, ds, opt)
    whole = chunked = (state.params, state.opt_state)
    for epoch in range(2):
        perm = np.random.default_rng(epoch).permutation(46)  # 46 rows: 7 full batches and one of 4
        index, weight = train.batch_plan(perm, cfg.batch_size)
        assert len(index) == 8
        p, o, t_whole, l_whole = train_epoch(*whole, on_device, index, weight)
        whole = (p, o)
        t, losses = None, []
        for start, stop in train._chunks(len(index), 3):
            p, o, t, l = train_epoch(*chunked, on_device, index[start:stop], weight[start:stop], totals=t)
            chunked = (p, o)
            losses.append(l)
        assert [len(l) for l in losses] == [3, 3, 2]
        assert_trees_equal(chunked, whole)
        assert_trees_equal(t, t_whole)
        assert_trees_equal(np.concatenate(losses), l_whole)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float | None]] = []

    def __call__(self, done, steps, totals):
        self.calls.append((done, steps, None if totals is None else float(totals["loss_sum"]) / float(totals["count"])))


def _epochs(calls):
    """The recorded calls split at each ``done == 0``."""
    out = []
    for call in calls:
        if call[0] == 0:
            out.append([])
        out[-1].append(call)
    return out


@pytest.mark.slow  # trains
@pytest.mark.parametrize("most", [3, 100])
def test_fit_with_progress_trains_the_same_and_reports_every_chunk(monkeypatch, most):
    """most=3: chunks of 3, 3, 2 steps, the same numbers bit for bit. most=100 > 8 steps: chunks
    of one step, compared within 1e-5 here: under the suite's compile flags (tests/conftest.py:
    FAST_COMPILE) XLA lays out a one-trip loop's body differently and the last bits move; as
    users compile, they are the same bit for bit (the next test, in a child process)."""
    monkeypatch.setattr(train, "PROGRESS_CHUNKS", most)
    ds = _demo()
    cfg = train.Config(epochs=2, batch_size=6, latent_dim=16, seed=3)  # 48 training rows: 8 steps
    plain_params, plain_history = train.fit(cfg, ds, log=None)
    rec = Recorder()
    params, history = train.fit(cfg, ds, log=None, progress=rec)
    if most == 3:
        assert_trees_equal(params, plain_params)
        assert history["loss"] == plain_history["loss"] and history["val_loss"] == plain_history["val_loss"]
    else:
        assert_trees_equal(params, plain_params, rtol=1e-5, atol=1e-7)
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(history[key], plain_history[key], rtol=1e-6)
    epochs = _epochs(rec.calls)
    assert len(epochs) == 2
    expected_dones = [0] + [stop for _, stop in train._chunks(8, most)]
    for calls, loss in zip(epochs, history["loss"]):
        assert [c[0] for c in calls] == expected_dones and {c[1] for c in calls} == {8}
        assert calls[0][2] is None
        assert calls[-1][2] == pytest.approx(loss, rel=1e-6)  # the running loss ends at the epoch's


# Run in a child compiled as users run minis2s (no test-only XLA flags): trains twice, one-call
# epochs and one-step chunks, and prints which leaves differ.
_ONE_STEP_CHUNKS = """
import jax, numpy as np
from minis2s import data, train
ds = data.load_dataset(data.DEMO_PATH, 60)
cfg = train.Config(epochs=2, batch_size=6, latent_dim=16, seed=3)
plain, plain_history = train.fit(cfg, ds, log=None)
train.PROGRESS_CHUNKS = 100
chunked, history = train.fit(cfg, ds, log=None, progress=lambda done, steps, totals: None)
differ = [jax.tree_util.keystr(path) for (path, a), b in zip(jax.tree.leaves_with_path(plain), jax.tree.leaves(chunked))
          if not np.array_equal(np.asarray(a), np.asarray(b))]
differ += [key for key in ("loss", "val_loss") if history[key] != plain_history[key]]
print("leaves compared:", len(jax.tree.leaves(plain)), "differ:", differ)
"""


@pytest.mark.slow  # trains, in a child process
def test_one_step_chunks_equal_one_call_bit_for_bit_as_users_compile():
    proc = subprocess.run([sys.executable, "-c", _ONE_STEP_CHUNKS], capture_output=True, text=True, cwd=ROOT,
                          env=child_env(**optimised_env()), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "leaves compared: 8 differ: []", proc.stdout


@pytest.mark.slow  # trains
def test_scheduled_sampling_in_chunks_trains_the_same(monkeypatch):
    """Each chunk gets its slice of the per-step coin keys and ratios."""
    monkeypatch.setattr(train, "PROGRESS_CHUNKS", 3)
    ds = _demo()
    cfg = train.Config(epochs=2, batch_size=6, latent_dim=16, seed=3, teacher_forcing=0.9, teacher_forcing_end=0.5)
    plain_params, plain_history = train.fit(cfg, ds, log=None)
    params, history = train.fit(cfg, ds, log=None, progress=Recorder())
    assert_trees_equal(params, plain_params)
    assert history["loss"] == plain_history["loss"]


@pytest.mark.slow  # trains
def test_bucketed_fit_reports_every_batch():
    ds = _demo()
    cfg = train.Config(epochs=1, batch_size=6, latent_dim=16, seed=3, bucket=True)
    plain_params, plain_history = train.fit(cfg, ds, log=None)
    rec = Recorder()
    params, history = train.fit(cfg, ds, log=None, progress=rec)
    assert_trees_equal(params, plain_params)
    assert history["loss"] == plain_history["loss"]
    (calls,) = _epochs(rec.calls)
    steps = calls[0][1]
    assert steps >= 8  # buckets split batches: at least as many as without
    assert [c[0] for c in calls] == list(range(steps + 1))
    assert calls[-1][2] == pytest.approx(history["loss"][0], rel=1e-6)


# --------------------------------------------------------------------------- the CLI


def _train_on_a_terminal(tmp_path, *extra: str, timeout: float = 300) -> str:
    """``minis2s train`` on the demo corpus with stdout on a pseudo-terminal; its output. Every
    read waits at most until ``timeout``; the child's process group is killed however this ends."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    leader, follower = pty.openpty()
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "minis2s.cli", "train", "--data", "demo", "--epochs", "2", "--latent-dim", "8",
             "--num-samples", "120", "--batch-size", "4", "--out", str(tmp_path / "run"), "--show", "0", *extra],
            stdout=follower, stderr=err_file, cwd=ROOT, env=child_env(), start_new_session=True,
        )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no end of output after {timeout} s: {b''.join(chunks)[-2000:]!r}"
            ready, _, _ = select.select([leader], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(max(deadline - time.monotonic(), 1))
    finally:
        os.close(leader)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.read_text()
    return b"".join(chunks).decode()


@pytest.mark.slow
def test_cli_draws_a_bar_on_a_terminal_and_epoch_lines_with_quiet(tmp_path):
    shown = _train_on_a_terminal(tmp_path / "bar")
    assert "\r" in shown and " [" in shown and "ETA: " in shown and "- loss: " in shown
    assert "24/24 [" in shown  # 96 training rows in batches of 4: the last step is drawn
    lines = shown.replace("\r\n", "\n").split("\n")
    epoch_lines = [line.rsplit("\r", 1)[-1] for line in lines if "Epoch " in line]
    assert [line.split(" - ")[0] for line in epoch_lines] == ["Epoch 1/2", "Epoch 2/2"]
    quiet = _train_on_a_terminal(tmp_path / "quiet", "--quiet")
    assert "ETA" not in quiet and "Epoch 2/2 - " in quiet
    assert "\r" not in quiet.replace("\r\n", "\n")


# --------------------------------------------------------------------------- against Keras' Progbar


_KERAS_LINE = re.compile(
    r"\r\x1b\[1m(?P<counter>[ \d]+/\d+)\x1b\[0m (?:\x1b\[32m(?P<filled>━*)\x1b\[0m)?\x1b\[37m(?P<empty>━*)\x1b\[0m"
    r" \x1b\[1m(?P<eta>[^\x1b]+)\x1b\[0m [^ ]+/step - loss: (?P<loss>\S+)$"
)


def _keras_bar(keras, done: int, total: int, eta: float, loss: float, width: int) -> dict:
    """What ``keras.utils.Progbar`` draws for ``done`` of ``total`` steps, an ETA of ``eta``
    seconds and a running loss: its counter, filled cells, ETA and loss text."""
    bar = keras.utils.Progbar(total, width=width, verbose=1, interval=0)
    bar._estimate_step_duration = lambda current, now: eta / (total - current)  # the ETA is ours to set
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bar.update(done, [("loss", loss)])
    m = _KERAS_LINE.match(printed.getvalue())
    assert m, repr(printed.getvalue())
    return {"counter": m["counter"], "filled": len(m["filled"] or ""), "eta": m["eta"], "loss": m["loss"]}


def test_format_bar_draws_what_keras_progbar_draws():
    """Keras 3 draws its bar with ``━`` and colours where the Keras 2 style of ``format_bar`` uses
    ``=``/``>``/``.``; everything else is compared on the same inputs: the right-aligned counter,
    the number of filled cells, the ETA text and the loss text. (Known differences, left out here:
    ``format_bar`` shows the ``>`` from the first step, where Keras shows no filled cell until
    ``width * done / total`` reaches 1; an ETA of exactly 60 s or 3600 s is ``1:00``/``1:00:00``
    here and ``60s``/``60:00`` in Keras; a loss of at most 1e-3 is ``0.0005`` here, ``5.0000e-04``
    in Keras.)"""
    keras = require_module("keras")
    rng = np.random.default_rng(0)
    cases = [(312, 2090, 461.5, 0.81234, 30), (1, 7, 59.5, 2.5, 30), (6, 7, 3599.5, 1.0, 30),
             (50, 100, 3723.5, 0.0123, 10), (99, 100, 36061.5, 12.3456, 30), (9, 10, 111.5, 0.5, 4)]
    for _ in range(40):
        total = int(rng.integers(2, 5000))
        cases.append((int(rng.integers(1, total)), total, float(rng.uniform(0, 20000)) // 1 + 0.5,
                      float(rng.uniform(0.002, 9.0)), int(rng.choice([4, 10, 30]))))
    for done, total, eta, loss, width in cases:
        want = _keras_bar(keras, done, total, eta, loss, width)
        line = format_bar(done, total, eta, {"loss": loss}, width=width)
        m = re.fullmatch(r"(?P<counter>[ \d]+/\d+) \[(?P<bar>[=>.]+)\] - ETA: (?P<eta>\S+) - loss: (?P<loss>\S+)", line)
        assert m, line
        got = {"counter": m["counter"], "filled": len(m["bar"].rstrip(".")), "eta": m["eta"], "loss": m["loss"]}
        if want["filled"] == 0:  # the head ">" of the first cell (see the docstring)
            assert got["filled"] == 1
            got["filled"] = 0
        assert got == want, (done, total, eta, loss, width)
