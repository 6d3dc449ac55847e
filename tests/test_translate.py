"""``minis2s translate``: sentences and stdin, beam search, bad input, bad checkpoints."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._decode_reference import beam_with_greedy_reference
from tests._tiny_model import save_tiny_checkpoint, tiny_model
from tests.conftest import run_cli
from minis2s import search
from minis2s import translate as tr
from minis2s.trained import load_trained, save_trained
from minis2s.model import ModelConfig, init_params

import jax
from tests._cli import run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))


@pytest.fixture(scope="module")
def trained(ckpt):
    return load_trained(ckpt)


def seed_loop(trained, text: str) -> str:
    """The seed's per-sentence decoding of ``text``, end token removed."""
    tokens = trained.input_vocab.encode([text], trained.max_encoder_seq_length)[0]
    return search.greedy_reference(
        trained.params, tokens, trained.target_vocab, trained.max_decoder_seq_length, tr.model_of(trained)
    ).removesuffix("\n")


def test_sentences_are_translated_as_the_seed_loop_does(ckpt, trained):
    sentences = ["Go.", "Run!", "I see.", "Who are you?"]
    rc, out, err = run(["translate", ckpt, *sentences])
    assert rc == 0, err
    assert out.split("\n") == [seed_loop(trained, s) for s in sentences] + [""]
    assert err == ""


def test_stdin_lines_in_order_with_crlf_bom_and_blank_lines(ckpt, trained):
    rc, out, err = run(["translate", ckpt], stdin=b"\xef\xbb\xbfGo.\r\n\nRun!\nGo.")
    assert rc == 0, err
    go, run_ = seed_loop(trained, "Go."), seed_loop(trained, "Run!")
    assert out == f"{go}\n\n{run_}\n{go}\n"


def test_beam_option(ckpt, trained):
    sentences = ["Go.", "I am cold.", "Where is the cat?"]
    rc, out, err = run(["translate", ckpt, "--beam", "3", *sentences])
    assert rc == 0, err
    expected = []
    for s in sentences:  # the plain Python search, greedy's output competing as by default
        tokens = trained.input_vocab.encode([s], trained.max_encoder_seq_length)[0]
        chars = beam_with_greedy_reference(tr.model_of(trained), trained.params, tokens, trained.target_vocab,
                                           trained.max_decoder_seq_length, 3)[0]
        expected.append(chars.removesuffix("\n"))
    assert out.splitlines() == expected
    rc, _, err = run(["translate", ckpt, "--beam", "0", "Go."])
    assert rc == 2 and "must be positive" in err


def test_empty_string_gives_an_empty_line(ckpt):
    rc, out, err = run(["translate", ckpt, "", "Go.", ""])
    assert rc == 0, err
    lines = out.split("\n")
    assert len(lines) == 4 and lines[0] == "" and lines[1] != "" and lines[2] == "" and lines[3] == ""


BLANKS = ["", " ", "   ", "\t", " \u00a0\u2028 "]  # the last two: outside the vocabulary too


