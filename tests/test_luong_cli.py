"""``--model luong`` through the command line: train with buckets, the masked loss and
early stopping, resume, translate (greedy, beam, ``--attention-plot``), evaluate; and the
attention weights a plot shows are the ones greedy decoding used."""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import alignment, checkpoint, cli, data, models, search, train, translate
from minis2s.run import HISTORY_FILE, latest_checkpoint
from minis2s.trained import load_trained, save_trained
from minis2s.plot import PlotError, plot_attention

from tests.conftest import require_module

pytestmark = pytest.mark.slow  # every test here trains through the CLI

ARGS = ["--model", "luong", "--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8", "--latent-dim", "8",
        "--learning-rate", "0.02", "--show", "1"]
SENTENCES = ["Go.", "Help me.", "I see."]


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def luong_run(tmp_path_factory):
    """A Luong run: 1 epoch with --bucket --mask-padding --patience, resumed to 2."""
    out = tmp_path_factory.mktemp("luong") / "run"
    assert cli.main(["train", *ARGS, "--epochs", "1", "--bucket", "--mask-padding", "--patience", "3",
                     "--out", str(out)]) == 0
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--show", "0"]) == 0
    return out


def test_train_and_resume_record_the_model(luong_run):
    manifest = checkpoint.read_manifest(latest_checkpoint(luong_run))
    assert manifest["config"]["model"] == "luong"
    assert manifest["config"]["bucket"] and manifest["config"]["mask_padding"]
    assert manifest["options"]["patience"] == 3
    history = json.loads((luong_run / HISTORY_FILE).read_text())
    assert len(history["val_loss"]) == 2 and all(np.isfinite(history["val_loss"]))
    trained = load_trained(luong_run)
    assert set(trained.params) == {"encoder", "decoder", "combine", "dense"}
    assert translate.model_of(trained).config.model == "luong"


def test_translate_evaluate_and_attention_plot(luong_run, tmp_path, capsys):
    require_module("matplotlib")
    png = tmp_path / "attn.png"
    rc, out, err = run(["translate", str(luong_run), *SENTENCES, "--attention-plot", str(png)], capsys)
    assert rc == 0, err
    assert len(out.split("\n")) == len(SENTENCES) + 1  # one line per input, the plot note on stderr
    assert f"wrote {png} ({len(SENTENCES)} panel(s))" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    rc, beam_out, err = run(["translate", str(luong_run), *SENTENCES, "--beam", "3"], capsys)
    assert rc == 0 and len(beam_out.split("\n")) == len(SENTENCES) + 1, err
    rc, out, err = run(["evaluate", str(luong_run), "--data", str(data.DEMO_PATH), "--limit", "4", "--show", "0",
                        "--out", str(tmp_path / "eval.tsv")], capsys)
    assert rc == 0 and "chrF:" in out, err
    assert len((tmp_path / "eval.tsv").read_text().splitlines()) == 5


def test_a_run_directory_says_which_checkpoint_it_uses(luong_run, capsys):
    val = json.loads((luong_run / HISTORY_FILE).read_text())["val_loss"]
    epoch = min(range(len(val)), key=val.__getitem__) + 1  # the oracle: the first epoch with the lowest val_loss, as np.less keeps it
    best, val_loss = luong_run / f"epoch-{epoch:04d}", val[epoch - 1]
    using = f"{best} (epoch {epoch}, the lowest val_loss of the run: {val_loss:.4f})"
    rc, out, err = run(["translate", str(luong_run), "Go."], capsys)
    assert rc == 0 and err.strip() == f"minis2s translate: using {using}"
    rc, out, err = run(["translate", str(best), "Go."], capsys)  # a checkpoint named: nothing to say
    assert rc == 0 and err == ""
    rc, out, err = run(["evaluate", str(luong_run), "--data", str(data.DEMO_PATH), "--limit", "2", "--show", "0",
                        "--out", str(luong_run.parent / "e.tsv")], capsys)
    assert rc == 0 and f"Evaluating {using} on the validation split" in out, err


