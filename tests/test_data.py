"""Data: fixtures for two- and three-column files, zip input, vocabularies, padding, shapes."""

import socket
import zipfile

import numpy as np
import pytest

from minis2s import data
from tests.conftest import TINY_PAIRS


def test_two_and_three_column_files_give_the_same_dataset(two_column_file, three_column_file):
    a = data.load_dataset(two_column_file)
    b = data.load_dataset(three_column_file)
    assert a.input_texts == b.input_texts == [e for e, _ in TINY_PAIRS]
    assert a.target_texts == b.target_texts == ["\t" + f + "\n" for _, f in TINY_PAIRS]
    np.testing.assert_array_equal(a.decoder_tokens, b.decoder_tokens)


def test_zip_input(tmp_path, two_column_file):
    z = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("_about.txt", "about")
        zf.write(two_column_file, "fra.txt")
    a = data.load_dataset(z)
    b = data.load_dataset(two_column_file)
    assert a.input_texts == b.input_texts and a.target_texts == b.target_texts


def test_vocabulary_is_sorted_and_complete(two_column_file):
    ds = data.load_dataset(two_column_file)
    assert list(ds.input_vocab.chars) == sorted(set("".join(ds.input_texts)) | {" "})
    assert list(ds.target_vocab.chars) == sorted(set("".join(ds.target_texts)))
    assert ds.target_vocab.chars[0] == "\t" and ds.target_vocab.chars[1] == "\n"  # sort order


def test_lengths_padding_and_shift(two_column_file):
    ds = data.load_dataset(two_column_file)
    t_enc = max(len(e) for e, _ in TINY_PAIRS)
    t_dec = max(len(f) for _, f in TINY_PAIRS) + 2  # "\t" and "\n"
    assert ds.encoder_tokens.shape == (8, t_enc) and ds.decoder_tokens.shape == (8, t_dec)
    assert ds.target_tokens.shape == (8, t_dec)
    assert ds.encoder_tokens.dtype == np.int32
    # Row 0: "Go." -> "\tVa !\n", padded with spaces.
    assert ds.input_vocab.decode(ds.encoder_tokens[0]) == "Go.".ljust(t_enc)
    assert ds.target_vocab.decode(ds.decoder_tokens[0]) == "\tVa !\n".ljust(t_dec)
    assert ds.target_vocab.decode(ds.target_tokens[0]) == "Va !\n".ljust(t_dec)


def test_one_hot_equals_the_seed_arrays(two_column_file):
    """Rebuild the seed's three float arrays with its own loop and compare."""
    ds = data.load_dataset(two_column_file)
    enc, dec_in, dec_tgt = ds.one_hot()
    ii, ti = ds.input_vocab.index, ds.target_vocab.index
    want_enc = np.zeros_like(enc)
    want_in = np.zeros_like(dec_in)
    want_tgt = np.zeros_like(dec_tgt)
    for i, (src, tgt) in enumerate(zip(ds.input_texts, ds.target_texts)):
        for t, ch in enumerate(src):
            want_enc[i, t, ii[ch]] = 1.0
        want_enc[i, t + 1 :, ii[" "]] = 1.0
        for t, ch in enumerate(tgt):
            want_in[i, t, ti[ch]] = 1.0
            if t > 0:
                want_tgt[i, t - 1, ti[ch]] = 1.0
        want_in[i, t + 1 :, ti[" "]] = 1.0
        want_tgt[i, t:, ti[" "]] = 1.0
    np.testing.assert_array_equal(enc, want_enc)
    np.testing.assert_array_equal(dec_in, want_in)
    np.testing.assert_array_equal(dec_tgt, want_tgt)
    assert enc.dtype == np.float32


def test_num_samples_takes_a_prefix_and_may_exceed_the_file(two_column_file):
    assert data.load_dataset(two_column_file, num_samples=3).input_texts == ["Go.", "Run!", "Hi."]
    assert len(data.load_dataset(two_column_file, num_samples=10_000)) == 8
    assert len(data.load_dataset(two_column_file, num_samples=None)) == 8


def test_line_without_tab_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("Go.\tVa !\nRun! Cours !\n", encoding="utf-8")
    with pytest.raises(data.DataError, match=r"bad\.txt:2: .*no TAB"):
        data.load_dataset(p)


def test_offline_download_says_how_to_pass_data(tmp_path):
    # A port this test holds bound but not listening: a connection to it is refused, whatever
    # else runs on this machine.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        with pytest.raises(data.DataError, match="--data PATH"):
            data.download(f"http://127.0.0.1:{port}/fra-eng.zip", tmp_path, timeout=2)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_cached_download_is_verified_and_reused(tmp_path, two_column_file):
    z = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(two_column_file, "fra.txt")
    # Already in the cache: no network needed, the file is checked and returned.
    assert data.download("http://127.0.0.1:9/fra-eng.zip", tmp_path) == z
    z.write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a zip"):
        data.download("http://127.0.0.1:9/fra-eng.zip", tmp_path)


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIS2S_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path


def test_shared_corpus_matches_the_seed_shapes(shared_fra):
    ds = data.load_dataset(shared_fra, 10_000)
    assert len(ds) == 10_000
    assert (len(ds.input_vocab), len(ds.target_vocab)) == (70, 93)
    assert (ds.max_encoder_seq_length, ds.max_decoder_seq_length) == (16, 59)
