"""``--model luong --input-feeding`` through the command line: train with buckets and the
masked loss, resume, translate (greedy, beam, sampling, ``--attention-plot``), evaluate,
gradcheck; the checkpoint records the setting and the flag is refused where it means nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minis2s import checkpoint, cli, data, translate
from minis2s.run import HISTORY_FILE, latest_checkpoint
from minis2s.trained import load_trained

from tests.conftest import require_module
from tests.test_luong_cli import ARGS, SENTENCES, run

pytestmark = pytest.mark.slow  # every test here trains or runs the CLI

FEED = [*ARGS, "--input-feeding"]


@pytest.fixture(scope="module")
def feed_run(tmp_path_factory):
    """A Luong run with input feeding: 1 epoch with --bucket --mask-padding, resumed to 2."""
    out = tmp_path_factory.mktemp("feed") / "run"
    assert cli.main(["train", *FEED, "--epochs", "1", "--bucket", "--mask-padding", "--out", str(out)]) == 0
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--show", "0", "--input-feeding"]) == 0
    return out


def test_the_checkpoint_records_input_feeding(feed_run):
    for epoch in (1, 2):
        manifest = checkpoint.read_manifest(feed_run / f"epoch-{epoch:04d}")
        assert manifest["config"]["model"] == "luong" and manifest["config"]["input_feeding"] is True
    history = json.loads((feed_run / HISTORY_FILE).read_text())
    assert len(history["val_loss"]) == 2 and all(np.isfinite(history["val_loss"]))
    trained = load_trained(feed_run)
    model = translate.model_of(trained)
    assert model.config.input_feeding
    v_out, h = model.config.num_decoder_tokens, model.config.latent_dim
    assert trained.params["decoder"]["kernel"].shape == (v_out + h, 4 * h)


def test_translate_sample_evaluate_and_attention_plot(feed_run, tmp_path, capsys):
    require_module("matplotlib")
    png = tmp_path / "attn.png"
    rc, out, err = run(["translate", str(feed_run), *SENTENCES, "--attention-plot", str(png)], capsys)
    assert rc == 0, err
    assert len(out.split("\n")) == len(SENTENCES) + 1 and f"wrote {png} ({len(SENTENCES)} panel(s))" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, beam_out, err = run(["translate", str(feed_run), *SENTENCES, "--beam", "3"], capsys)
    assert rc == 0 and len(beam_out.split("\n")) == len(SENTENCES) + 1, err
    rc, sample_out, err = run(["translate", str(feed_run), *SENTENCES, "--sample", "--samples", "2", "--seed", "3"],
                              capsys)
    assert rc == 0 and sample_out.strip(), err
    rc, out, err = run(["evaluate", str(feed_run), "--data", str(data.DEMO_PATH), "--limit", "4", "--show", "0",
                        "--out", str(tmp_path / "eval.tsv")], capsys)
    assert rc == 0 and "chrF:" in out, err
    assert len((tmp_path / "eval.tsv").read_text().splitlines()) == 5


def test_resume_keeps_the_setting(feed_run, tmp_path, capsys):
    """A run without input feeding cannot be resumed as one with it (the flag is fixed on resume)."""
    plain = tmp_path / "plain"
    assert cli.main(["train", *ARGS, "--epochs", "1", "--show", "0", "--out", str(plain)]) == 0
    capsys.readouterr()
    rc, _, err = run(["train", "--resume", str(plain), "--epochs", "2", "--input-feeding"], capsys)
    assert rc == 2 and "input" in err and "feeding" in err and err.strip().count("\n") == 0, err
    assert latest_checkpoint(plain).name == "epoch-0001"


def test_gradcheck_passes_with_input_feeding(capsys):
    rc, out, err = run(["gradcheck", "--model", "luong", "--input-feeding", "--latent-dim", "4", "--entries", "2",
                        "--directions", "1"], capsys)
    assert rc == 0, err
    assert "with input feeding" in out and "10 leaves, 0 failed" in out


@pytest.mark.parametrize("command", [["train", "--data", "demo", "--num-samples", "40", "--batch-size", "8",
                                      "--epochs", "1"], ["gradcheck"]])
@pytest.mark.parametrize("model", ["seed", "bahdanau"])
def test_input_feeding_needs_a_model_that_reads_it(command, model, tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")] if command[0] == "train" else []
    rc, _, err = run([*command, "--model", model, "--input-feeding", *out], capsys)
    assert rc == 2 and "input_feeding needs a model" in err and f"not {model}" in err, err
    assert err.strip().count("\n") == 0
