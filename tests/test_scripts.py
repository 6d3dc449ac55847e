"""The tutorial scripts run on tiny settings and print what they promise."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def run_script(name, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_train_seed_script_runs_end_to_end():
    r = run_script("train_seed.py", "--data", "demo", "--epochs", "2", "--latent-dim", "16", "--show", "2")
    assert r.returncode == 0, r.stderr
    assert "Number of samples: 140" in r.stdout
    assert "Epoch 2/2" in r.stdout and r.stdout.count("Input sentence:") == 2
    assert "encoder {'kernel': (" in r.stdout


def test_gradcheck_demo_agrees_at_every_step():
    r = run_script("gradcheck_demo.py", "--hidden", "3", "--steps", "4")
    assert r.returncode == 0, r.stderr
    for step in ("3", "4"):  # against jax.grad, then against minis2s.bptt._lstm_bwd
        for name in ("kernel", "recurrent_kernel", "bias"):
            line = next(l for l in r.stdout.splitlines() if l.startswith(f"{step}. {name} "))
            assert float(line.rsplit("=", 1)[1]) < 1e-10
    assert "bptt._lstm_bwd" in r.stdout and "(dh_0, dc_0)" in r.stdout
    assert "8 leaves, 0 failed" in r.stdout and "all gradients agree" in r.stdout
