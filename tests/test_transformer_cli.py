"""``--model transformer`` through the command line (slow tier): train with buckets, the
masked loss and early stopping, resume, translate (greedy, beam, sampling,
``--attention-plot``), evaluate, two CPU devices, and ``minis2s gradcheck``."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import alignment, checkpoint, cli, data, search, translate
from minis2s.run import HISTORY_FILE, latest_checkpoint
from minis2s.trained import load_trained

from tests.conftest import load_script, require_module, run_cli

pytestmark = pytest.mark.slow  # every test here trains through the CLI

SIZES = ["--layers", "1", "--heads", "2", "--embed-dim", "8", "--ff-dim", "16"]
ARGS = ["--model", "transformer", *SIZES, "--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8",
        "--learning-rate", "0.01", "--show", "1"]
SENTENCES = ["Go.", "Help me.", "I see."]


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def tfm_run(tmp_path_factory):
    """A transformer run: 1 epoch with --bucket --mask-padding --patience, resumed to 2."""
    out = tmp_path_factory.mktemp("transformer") / "run"
    assert cli.main(["train", *ARGS, "--epochs", "1", "--bucket", "--mask-padding", "--patience", "3",
                     "--out", str(out)]) == 0
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--show", "0"]) == 0
    return out


def test_train_and_resume_record_the_model_and_its_sizes(tfm_run, capsys):
    manifest = checkpoint.read_manifest(latest_checkpoint(tfm_run))
    config = manifest["config"]
    assert config["model"] == "transformer" and config["bucket"] and config["mask_padding"]
    assert (config["layers"], config["heads"], config["embed_dim"], config["ff_dim"]) == (1, 2, 8, 16)
    assert manifest["options"]["patience"] == 3
    history = json.loads((tfm_run / HISTORY_FILE).read_text())
    assert len(history["val_loss"]) == 2 and all(np.isfinite(history["val_loss"]))
    trained = load_trained(tfm_run)
    assert set(trained.params) == {"encoder_embedding", "decoder_embedding", "encoder_0", "decoder_0", "dense"}
    # the sizes are fixed once a run exists
    rc, _, err = run(["train", "--resume", str(tfm_run), "--epochs", "3", "--heads", "4"], capsys)
    assert rc == 2 and "--heads" in err and err.strip().count("\n") == 0


def test_translate_greedy_beam_sample_plot_and_evaluate(tfm_run, tmp_path, capsys):
    require_module("matplotlib")
    png = tmp_path / "attn.png"
    rc, out, err = run(["translate", str(tfm_run), *SENTENCES, "--attention-plot", str(png)], capsys)
    assert rc == 0, err
    assert len(out.split("\n")) == len(SENTENCES) + 1
    assert f"wrote {png} ({len(SENTENCES)} panel(s))" in err and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, beam_out, err = run(["translate", str(tfm_run), *SENTENCES, "--beam", "3"], capsys)
    assert rc == 0 and len(beam_out.split("\n")) == len(SENTENCES) + 1, err
    rc, out, err = run(["translate", str(tfm_run), *SENTENCES, "--sample", "--samples", "2", "--seed", "1"], capsys)
    assert rc == 0 and len(out.splitlines()) == 2 * len(SENTENCES), err
    rc, out, err = run(["evaluate", str(tfm_run), "--data", str(data.DEMO_PATH), "--limit", "4", "--show", "0",
                        "--out", str(tmp_path / "eval.tsv")], capsys)
    assert rc == 0 and "chrF:" in out, err
    assert len((tmp_path / "eval.tsv").read_text().splitlines()) == 5


def test_plot_weights_are_the_weights_greedy_decoding_used(tfm_run):
    trained = load_trained(tfm_run)
    results = translate.translate(trained, SENTENCES)
    pairs = [(r.source, r.hypothesis.chars) for r in results]
    replayed = alignment.attention_weights(trained, pairs)
    model, vocab = translate.model_of(trained), trained.target_vocab
    for (english, chars), w in zip(pairs, replayed):
        tokens, lengths, _, extras = search.greedy_batch(
            trained.params, jnp.asarray(trained.input_vocab.encode([english], trained.max_encoder_seq_length)),
            jnp.array([len(english)]), start_token=vocab.index[data.START], end_token=vocab.index[data.END],
            max_steps=trained.max_decoder_seq_length + 1, model=model, with_extras=True,
        )
        assert "".join(vocab.chars[t] for t in np.asarray(tokens[0, : lengths[0]])) == chars
        recorded = np.asarray(extras["attention"][0, : len(chars)])
        assert w.shape == (len(chars), len(english))
        np.testing.assert_allclose(w, recorded[:, : len(english)], rtol=0, atol=1e-6)
        assert np.all(recorded[:, len(english):] == 0.0)


def test_two_devices_train(tmp_path):
    env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    r = run_cli("train", *ARGS, "--epochs", "1", "--devices", "2", "--quiet", "--out", str(tmp_path / "run"), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 devices" in r.stdout or "devices" in r.stdout


def test_gradcheck_passes(capsys):
    rc, out, err = run(["gradcheck", "--model", "transformer", "--entries", "3", "--directions", "1"], capsys)
    assert rc == 0, out + err
    assert "model transformer" in out


def test_bad_sizes_are_one_line_errors(tmp_path, capsys):
    rc, _, err = run(["train", *ARGS, "--heads", "3", "--epochs", "1", "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "must be a multiple of --heads 3" in err and err.strip().count("\n") == 0
    rc, _, err = run(["train", *ARGS, "--cell", "gru", "--epochs", "1", "--out", str(tmp_path / "b")], capsys)
    assert rc == 2 and "no recurrent cell" in err and err.strip().count("\n") == 0
    rc, _, err = run(["train", *ARGS, "--max-positions", "5", "--epochs", "1", "--out", str(tmp_path / "c")], capsys)
    assert rc == 2 and "--max-positions 5 is shorter" in err and err.strip().count("\n") == 0


def test_bench_decode_compares_the_cache_with_re_running_the_decoder(tmp_path):
    bench = load_script("benchmarks/bench_decode")
    out = tmp_path / "bench.json"
    assert bench.main(["--transformer", "--vocab-in", "5", "--vocab-out", "6", "--t-enc", "4", "--t-dec", "6",
                       "--repeats", "1", "--tfm-batch", "1", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"batch1", "batch3"}
    assert all(r["same"] and r["cached_ms"] > 0 and r["rerun_ms"] > 0 for r in result.values())  # same characters


def test_scheduled_sampling_trains_through_the_cached_decoder(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", *ARGS, "--epochs", "1", "--teacher-forcing", "0.5", "--quiet", "--out", str(out)]) == 0
    history = json.loads((out / HISTORY_FILE).read_text())
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_loss"][0])
