"""Decoding speed: the batched jitted greedy decoder against the seed's per-sentence loop.

Both decode the same validation sentences with the same checkpoint: the last 20% of the
checkpoint's samples, rebuilt as training built them (2,000 sentences for the seed's
10,000 samples). The seed-style loop (:func:`minis2s.search.greedy_reference`: one
jitted decoder step and one device-to-host round trip per character) is slow, so it is
timed on a subset and extrapolated to all sentences; the output says so.

    PYTHONPATH=$PWD python scripts/benchmarks/bench_decode.py --checkpoint runs/seed --data fra.txt

``main(argv) -> int`` is also the ``decode`` section of ``scripts/benchmarks/bench.py``.

``--transformer`` times the Transformer's key/value cache instead (no checkpoint: speed
depends on the sizes, not the weights): greedy decoding of one sentence at the seed
recipe's lengths with :func:`minis2s.models.transformer.decode_step` (each step attends
over the cached keys and values of the prefix) against re-running the decoder over the
whole padded prefix at every step, the keras-io example's loop (the encoder runs once in
both). Both loops are one jitted ``lax.scan``, and both emit the same characters.

    PYTHONPATH=$PWD python scripts/benchmarks/bench_decode.py --transformer

Measured (2 shared CPU cores, load average 4, default sizes, 5 repeats): the cache 2.7
ms/sentence against 26.3 ms at batch 1 (9.8x), 2.0 against 23.0 ms at batch 64 (11.7x), 3.2
against 34.2 ms at batch 256 (10.8x). At batch 1 both loops are bound by per-operation
overhead rather than arithmetic, so the ratio there moves most with the machine's load
(6.6x to 9.5x at load average 9-10).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_FRA = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"
if str(ROOT) not in sys.path:  # run as a file: make the checkout importable
    sys.path.insert(0, str(ROOT))


def _load_sentences(trained, data_path, split: str):
    from minis2s import data as data_mod
    from minis2s.train import split_train_val

    text, source = data_mod.read_text(data_mod.resolve_data(data_path))
    inputs, _ = data_mod.parse_pairs(text, trained.config.num_samples, source)
    split_at = split_train_val(len(inputs), trained.config.validation_split)
    return (inputs[split_at:] if split == "val" else inputs[:split_at]), source


def _quick_checkpoint(data_path, epochs: int) -> str:
    """Train the seed model for ``epochs`` epochs into a temporary directory (speed does not
    depend on quality, only on the sizes)."""
    from minis2s import data as data_mod, train
    from minis2s.trained import save_trained

    config = train.Config(epochs=epochs)
    ds = data_mod.load_dataset(data_mod.resolve_data(data_path), config.num_samples)
    print(f"no --checkpoint: training the seed model for {epochs} epoch(s) first", flush=True)
    params, _ = train.fit(config, ds, log=lambda s: print("  " + s, flush=True))
    out = tempfile.mkdtemp(prefix="minis2s-bench-")
    save_trained(out, params, config, ds)
    return out


def keras_seed_decoder(trained):
    """The seed's inference models in Keras 3 with our weights, and its decoding loop.

    Benchmark-only oracle (Keras is not a runtime dependency): an encoder model giving the
    final ``[h, c]``, a one-step decoder model ``[one-hot char, h, c] -> [probs, h, c]``,
    and a loop that calls ``predict`` once per character, feeding back the argmax, as the
    Keras example's ``decode_sequence`` does. Returns ``decode(tokens (T_enc,)) -> str``.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import numpy as np

    p, h_dim = trained.params, trained.config.latent_dim
    v_in, v_out = len(trained.input_vocab), len(trained.target_vocab)
    enc_x = keras.Input(shape=(None, v_in))
    enc_lstm = keras.layers.LSTM(h_dim, return_state=True)
    _, enc_h, enc_c = enc_lstm(enc_x)
    encoder_model = keras.Model(enc_x, [enc_h, enc_c])
    dec_x, h_in, c_in = keras.Input(shape=(None, v_out)), keras.Input(shape=(h_dim,)), keras.Input(shape=(h_dim,))
    dec_lstm = keras.layers.LSTM(h_dim, return_sequences=True, return_state=True)
    dense = keras.layers.Dense(v_out, activation="softmax")
    hs, h_out, c_out = dec_lstm(dec_x, initial_state=[h_in, c_in])
    decoder_model = keras.Model([dec_x, h_in, c_in], [dense(hs), h_out, c_out])
    for layer, name in ((enc_lstm, "encoder"), (dec_lstm, "decoder")):
        layer.set_weights([np.asarray(p[name][k]) for k in ("kernel", "recurrent_kernel", "bias")])
    dense.set_weights([np.asarray(p["dense"]["kernel"]), np.asarray(p["dense"]["bias"])])
    eye_in, eye_out = np.eye(v_in, dtype="float32"), np.eye(v_out, dtype="float32")
    start, end = trained.target_vocab.index["\t"], "\n"

    def decode(tokens) -> str:
        states = encoder_model.predict(eye_in[tokens][None], verbose=0)
        char_in = eye_out[[start]][None]  # (1, 1, V_out) one-hot of the start token
        out = ""
        while True:
            probs, h, c = decoder_model.predict([char_in] + list(states), verbose=0)
            k = int(np.argmax(probs[0, -1]))
            out += trained.target_vocab.chars[k]
            if out[-1] == end or len(out) > trained.max_decoder_seq_length:
                return out
            char_in, states = eye_out[[k]][None], [h, c]

    return decode