def test_attention_plot_pairs_every_sample_with_its_own_sentence(luong_run, tmp_path, capsys, monkeypatch):
    """--sample --samples 3: one panel per sample, each against the sentence it translates."""
    require_module("matplotlib")
    from minis2s import plot

    drawn = []
    real = plot.plot_attention
    monkeypatch.setattr(plot, "plot_attention", lambda panels, out: drawn.extend(panels) or real(panels, out))
    rc, out, err = run(["translate", str(luong_run), *SENTENCES, "--sample", "--samples", "3", "--seed", "5",
                        "--attention-plot", str(tmp_path / "attn")], capsys)
    assert rc == 0, err
    # the oracle: the library's samples, sentence by sentence
    trained = load_trained(luong_run)
    samples = translate.translate_samples(trained, SENTENCES, samples=3, temperature=1.0, seed=5)
    want = [(s, r.hypothesis.chars) for s, rs in zip(SENTENCES, samples) for r in rs]
    assert [(e, c) for e, c, _ in drawn] == want
    assert out.splitlines() == [r.output for rs in samples for r in rs]
    # no suffix given: matplotlib writes attn.png, and that is the file named
    assert f"minis2s translate: wrote {tmp_path / 'attn.png'} ({len(want)} panel(s))" in err
    assert (tmp_path / "attn.png").is_file() and not (tmp_path / "attn").exists()


def test_plot_weights_are_the_weights_greedy_decoding_used(luong_run):
    trained = load_trained(luong_run)
    results = translate.translate(trained, SENTENCES)
    pairs = [(r.source, r.hypothesis.chars) for r in results]
    replayed = alignment.attention_weights(trained, pairs)
    # the oracle: the weights greedy_batch records while it decodes, one sentence at a time
    model = translate.model_of(trained)
    vocab = trained.target_vocab
    width = trained.max_encoder_seq_length  # a bucketed model's inputs are cut to their bucket; padding is masked anyway
    for (english, chars), w in zip(pairs, replayed):
        tokens, lengths, _, extras = search.greedy_batch(
            trained.params, jnp.asarray(trained.input_vocab.encode([english], width)), jnp.array([len(english)]),
            start_token=vocab.index[data.START], end_token=vocab.index[data.END],
            max_steps=trained.max_decoder_seq_length + 1, model=model, with_extras=True,
        )
        assert "".join(vocab.chars[t] for t in np.asarray(tokens[0, : lengths[0]])) == chars
        recorded = np.asarray(extras["attention"][0, : len(chars)])
        assert w.shape == (len(chars), len(english))
        np.testing.assert_allclose(w, recorded[:, : len(english)], rtol=0, atol=1e-6)
        assert np.all(recorded[:, len(english):] == 0.0)  # nothing on the padding
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)


def test_attention_plot_refuses_clearly(luong_run, tmp_path, capsys, monkeypatch):
    # a model without attention: the seed, saved untrained
    config = train.Config(num_samples=40, latent_dim=8)
    ds = data.load_dataset(data.DEMO_PATH, 40)
    params = models.build(train.model_config(config, ds)).init(jax.random.PRNGKey(0))
    seed_dir = save_trained(tmp_path / "seed", params, config, ds)
    rc, out, err = run(["translate", str(seed_dir), "Go.", "--attention-plot", str(tmp_path / "a.png")], capsys)
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0 and "seed model" in err and "no attention weights" in err
    with pytest.raises(alignment.NoAttention):
        alignment.attention_weights(load_trained(seed_dir), [("Go.", "Va !\n")])
    # no matplotlib: one line saying how to install it, nothing translated
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, out, err = run(["translate", str(luong_run), "Go.", "--attention-plot", str(tmp_path / "b.png")], capsys)
    assert rc == 2 and out == "" and "pip install" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "b.png").exists()


def test_attention_scale_needs_a_model_with_attention(tmp_path, capsys):
    rc, _, err = run(["train", "--data", "demo", "--num-samples", "40", "--batch-size", "8", "--epochs", "1", "--attention-scale",
                      "--out", str(tmp_path / "run")], capsys)
    assert rc == 2 and "attention_scale needs a model with attention" in err and err.strip().count("\n") == 0


def test_plot_attention_checks_its_panels(tmp_path):
    require_module("matplotlib")
    with pytest.raises(PlotError, match="no translation"):
        plot_attention([], tmp_path / "x.png")
    with pytest.raises(PlotError, match="do not fit"):
        plot_attention([("Go.", "Va\n", np.ones((2, 3)))], tmp_path / "x.png")