def test_blank_input_translates_to_nothing_without_the_model(trained, monkeypatch):
    """Issue 21: blank text (empty or whitespace only) is consistently an empty output, in
    every --on-error mode, for greedy, beam and sampling; the model is not run for it."""
    calls = []
    real = tr.decode_tokens
    monkeypatch.setattr(tr, "decode_tokens", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    for mode in ("fail", "skip", "truncate"):
        for beam in (1, 2):
            results = tr.translate(trained, BLANKS + ["Go."], on_error=mode, beam=beam)
            assert [r.output for r in results[:-1]] == [""] * len(BLANKS)
            assert all(r.problem is None and r.hypothesis is None for r in results[:-1])
            assert results[-1].output == (seed_loop(trained, "Go.") if beam == 1 else results[-1].hypothesis.text)
            assert results[-1].hypothesis is not None
        samples = tr.translate_samples(trained, BLANKS, samples=2, temperature=1.0, seed=0, on_error=mode)
        assert [[s.output for s in per] for per in samples] == [["", ""]] * len(BLANKS)
    assert calls == [1] * 6  # only "Go." reached the model
    # what --on-error truncate leaves of an input can be blank too: nothing to translate either
    (p,) = tr.prepare_inputs(["  \u00e9 "], trained.input_vocab, trained.max_encoder_seq_length, "truncate")
    assert p.text == "" and "outside the training vocabulary" in p.problem
    assert tr.translate(trained, ["  \u00e9 "], on_error="truncate")[0].output == ""


def test_blank_input_gives_an_empty_line_in_the_cli(ckpt, trained):
    rc, out, err = run(["translate", ckpt, "   ", "Go.", "\t"])
    assert rc == 0 and err == "", err
    assert out == f"\n{seed_loop(trained, 'Go.')}\n\n"
    rc, out, err = run(["translate", ckpt], stdin=b"  \nGo.\n \t \n")
    assert rc == 0 and out == f"\n{seed_loop(trained, 'Go.')}\n\n", err


def test_unknown_characters_are_named_and_nothing_is_translated(ckpt):
    rc, out, err = run(["translate", ckpt, "Go.", "Où est-ce?", "Hi."])
    assert rc == 2
    assert out == ""
    assert "input 2 'Où est-ce?'" in err
    assert "'ù' (U+00F9 LATIN SMALL LETTER U WITH GRAVE)" in err and "'-' (U+002D HYPHEN-MINUS)" in err
    assert "input 1" not in err and "input 3" not in err
    assert "--on-error" in err and "Traceback" not in err


def test_too_long_input_is_reported_with_its_length(ckpt, trained):
    limit = trained.max_encoder_seq_length
    long = "a" * (limit + 5)
    rc, out, err = run(["translate", ckpt, long])
    assert rc == 2 and out == ""
    assert f"input 1 '{long}': {limit + 5} characters, longer than the encoder's {limit}" in err
    rc, out, err = run(["translate", ckpt, "b" * 50])
    assert rc == 2 and f"input 1 '{'b' * 40}...': 50 characters" in err


def test_on_error_skip_and_truncate(ckpt, trained):
    limit = trained.max_encoder_seq_length
    long = "I see. " * 6
    rc, out, err = run(["translate", ckpt, "--on-error", "skip", "Go.", "Où?", long])
    assert rc == 0
    assert out.split("\n") == [seed_loop(trained, "Go."), "", "", ""]
    assert err.count("warning (skipped)") == 2

    rc, out, err = run(["translate", ckpt, "--on-error", "truncate", "Go.", "Où?", long])
    assert rc == 0
    assert out.split("\n") == [seed_loop(trained, "Go."), seed_loop(trained, "O?"), seed_loop(trained, long[:limit]), ""]
    assert err.count("warning (repaired)") == 2
    assert "translated as 'O?'" in err


def test_invalid_utf8_on_stdin(ckpt, trained):
    rc, out, err = run(["translate", ckpt], stdin=b"Go.\nH\xffi.\n")
    assert rc == 2 and out == ""
    assert "line 2: not valid UTF-8 (byte 0xff at column 2)" in err
    rc, out, err = run(["translate", ckpt, "--on-error", "skip"], stdin=b"Go.\nH\xffi.\n")
    assert rc == 0
    assert out == seed_loop(trained, "Go.") + "\n\n"
    assert "line 2: not valid UTF-8" in err and "U+FFFD" in err


def test_missing_or_invalid_checkpoint_is_a_one_line_error(tmp_path, ckpt):
    rc, out, err = run(["translate", str(tmp_path / "nope"), "Go."])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "nope" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = run(["translate", str(tmp_path / "empty"), "Go."])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "checkpoint" in err
    (tmp_path / "file").write_text("hello")
    rc, _, err = run(["translate", str(tmp_path / "file"), "Go."])
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_checkpoint_whose_arrays_do_not_fit_its_vocabularies(tmp_path):
    params, ds, config, _ = tiny_model()
    wrong = init_params(jax.random.PRNGKey(0), ModelConfig(len(ds.input_vocab) + 1, len(ds.target_vocab), 8))
    save_trained(tmp_path / "bad", wrong, config, ds)
    rc, out, err = run(["translate", str(tmp_path / "bad"), "Go."])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "shape" in err and "Traceback" not in err


@pytest.mark.slow
def test_subprocess_end_to_end(ckpt, trained, tmp_path):
    r = run_cli("translate", ckpt, input="Go.\nRun!\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == seed_loop(trained, "Go.") + "\n" + seed_loop(trained, "Run!") + "\n"
    r = run_cli("translate", str(tmp_path / "missing"), "Go.")
    assert r.returncode == 2
    assert r.stderr.startswith("minis2s translate: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- properties

any_text = st.text(st.characters(blacklist_categories=()), max_size=40)  # surrogates included


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text, mode=st.sampled_from(["fail", "skip", "truncate"]), beam=st.sampled_from([1, 2]))
def test_arbitrary_unicode_never_crashes_translate(ckpt, trained, text, mode, beam):
    rc, out, err = run(["translate", ckpt, "--on-error", mode, "--beam", str(beam), "--", text])
    blank = not text.strip()
    fits = blank or (not trained.input_vocab.unknown(text) and len(text) <= trained.max_encoder_seq_length)
    if mode == "fail" and not fits:
        assert rc == 2 and out == "" and "input 1" in err
    else:
        assert rc == 0, err
        assert out.endswith("\n") and out.count("\n") == 1
        repaired = "".join(c for c in text if c in trained.input_vocab.chars)[: trained.max_encoder_seq_length]
        nothing_to_translate = blank or (not fits and (mode == "skip" or not repaired.strip()))
        assert (out == "\n") == nothing_to_translate


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_truncate_always_yields_encodable_text(trained, text):
    (p,) = tr.prepare_inputs([text], trained.input_vocab, trained.max_encoder_seq_length, "truncate")
    assert not trained.input_vocab.unknown(p.text) and len(p.text) <= trained.max_encoder_seq_length
    if not text.strip():  # blank: nothing to translate, nothing wrong
        assert p.text == "" and p.problem is None
    else:
        assert (p.problem is None) == (p.text == text)
    trained.input_vocab.encode([p.text], trained.max_encoder_seq_length)  # does not raise


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_encode_then_decode_round_trip(trained, data):
    for vocab, length in ((trained.input_vocab, trained.max_encoder_seq_length),
                          (trained.target_vocab, trained.max_decoder_seq_length)):
        text = data.draw(st.text(st.sampled_from(vocab.chars), max_size=length))
        tokens = vocab.encode([text], length)
        assert tokens.shape == (1, length)
        assert vocab.decode(tokens[0]) == text + " " * (length - len(text))
        assert np.all(tokens[0, len(text):] == vocab.index[" "])


def test_bucketed_model_translates_with_its_training_padding():
    """A --bucket model saw each sentence padded only to its bucket width; translate must
    pad the same way, and then equals the seed-style loop on those tokens."""
    import dataclasses

    from minis2s import trained as ckpt
    from minis2s.bucketing import Batcher
    from minis2s.search import greedy_reference
    from minis2s.translate import model_of, translate

    params, ds, config, _ = tiny_model()
    trained = ckpt.Trained(
        params=params, config=dataclasses.replace(config, bucket=True), input_vocab=ds.input_vocab,
        target_vocab=ds.target_vocab, max_encoder_seq_length=ds.max_encoder_seq_length,
        max_decoder_seq_length=ds.max_decoder_seq_length,
    )
    # the encoder input each sentence had in training: its row of the batch a bucketing
    # Batcher put it in (each batch is cut to its bucket's width)
    seen = {}
    for batch_rows in (batcher := Batcher(ds, 8, bucket=True)).plan(np.arange(len(ds))):
        batch = batcher.batch(batch_rows)
        for j, i in enumerate(batch_rows):
            seen[int(i)] = batch["encoder_tokens"][j]
    texts = ds.input_texts[:40]
    widths = {len(seen[i]) for i in range(40)}
    assert len(widths) > 1 and min(widths) < ds.max_encoder_seq_length  # the test covers several buckets
    got = [t.output for t in translate(trained, texts)]
    model = model_of(trained)
    want = [greedy_reference(params, seen[i], ds.target_vocab, ds.max_decoder_seq_length, model).rstrip("\n")
            for i in range(40)]
    assert got == want


def test_a_repeated_sentence_is_decoded_once_and_answered_each_time(trained, monkeypatch):
    calls = []
    real = tr.decode_tokens
    monkeypatch.setattr(tr, "decode_tokens", lambda params, tokens, *a, **k: calls.append(len(tokens)) or real(params, tokens, *a, **k))
    texts = ["Go.", "I see.", "Go.", "Go.", "Who are you?", "I see."]
    got = [r.output for r in tr.translate(trained, texts)]
    assert got == [seed_loop(trained, t) for t in texts]  # the seed's loop, one sentence at a time
    assert sum(calls) == 3  # three distinct sentences reach the model