def run(args) -> dict:
    import jax

    from minis2s import decode, search, translate
    from minis2s.trained import load_trained

    ckpt = args.checkpoint or _quick_checkpoint(args.data, args.train_epochs)
    trained = load_trained(ckpt)
    translate.check_trained(trained, ckpt)
    model = translate.model_of(trained)
    sentences, source = _load_sentences(trained, args.data, args.split)
    sentences = sentences[: args.sentences]
    n = len(sentences)
    prepared = translate.prepare_inputs(sentences, trained.input_vocab, trained.max_encoder_seq_length, "fail")
    tokens = trained.input_vocab.encode([p.text for p in prepared], trained.max_encoder_seq_length)
    lengths = [len(s) for s in sentences]
    p, tv, t_dec = trained.params, trained.target_vocab, trained.max_decoder_seq_length
    print(f"checkpoint {ckpt}: latent {trained.config.latent_dim}, vocab {len(trained.input_vocab)}/{len(tv)}, "
          f"T_enc {trained.max_encoder_seq_length}, T_dec {t_dec}")
    print(f"{n} {args.split} sentences of {source}; device {jax.devices()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    def batched(beam: int = 1):
        return decode.decode_tokens(p, tokens, tv, t_dec, beam=beam, batch_size=args.batch_size, input_lengths=lengths,
                                    model=model)

    result: dict = {"sentences": n, "batch_size": args.batch_size, "checkpoint": str(ckpt)}
    m = min(args.seed_subset, n)
    batched()  # compile every shape once
    search.greedy_reference(p, tokens[0], tv, t_dec, model, lengths[0])
    # Interleave: each repeat times the batched decoder once and the seed loop on a slice of
    # the subset, so both see the same machine load (the machine is shared and noisy).
    times, t_seed, seed = [], 0.0, []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        hyps = batched()
        times.append(time.perf_counter() - t0)
        lo, hi = r * m // args.repeats, (r + 1) * m // args.repeats
        t0 = time.perf_counter()
        seed += [search.greedy_reference(p, tokens[i], tv, t_dec, model, lengths[i]) for i in range(lo, hi)]
        t_seed += time.perf_counter() - t0
    t_batched = statistics.median(times)
    chars = sum(len(h.chars) for h in hyps)
    result["batched_seconds"] = t_batched
    result["batched_sentences_per_s"] = n / t_batched
    print(f"batched greedy (jitted while_loop, batch {args.batch_size}): {n} sentences in {t_batched:.2f} s "
          f"(median of {args.repeats}) = {n / t_batched:,.0f} sentences/s, {chars / t_batched:,.0f} chars/s")

    seed_chars = sum(len(s) for s in seed)
    per_sentence = t_seed / m
    identical = all(s == h.chars for s, h in zip(seed, hyps))
    result.update(seed_subset=m, seed_seconds_subset=t_seed, seed_sentences_per_s=1 / per_sentence,
                  seed_seconds_extrapolated=per_sentence * n, identical_on_subset=identical)
    print(f"seed-style loop (one sentence, one jitted step per character): {m} sentences in {t_seed:.2f} s = "
          f"{1 / per_sentence:,.1f} sentences/s ({1e3 * per_sentence:.1f} ms/sentence, "
          f"{1e3 * t_seed / seed_chars:.2f} ms/char); extrapolated to {n} sentences: {per_sentence * n:.0f} s")
    print(f"same strings on those {m} sentences: {'yes' if identical else 'NO'}")
    ratio = per_sentence * n / t_batched
    result["speedup"] = ratio
    print(f"speed-up of the batched decoder: {ratio:,.0f}x (target >= 100x)", flush=True)

    if args.keras:
        mk = min(args.keras, n)
        keras_decode = keras_seed_decoder(trained)
        keras_decode(tokens[0])  # build and compile the predict functions
        t0 = time.perf_counter()
        k_out = [keras_decode(tokens[i]) for i in range(mk)]
        t_keras = time.perf_counter() - t0
        per = t_keras / mk
        k_chars = sum(len(s) for s in k_out)
        same = all(a == h.chars for a, h in zip(k_out, hyps))
        result.update(keras_subset=mk, keras_sentences_per_s=1 / per, keras_speedup=per * n / t_batched,
                      keras_identical_on_subset=same)
        print(f"Keras seed loop (model.predict per character): {mk} sentences in {t_keras:.2f} s = "
              f"{1 / per:,.1f} sentences/s ({1e3 * per:.1f} ms/sentence, {1e3 * t_keras / k_chars:.2f} ms/char), "
              f"same strings: {'yes' if same else 'NO'}; batched decoder vs it: {per * n / t_batched:,.0f}x",
              flush=True)

    for k in args.beam:
        batched(k)
        t0 = time.perf_counter()
        batched(k)
        t = time.perf_counter() - t0
        result[f"beam{k}_sentences_per_s"] = n / t
        print(f"beam search width {k} (batched): {n / t:,.0f} sentences/s")
    return result


def transformer_cache(args) -> dict:
    """Per-sentence greedy decoding of the transformer: cached ``decode_step`` against re-running
    the decoder over the padded prefix (keras-io), interleaved, median of ``args.repeats``."""
    import jax
    import jax.numpy as jnp

    from minis2s import models
    from minis2s.models import transformer as tfm

    v_in, v_out, t_enc, t_dec = args.vocab_in, args.vocab_out, args.t_enc, args.t_dec
    steps = t_dec + 1  # the seed's limit: max_decoder_seq_length + 1 characters
    config = models.ModelConfig(v_in, v_out, 1, "transformer", max_positions=max(steps, t_enc))
    model = models.build(config)
    params = model.init(jax.random.PRNGKey(0))

    @jax.jit
    def cached(tokens, length):
        memory, state = model.encode(params, tokens, length)

        def step(carry, _):
            token, state = carry
            probs, state, _ = model.decode_step(params, memory, token, state)
            nxt = jnp.argmax(probs, -1).astype(jnp.int32)
            return (nxt, state), nxt

        start = jnp.zeros((tokens.shape[0],), jnp.int32)
        return jax.lax.scan(step, (start, state), None, length=steps)[1]  # (steps, B)

    @jax.jit
    def rerun(tokens, length):
        x, key_mask = tfm.encode_sequence(params, tokens, length, config.layers)

        def step(prefix, t):  # the whole decoder over the padded prefix; read position t
            y = tfm.positional_embedding(params["decoder_embedding"], prefix)
            for l in range(config.layers):
                y, _ = tfm.decoder_block(params[f"decoder_{l}"], y, x, key_mask)
            probs = models.dense_softmax(params["dense"], y[:, t])
            nxt = jnp.argmax(probs, -1).astype(jnp.int32)
            return jax.lax.dynamic_update_slice(prefix, nxt[:, None], (0, jnp.minimum(t + 1, steps - 1))), nxt

        return jax.lax.scan(step, jnp.zeros((tokens.shape[0], steps), jnp.int32), jnp.arange(steps))[1]

    print(f"transformer (layers {config.layers}, heads {config.heads}, d {config.embed_dim}, F {config.ff_dim}), "
          f"vocab {v_in}/{v_out}, T_enc {t_enc}, {steps} decoder steps; device {jax.devices()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    result: dict = {}
    for batch in args.tfm_batch:
        keys = jax.random.split(jax.random.PRNGKey(batch), max(1, 20 // batch))  # 20 sentences, or one batch
        inputs = [(jax.random.randint(k, (batch, t_enc), 0, v_in), jnp.full((batch,), t_enc, jnp.int32)) for k in keys]
        same = all(bool(jnp.all(cached(*x) == rerun(*x))) for x in inputs[:2])  # also compiles both
        times: dict = {"cached": [], "rerun": []}
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            for name, fn in (("cached", cached), ("rerun", rerun)):
                t0 = time.perf_counter()
                for x in inputs:
                    fn(*x).block_until_ready()
                times[name].append((time.perf_counter() - t0) / (len(inputs) * batch))
        c, r = statistics.median(times["cached"]), statistics.median(times["rerun"])
        print(f"  batch {batch:>3}: key/value cache {1e3 * c:.2f} ms/sentence, re-run decoder over the prefix "
              f"(keras-io) {1e3 * r:.2f} ms/sentence: cache speed-up {r / c:.1f}x (target >= 5x); "
              f"same characters: {'yes' if same else 'NO'}", flush=True)
        result[f"batch{batch}"] = {"cached_ms": 1e3 * c, "rerun_ms": 1e3 * r, "speedup": r / c, "same": same}
    return result


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench_decode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="checkpoint directory (default: train one for --train-epochs)")
    ap.add_argument("--data", default=str(SHARED_FRA) if SHARED_FRA.is_file() else None,
                    help="fra.txt or fra-eng.zip the checkpoint was trained on "
                    "(default: the shared fra.txt when present, else the downloaded copy in the cache)")
    ap.add_argument("--split", choices=["val", "train"], default="val")
    ap.add_argument("--sentences", type=int, default=2000, help="sentences to decode (default 2000)")
    ap.add_argument("--seed-subset", type=int, default=100, help="sentences the slow loop decodes (default 100)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="batched timings (the median is reported)")
    ap.add_argument("--beam", type=int, nargs="*", default=[], help="also time beam search of these widths")
    ap.add_argument("--keras", type=int, default=0, metavar="N",
                    help="also time the Keras seed's own decoding loop (model.predict per character) on N "
                    "sentences with the same weights (needs keras; default 0: skip)")
    ap.add_argument("--train-epochs", type=int, default=1)
    ap.add_argument("--json", help="write the numbers to this JSON file")
    t = ap.add_argument_group("--transformer: the key/value cache against re-running the decoder")
    t.add_argument("--transformer", action="store_true", help="time the transformer's decoding instead of a checkpoint's")
    t.add_argument("--vocab-in", type=int, default=71, help="input characters (default 71: the seed recipe's)")
    t.add_argument("--vocab-out", type=int, default=93, help="target characters (default 93)")
    t.add_argument("--t-enc", type=int, default=16, help="encoder length (default 16)")
    t.add_argument("--t-dec", type=int, default=59, help="max_decoder_seq_length (default 59)")
    t.add_argument("--tfm-batch", type=int, nargs="+", default=[1, 64],
                   help="sentences decoded at once; times are per sentence (default 1 64)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from minis2s.checkpoint import CheckpointError
    from minis2s.data import DataError

    try:
        result = transformer_cache(args) if args.transformer else run(args)
    except (DataError, CheckpointError, ValueError) as e:
        print(f"bench_decode: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
