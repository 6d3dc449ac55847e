"""``minis2s train --model bahdanau`` end to end on a tiny corpus: train, resume, translate
(greedy and beam), evaluate; the checkpoint carries the model, so no later command is told."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minis2s.run import latest_checkpoint
from minis2s.trained import load_trained
from tests._cli import run

pytestmark = pytest.mark.slow  # every test here trains through the CLI


def test_train_resume_translate_evaluate(tmp_path, two_column_file):
    out = tmp_path / "run"
    common = ["--data", str(two_column_file), "--latent-dim", "8", "--batch-size", "4", "--show", "0"]
    rc, text, err = run(["train", "--model", "bahdanau", *common, "--epochs", "2", "--out", str(out)])
    assert rc == 0, err
    assert "Epoch 2/2" in text
    t = load_trained(latest_checkpoint(out))
    assert t.config.model == "bahdanau" and t.epoch == 2
    assert t.params["attention"]["scale"].shape == (8,)

    rc, text, err = run(["train", "--resume", str(out), "--epochs", "3", "--show", "0"])
    assert rc == 0, err
    assert "Epoch 3/3" in text and "Epoch 1/3" not in text
    assert load_trained(latest_checkpoint(out)).epoch == 3

    for extra in ([], ["--beam", "2"]):
        rc, text, err = run(["translate", str(out), "Go.", "Hi.", *extra])
        assert rc == 0, err
        assert len(text.splitlines()) == 2

    rc, text, err = run(["evaluate", str(out), "--data", str(two_column_file), "--show", "0"])
    assert rc == 0, err
    assert "chrF:" in text and "exact match:" in text


def test_train_with_buckets_and_masked_loss(tmp_path, demo_path):
    out = tmp_path / "run"
    rc, text, err = run(["train", "--model", "bahdanau", "--data", str(demo_path), "--num-samples", "10", "--latent-dim", "8",
                         "--batch-size", "8", "--epochs", "1", "--bucket", "--mask-padding", "--show", "0", "--out", str(out)])
    assert rc == 0, err
    assert "Epoch 1/1" in text and "nan" not in text.lower()
    # The reported val_loss is the cross-entropy over the real characters of the held-out pairs
    # (--mask-padding), whatever widths the buckets cut: recomputed here by the float64 NumPy
    # reference from the saved parameters and each sentence's real tokens.
    from minis2s import data, train
    from tests.reference import keras_crossentropy
    from tests.reference_bahdanau import bahdanau_model

    t = load_trained(latest_checkpoint(out))
    assert t.config.bucket and t.config.mask_padding
    ds = data.load_dataset(demo_path, 10)
    val = range(train.split_train_val(10, 0.2), 10)
    total, count = 0.0, 0
    for i in val:
        n_in, n_out = len(ds.input_texts[i]), len(ds.target_texts[i]) - 1  # positions that predict a real character
        probs, _ = bahdanau_model(t.params, ds.encoder_tokens[i : i + 1], [n_in], ds.decoder_tokens[i : i + 1, :n_out])
        target = data.one_hot(ds.target_tokens[i : i + 1, :n_out], len(ds.target_vocab))
        total, count = total + n_out * keras_crossentropy(probs, target), count + n_out
    history = json.loads((out / "history.json").read_text())
    np.testing.assert_allclose(history["val_loss"][0], total / count, rtol=1e-5)
