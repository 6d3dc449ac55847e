#!/usr/bin/env python
"""Side-by-side training benchmark: minis2s (each gradient mode) vs Keras 3 (JAX) vs PyTorch.

One command, one data set, batch 64, the seed model (latent 256), measured in one run::

    python scripts/benchmarks/bench.py                  # full epochs (a few minutes), table + JSON
    python scripts/benchmarks/bench.py --quick          # a small corpus, ~1 minute: a smoke test
    python scripts/benchmarks/bench.py profile          # where a step's time goes (one-core CPU time)
    python scripts/benchmarks/bench.py decode [ARGS]    # the decoding benchmark (scripts/benchmarks/bench_decode.py)
    python scripts/benchmarks/bench.py --attention      # only the attention rows: seed, luong (+ input feeding), bahdanau, PyTorch bahdanau
    python scripts/benchmarks/bench.py --transformer    # only the transformer rows: minis2s and PyTorch

The attention rows (``--attention``, or name them in ``--variants``): ``minis2s-luong`` and
``minis2s-bahdanau`` train the registered models, ``minis2s-luong-feed`` luong with input
feeding (``--input-feeding``) (``minis2s-luong`` is skipped while
``luong`` is not in ``minis2s.models.MODELS``); ``torch-bahdanau`` is the same Bahdanau
model written as the PyTorch seq2seq tutorial writes it, a Python loop over decoder steps
with an ``LSTMCell`` and the additive attention, whose attention module projects the keys
``W_k h_j`` at every step (the tutorial's ``BahdanauAttention.forward`` applies ``Ua`` to the
encoder outputs on each call); ``torch-bahdanau-hoisted`` is the same loop with the keys
projected once per batch, before the loop, as minis2s does (a stronger PyTorch baseline than
the tutorial). The summary prints the targets: luong epoch / seed epoch (<= 1.3) and
torch-bahdanau epoch / minis2s-bahdanau epoch (>= 3), and the hoisted ratio beside it.

Every variant runs in its own worker process (so peak RSS is per variant and the JAX
processes of minis2s and Keras do not share caches or thread pools). The parent sends the
workers one command at a time, round-robin, so only one variant computes at any moment and
all of them see the same machine load over the run: on a shared, noisy machine the
*ratios* are the trustworthy numbers. Each variant first compiles (timed separately) and
runs a warm-up (for Keras: a small fit that compiles its steps); then ``--repeats`` timed
epochs each, round-robin; medians are reported. No new round starts after ``--budget-s``.

The transformer rows (``--transformer``): ``minis2s-transformer`` trains the registered
``transformer`` at its default sizes; ``torch-transformer`` is the same model written with
PyTorch's ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer``
(``scripts/benchmarks/torch_transformer.py``, checked against minis2s on the same weights
before it is timed). The summary prints the target minis2s epoch / PyTorch epoch (<= 1.0);
their "% of peak" uses the transformer's own matmul FLOP count
(``torch_transformer.flop_counts``).

The FLOP count behind "% of peak" is derived in docs/performance.md: the model's useful
matmul work with token gathers (no one-hot multiplies), the same count for every variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_FRA = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"
MARK = "@@BENCH "
VARIANTS = ("minis2s-bptt", "minis2s-autodiff", "keras-jax", "torch", "minis2s-gru", "torch-gru")
ATTENTION_VARIANTS = ("minis2s-bptt", "minis2s-luong", "minis2s-luong-feed", "minis2s-bahdanau", "torch-bahdanau",
                      "torch-bahdanau-hoisted")
FEED = "minis2s-luong-feed"  # luong with input feeding (ModelConfig.input_feeding)
TRANSFORMER_VARIANTS = ("minis2s-transformer", "torch-transformer")
GRADS = ("bptt", "autodiff")  # minis2s-<grad>: the seed with that LSTM gradient; minis2s-<model>: a registered model

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- data and FLOPs


def synthetic_pairs(n: int = 10000, seed: int = 0) -> tuple[list[str], list[str]]:
    """A corpus shaped like the seed's first 10,000 fra.txt lines: English up to 16 chars
    over 70 symbols, French up to 57 (59 with the start/end tokens) over 91 (+ tab, newline)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    en_chars = [chr(c) for c in range(33, 33 + 69)] + [" "]  # 70 symbols
    fr_chars = [chr(c) for c in range(33, 33 + 90)] + [" "]  # 91 symbols
    en_len = np.clip(rng.normal(9, 3, n).astype(int), 1, 16)
    fr_len = np.clip((en_len * 1.6 + rng.normal(0, 3, n)).astype(int), 1, 57)
    en_len[0], fr_len[0] = 16, 57  # the longest sequences fix the padded lengths
    ens = ["".join(rng.choice(en_chars, k)) for k in en_len]
    frs = ["".join(rng.choice(fr_chars, k)) for k in fr_len]
    ens[1], frs[1] = "".join(en_chars), "".join(fr_chars)[:57]  # every symbol appears
    ens[2], frs[2] = "x", "".join(fr_chars)[57:]
    return ens, frs


def load_data(args):
    from minis2s import data

    if args.data != "synthetic" and Path(args.data).is_file():
        ds = data.load_dataset(args.data, args.num_samples)
        source = str(args.data)
    else:
        ens, frs = synthetic_pairs(args.num_samples)
        ds = data.build_dataset(ens, [data.START + f + data.END for f in frs])
        source = "synthetic"
    if getattr(args, "steps_per_epoch", None):
        # Keep the seed's shapes and vocabularies (from all loaded pairs) but train on the first
        # steps*64 pairs and validate on the next steps*16: a shorter epoch, same work per step.
        m = min(len(ds), args.steps_per_epoch * args.batch_size * 5 // 4)
        ds = dataclasses.replace(
            ds, input_texts=ds.input_texts[:m], target_texts=ds.target_texts[:m],
            encoder_tokens=ds.encoder_tokens[:m], decoder_tokens=ds.decoder_tokens[:m],
            target_tokens=ds.target_tokens[:m],
        )
        source += f" (first {m} pairs)"
    return ds, source


def flop_counts(batch: int, t_enc: int, t_dec: int, hidden: int, v_out: int) -> dict[str, float]:
    """Matmul FLOPs of one training step and of one evaluation (forward) batch.

    Per LSTM timestep the forward recurrent matmul ``h U`` is ``2 B H 4H``; the backward
    pass has two of the same size (``dh = dZ U^T`` and the share of ``dU = H^T dZ``). Inputs
    are token gathers (0 FLOPs; their gradient is a scatter-add). The dense head is
    ``2 B T_dec H V`` forward and twice that backward (``dH`` and ``dW``). Element-wise
    work (gates, softmax, loss, optimizer) is left out: it is not matmul work.
    """
    recurrent = 2 * batch * hidden * 4 * hidden * (t_enc + t_dec)
    dense = 2 * batch * t_dec * hidden * v_out
    forward = recurrent + dense
    return {"train_step": 3.0 * forward, "eval_batch": float(forward)}


def _emit(obj) -> None:
    print(MARK + json.dumps(obj), flush=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- workers


class MinisWorker:
    """minis2s as ``fit`` runs it: on-device epoch runner, then the validation loop.
    ``cell="gru"``: the seed model with the GRU (hand-derived backward) in place of the LSTM;
    ``model="luong"`` or ``"bahdanau"``: that registered model; ``input_feeding``: luong's.
    """

    def __init__(self, args, ds, grad: str, cell: str = "lstm", model: str = "seed", input_feeding: bool = False):
        import jax
        import numpy as np

        from minis2s import models, train

        self.jax, self.np, self.train = jax, np, train
        cfg = train.Config(batch_size=args.batch_size, latent_dim=args.latent_dim, grad=grad, cell=cell, model=model,
                           input_feeding=input_feeding)
        self.cfg, self.ds = cfg, ds
        n = len(ds)
        self.split_at = train.split_train_val(n, cfg.validation_split)
        self.val_idx = np.arange(self.split_at, n)
        key = jax.random.PRNGKey(cfg.seed)
        init_key, self.shuffle_key = jax.random.split(key)
        seq2seq = models.build(train.model_config(cfg, ds), grad)
        self.params = seq2seq.init(init_key)
        self.opt = train.make_optimizer(cfg)
        self.opt_state = self.opt.init(self.params)
        self.dev = train.device_data(ds)
        self.epoch_no = 0

        index, weight = train.batch_plan(np.arange(self.split_at), cfg.batch_size)
        batch0 = next(train.batches(ds, np.arange(self.split_at), cfg.batch_size))
        t0, c0 = time.perf_counter(), time.process_time()
        self.step = train.make_train_step(self.opt, seq2seq.apply).lower(self.params, self.opt_state, batch0).compile()
        self.compile_step = time.perf_counter() - t0
        self.compile_step_cpu = time.process_time() - c0
        t0 = time.perf_counter()
        self.epoch_fn = (
            train.make_train_epoch(self.opt, seq2seq.apply)
            .lower(self.params, self.opt_state, self.dev, index, weight)
            .compile()
        )
        self.compile_epoch = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.eval_step = train.make_eval_step(seq2seq.apply).lower(self.params, batch0).compile()
        self.compile_eval = time.perf_counter() - t0

    def ready(self):
        return {
            "compile_s": self.compile_step,
            "compile_cpu_s": self.compile_step_cpu,
            "compile_epoch_runner_s": self.compile_epoch,
            "compile_eval_s": self.compile_eval,
            "train_steps": -(-self.split_at // self.cfg.batch_size),
        }

    def warmup(self):
        """Everything is compiled ahead of time; run a few single steps to wake the threads."""
        t0 = time.perf_counter()
        self.steps(2)
        return {"warmup_s": time.perf_counter() - t0}

    def epoch(self):
        jax, np, train = self.jax, self.np, self.train
        t0 = time.perf_counter()
        key = jax.random.fold_in(self.shuffle_key, self.epoch_no)
        perm = np.asarray(jax.random.permutation(key, self.split_at))
        index, weight = train.batch_plan(perm, self.cfg.batch_size)
        self.params, self.opt_state, totals, _ = self.epoch_fn(self.params, self.opt_state, self.dev, index, weight)
        loss = float(totals["loss_sum"]) / float(totals["count"])  # waits for the device
        t_train = time.perf_counter() - t0
        val = train.evaluate(self.params, self.ds, self.val_idx, self.cfg.batch_size, self.eval_step)
        seconds = time.perf_counter() - t0
        self.epoch_no += 1
        return {"epoch_s": seconds, "train_s": t_train, "loss": loss, "val_loss": val["loss"]}

    def steps(self, count: int):
        """Per-call jitted step times (the loop fit ran before the epoch runner)."""
        jax, np, train = self.jax, self.np, self.train
        times = []
        it = train.batches(self.ds, np.arange(self.split_at), self.cfg.batch_size)
        params, opt_state = self.params, self.opt_state
        for _ in range(count):
            batch = next(it)
            t0 = time.perf_counter()
            params, opt_state, _ = self.step(params, opt_state, batch)
            jax.block_until_ready(params)
            times.append(time.perf_counter() - t0)
        return {"step_s": times}


class KerasWorker:
    """The seed's Keras model and ``fit`` (JAX backend), timed by a callback per epoch."""

    def __init__(self, args, ds):
        os.environ["KERAS_BACKEND"] = "jax"
        import keras

        self.keras = keras
        h, v_in, v_out = args.latent_dim, len(ds.input_vocab), len(ds.target_vocab)
        enc_in = keras.Input(shape=(None, v_in))
        _, state_h, state_c = keras.layers.LSTM(h, return_state=True)(enc_in)
        dec_in = keras.Input(shape=(None, v_out))
        dec_out, _, _ = keras.layers.LSTM(h, return_sequences=True, return_state=True)(
            dec_in, initial_state=[state_h, state_c]
        )
        out = keras.layers.Dense(v_out, activation="softmax")(dec_out)
        self.model = keras.Model([enc_in, dec_in], out)
        self.model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
        self.x = list(ds.one_hot()[:2])
        self.y = ds.one_hot()[2]
        self.batch_size = args.batch_size
        n = len(ds)
        self.split_at = int(n * 0.8)
        last_val = (n - self.split_at) % args.batch_size or args.batch_size
        self.warmup_n = 5 * last_val if last_val % 16 == 0 else 80

        worker = self

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                worker._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                worker._t_epoch = time.perf_counter() - worker._t0
                worker._logs = dict(logs or {})

        self.timer = Timer()

    def ready(self):
        # Keras compiles inside the first fit call; the warm-up epoch reports it.
        return {"compile_s": None, "train_steps": -(-self.split_at // self.batch_size)}

    def warmup(self):
        """Keras compiles inside fit: a fit on a few samples whose batches have the shapes of
        the timed run's (e.g. 64 train + 16 validation for 10,000 pairs) compiles its steps."""
        t0 = time.perf_counter()
        w = self.warmup_n
        self.model.fit([x[:w] for x in self.x], self.y[:w], batch_size=self.batch_size, epochs=1,
                       validation_split=0.2, verbose=0)
        return {"warmup_s": time.perf_counter() - t0}

    def epoch(self):
        self.model.fit(
            self.x, self.y, batch_size=self.batch_size, epochs=1, validation_split=0.2,
            verbose=0, callbacks=[self.timer],
        )
        return {
            # Keras' JAX trainer dispatches steps asynchronously, so the train/validation split
            # of the epoch is not observable from a callback: only the whole epoch is timed.
            "epoch_s": self._t_epoch, "train_s": None,
            "loss": float(self._logs["loss"]), "val_loss": float(self._logs["val_loss"]),
        }


class TorchWorker:
    """An ``nn.LSTM`` encoder-decoder of the same sizes, the same loss (Keras' clipped
    categorical cross-entropy on probabilities) and RMSprop, ``--threads`` threads.
    ``cell="gru"``: ``nn.GRU`` layers instead (the decoder starts from the encoder's ``h``)."""

    def __init__(self, args, ds, cell: str = "lstm"):
        import numpy as np
        import torch
        from torch import nn

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        self.torch, self.np = torch, np
        h, v_in, v_out = args.latent_dim, len(ds.input_vocab), len(ds.target_vocab)

        class Seq2Seq(nn.Module):
            def __init__(self):
                super().__init__()
                rnn = nn.GRU if cell == "gru" else nn.LSTM
                self.encoder = rnn(v_in, h, batch_first=True)
                self.decoder = rnn(v_out, h, batch_first=True)
                self.dense = nn.Linear(h, v_out)

            def forward(self, enc_x, dec_x, lengths):  # lengths: unused, the seed reads the padding
                _, state = self.encoder(enc_x)
                out, _ = self.decoder(dec_x, state)
                return torch.softmax(self.dense(out), dim=-1)

        self.model = self.build_model(nn, torch, h, v_in, v_out) if hasattr(self, "build_model") else Seq2Seq()
        self.opt = torch.optim.RMSprop(self.model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        enc, dec, _ = ds.one_hot()
        self.enc, self.dec = torch.from_numpy(enc), torch.from_numpy(dec)
        self.tgt = torch.from_numpy(ds.target_tokens.astype(np.int64))
        self.lengths = torch.from_numpy(ds.encoder_lengths.astype(np.int64))
        self.batch_size = args.batch_size
        self.split_at = int(len(ds) * 0.8)
        self.gen = torch.Generator().manual_seed(0)

    def _loss(self, probs, tgt):
        p = probs / probs.sum(-1, keepdim=True)
        p = p.clamp(1e-7, 1 - 1e-7)
        return -self.torch.log(self.torch.gather(p, -1, tgt.unsqueeze(-1))).mean()

    def ready(self):
        return {"compile_s": None, "train_steps": -(-self.split_at // self.batch_size)}

    def warmup(self):
        t0 = time.perf_counter()
        self.epoch(max_steps=3)
        return {"warmup_s": time.perf_counter() - t0}

    def epoch(self, max_steps: int | None = None):
        torch = self.torch
        t0 = time.perf_counter()
        self.model.train()
        perm = torch.randperm(self.split_at, generator=self.gen)
        total = 0.0
        for s in range(0, self.split_at, self.batch_size):
            if max_steps is not None and s >= max_steps * self.batch_size:
                return {}
            idx = perm[s : s + self.batch_size]
            self.opt.zero_grad(set_to_none=True)
            loss = self._loss(self.model(self.enc[idx], self.dec[idx], self.lengths[idx]), self.tgt[idx])
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
        t_train = time.perf_counter() - t0
        self.model.eval()
        vtotal = 0.0
        with torch.no_grad():
            for s in range(self.split_at, len(self.enc), self.batch_size):
                sl = slice(s, s + self.batch_size)
                out = self.model(self.enc[sl], self.dec[sl], self.lengths[sl])
                vtotal += float(self._loss(out, self.tgt[sl])) * len(self.enc[sl])
        seconds = time.perf_counter() - t0
        return {
            "epoch_s": seconds, "train_s": t_train,
            "loss": total / self.split_at, "val_loss": vtotal / (len(self.enc) - self.split_at),
        }


class TorchBahdanauWorker(TorchWorker):
    """The Bahdanau model as the PyTorch seq2seq tutorial writes it: an ``nn.LSTM`` encoder
    over the whole (padded) sentence, then a Python loop over the decoder steps, each one
    additive attention ``v^T tanh(W_q s + W_k h_j)`` (padding masked), an ``LSTMCell`` on
    ``[one-hot previous char; context]`` and the softmax head on ``s_t``. Same sizes,
    loss and optimizer as minis2s' ``bahdanau``. (minis2s' encoder also stops at each
    sentence's length; the tutorial's reads the padding: a little less work here.)

    ``hoisted=False`` (the tutorial): the attention projects the keys ``W_k h_j`` inside the
    loop, at every step, as the tutorial's attention module does on each call. ``True``:
    once per batch, before the loop."""

    hoisted = False

    def __init__(self, args, ds, cell: str = "lstm"):
        import torch
        from torch import nn

        err = self.check_against_minis2s(nn, torch)
        if not err < 1e-5:
            raise SystemExit(f"torch-bahdanau differs from minis2s' bahdanau by {err:.1e} on the same weights; not timing it")
        super().__init__(args, ds, cell)

    @classmethod
    def build_model(cls, nn, torch, h, v_in, v_out):
        hoisted = cls.hoisted

        class Bahdanau(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.LSTM(v_in, h, batch_first=True)
                self.w_q = nn.Linear(h, h, bias=False)
                self.w_k = nn.Linear(h, h, bias=False)
                self.v = nn.Linear(h, 1, bias=False)
                self.cell = nn.LSTMCell(v_out + h, h)
                self.dense = nn.Linear(h, v_out)

            def forward(self, enc_x, dec_x, lengths):
                values, (s, c) = self.encoder(enc_x)  # (B, Te, H)
                s, c = s[0], c[0]
                keys = self.w_k(values) if hoisted else None  # (B, Te, H)
                pad = torch.arange(values.shape[1])[None, :] >= lengths[:, None]  # (B, Te)
                outputs = []
                for t in range(dec_x.shape[1]):
                    k = keys if hoisted else self.w_k(values)  # the tutorial: Ua(keys) on every call
                    scores = self.v(torch.tanh(self.w_q(s)[:, None, :] + k)).squeeze(-1)  # (B, Te)
                    weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1)
                    context = torch.bmm(weights[:, None, :], values)[:, 0]  # (B, H)
                    s, c = self.cell(torch.cat([dec_x[:, t], context], dim=-1), (s, c))
                    outputs.append(s)
                return torch.softmax(self.dense(torch.stack(outputs, dim=1)), dim=-1)

        return Bahdanau()

    @classmethod
    def check_against_minis2s(cls, nn, torch) -> float:
        """Load minis2s' ``bahdanau`` weights into this model and compare the probabilities on a
        small random batch (full-length sentences: the tutorial's encoder reads padding,
        minis2s' stops at each length). Returns the largest absolute difference; the benchmark
        refuses to time a model that computes something else."""
        import jax
        import numpy as np

        from minis2s import models

        v_in, v_out, h, batch, t_enc, t_dec = 7, 9, 6, 3, 5, 4
        model = models.build(models.ModelConfig(v_in, v_out, h, "bahdanau"))
        params = model.init(jax.random.PRNGKey(0))
        p = jax.tree.map(np.asarray, params)
        net = cls.build_model(nn, torch, h, v_in, v_out)
        t = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        with torch.no_grad():
            # Keras kernels are (in, out) with gates i, f, c, o; torch's weights are (out, in), same gate order
            for layer, name in ((net.encoder, "encoder"),):
                layer.weight_ih_l0.copy_(t(p[name]["kernel"].T))
                layer.weight_hh_l0.copy_(t(p[name]["recurrent_kernel"].T))
                layer.bias_ih_l0.copy_(t(p[name]["bias"]))
                layer.bias_hh_l0.zero_()
            net.cell.weight_ih.copy_(t(p["decoder"]["kernel"].T))
            net.cell.weight_hh.copy_(t(p["decoder"]["recurrent_kernel"].T))
            net.cell.bias_ih.copy_(t(p["decoder"]["bias"]))
            net.cell.bias_hh.zero_()
            net.w_q.weight.copy_(t(p["query"]["kernel"].T))
            net.w_k.weight.copy_(t(p["key"]["kernel"].T))
            net.v.weight.copy_(t(p["attention"]["scale"][None]))
            net.dense.weight.copy_(t(p["dense"]["kernel"].T))
            net.dense.bias.copy_(t(p["dense"]["bias"]))
        rng = np.random.default_rng(0)
        enc = rng.integers(0, v_in, (batch, t_enc)).astype(np.int32)
        dec = rng.integers(0, v_out, (batch, t_dec)).astype(np.int32)
        lengths = np.full(batch, t_enc, np.int32)
        ours = np.asarray(model.apply(params, {"encoder_tokens": enc, "encoder_lengths": lengths, "decoder_tokens": dec}))
        with torch.no_grad():
            theirs = net(t(np.eye(v_in)[enc]), t(np.eye(v_out)[dec]), torch.tensor(lengths, dtype=torch.int64)).numpy()
        return float(np.max(np.abs(theirs - ours)))


class TorchBahdanauHoistedWorker(TorchBahdanauWorker):
    """:class:`TorchBahdanauWorker` with the keys ``W_k h_j`` projected once per batch."""

    hoisted = True


class TorchTransformerWorker(TorchWorker):
    """minis2s' ``transformer`` at its default sizes in PyTorch (token inputs, not one-hot;
    ``scripts/benchmarks/torch_transformer.py``), the same loss and RMSprop as the other rows."""

    def __init__(self, args, ds):
        import torch
        from torch import nn

        from scripts.benchmarks import torch_transformer

        self.tt = torch_transformer
        err = torch_transformer.check_against_minis2s(nn, torch)
        if not err < 1e-5:
            raise SystemExit(f"torch-transformer differs from minis2s' transformer by {err:.1e} on the same weights; not timing it")
        self.sizes = torch_transformer.sizes(ds)
        super().__init__(args, ds)
        self.enc = torch.from_numpy(ds.encoder_tokens.astype("int64"))
        self.dec = torch.from_numpy(ds.decoder_tokens.astype("int64"))

    def build_model(self, nn, torch, h, v_in, v_out):
        return self.tt.build_model(nn, torch, v_in, v_out, **self.sizes)


class PeakWorker:
    """fp32 matmul peak: median GFLOP/s of an n x n x n matmul in JAX and in PyTorch."""

    def __init__(self, args, ds=None):
        self.args = args

    def ready(self):
        return {}

    def peak(self, n: int = 2048, repeats: int = 10):
        import jax
        import jax.numpy as jnp

        out = {}
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x, y: x @ y)
        mm(a, a).block_until_ready()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            mm(a, a).block_until_ready()
            times.append(time.perf_counter() - t0)
        out["jax_gflops"] = 2 * n**3 / statistics.median(times) / 1e9
        try:
            import torch

            torch.set_num_threads(self.args.threads)
            x = torch.randn(n, n)
            x @ x
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                x @ x
                times.append(time.perf_counter() - t0)
            out["torch_gflops"] = 2 * n**3 / statistics.median(times) / 1e9
        except ImportError:
            pass
        return out


def worker_main(args) -> int:
    ds, source = load_data(args)
    kind = args.worker
    if kind == "minis2s-gru":
        w = MinisWorker(args, ds, "bptt", cell="gru")
    elif kind.removeprefix("minis2s-") in GRADS:
        w = MinisWorker(args, ds, kind.removeprefix("minis2s-"))
    elif kind == FEED:
        w = MinisWorker(args, ds, "bptt", model="luong", input_feeding=True)
    elif kind.startswith("minis2s-"):
        w = MinisWorker(args, ds, "bptt", model=kind.removeprefix("minis2s-"))
    elif kind == "keras-jax":
        w = KerasWorker(args, ds)
    elif kind == "torch":
        w = TorchWorker(args, ds)
    elif kind == "torch-gru":
        w = TorchWorker(args, ds, cell="gru")
    elif kind == "torch-bahdanau":
        w = TorchBahdanauWorker(args, ds)
    elif kind == "torch-bahdanau-hoisted":
        w = TorchBahdanauHoistedWorker(args, ds)
    elif kind == "torch-transformer":
        w = TorchTransformerWorker(args, ds)
    elif kind == "peak":
        w = PeakWorker(args, ds)
    else:
        raise SystemExit(f"unknown worker {kind}")
    _emit({"ready": w.ready(), "source": source, "n": len(ds)})
    for line in sys.stdin:
        cmd = json.loads(line)
        c0 = time.process_time()
        result = getattr(w, cmd["op"])(*cmd.get("args", []))
        if cmd["op"] != "peak":
            result["cpu_s"] = time.process_time() - c0  # all threads of this process
            result["rss_mb"] = _rss_mb()
        _emit(result)
    return 0


# --------------------------------------------------------------------------- parent


class Worker:
    def __init__(self, name: str, argv: list[str], log_dir: Path, omp_wait_policy: str | None = None,
                 one_core: bool = False):
        self.name = name
        self.log = open(log_dir / f"{name}.log", "w")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("KERAS_BACKEND", "jax")
        if omp_wait_policy:
            env["OMP_WAIT_POLICY"] = omp_wait_policy
        cmd = [sys.executable, __file__, "--worker", name, *argv]
        if one_core:  # XLA without its thread pool, OpenMP with one thread, pinned to one core
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
            env["OMP_NUM_THREADS"] = "1"
            if hasattr(os, "sched_getaffinity"):
                cmd = ["taskset", "-c", str(max(os.sched_getaffinity(0))), *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.log.flush()
        raise RuntimeError(f"worker {self.name} exited (rc={self.proc.wait()}); see {self.log.name}")

    def call(self, op: str, *a) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, "args": list(a)}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


def available(name: str) -> bool:
    """Whether ``name`` can run here: its framework is installed, its model is registered."""
    import importlib.util

    if name.startswith("minis2s-") and name.removeprefix("minis2s-") not in (*GRADS, "gru"):
        from minis2s import models

        return ("luong" if name == FEED else name.removeprefix("minis2s-")) in models.MODELS
    if name == "torch-transformer" and not available("minis2s-transformer"):
        return False
    mod = {"keras-jax": "keras", "torch": "torch", "torch-gru": "torch", "torch-bahdanau": "torch",
           "torch-bahdanau-hoisted": "torch", "torch-transformer": "torch"}.get(name)
    return mod is None or importlib.util.find_spec(mod) is not None


def _median(xs):
    return statistics.median(xs) if xs else None


def _fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def run_bench(args) -> int:
    worker_argv = [
        "--data", str(args.data), "--num-samples", str(args.num_samples),
        "--batch-size", str(args.batch_size), "--latent-dim", str(args.latent_dim),
        "--threads", str(args.threads),
    ] + (["--steps-per-epoch", str(args.steps_per_epoch)] if args.steps_per_epoch else [])
    names = [v for v in args.variants.split(",") if v]
    skipped = [v for v in names if not available(v)]
    names = [v for v in names if v not in skipped]
    log_dir = Path(tempfile.mkdtemp(prefix="minis2s-bench-"))
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    one_core = args.threads == 1
    peak_w = Worker("peak", worker_argv, log_dir, one_core=one_core)  # measured before and after: the best is the peak
    peak_runs = [peak_w.call("peak")]
    print(f"matmul peak (2048^3 fp32): {peak_runs[0]}", file=sys.stderr)

    workers, results = {}, {}
    for name in names:  # start and compile one at a time, so compile times are not contended
        t0 = time.perf_counter()
        w = Worker(name, worker_argv, log_dir, args.omp_wait_policy if name.startswith("torch") else None, one_core)
        workers[name] = w
        results[name] = {"startup_s": time.perf_counter() - t0, **w.hello["ready"], "epochs": []}
        print(f"{name}: ready {results[name]}", file=sys.stderr)
    source, n = workers[names[0]].hello["source"], workers[names[0]].hello["n"]

    try:
        for name, w in workers.items():  # warm-up (Keras compiles here)
            r = w.call("warmup")
            results[name]["warmup_s"] = r["warmup_s"]
            print(f"{name}: warm-up {r['warmup_s']:.2f}s", file=sys.stderr)
        for name, w in workers.items():
            if name.startswith("minis2s-"):
                results[name]["single_step_s"] = w.call("steps", args.steps)["step_s"]
        repeats_done = 0
        for rep in range(args.repeats):  # round-robin: all variants see the same load
            if rep > 0 and time.perf_counter() - t_start > args.budget_s:
                print(f"time budget of {args.budget_s}s reached after {rep} repeats", file=sys.stderr)
                break
            for name, w in workers.items():
                r = w.call("epoch")
                results[name]["epochs"].append(r)
                results[name]["rss_mb"] = r["rss_mb"]
                print(f"{name}: epoch {rep + 1}: {r['epoch_s']:.2f}s (loss {r['loss']:.4f})", file=sys.stderr)
            repeats_done += 1
    finally:
        for w in workers.values():
            w.close()
    peak_runs.append(peak_w.call("peak"))
    peak_w.close()
    peak = {k: max(r[k] for r in peak_runs) for k in peak_runs[0]}
    peak_gflops = max(peak.values())

    probe = load_data(args)[0]
    flops = flop_counts(args.batch_size, probe.max_encoder_seq_length, probe.max_decoder_seq_length,
                        args.latent_dim, len(probe.target_vocab))
    split_at = int(len(probe) * 0.8)
    epoch_flops = (flops["train_step"] * split_at + flops["eval_batch"] * (len(probe) - split_at)) / args.batch_size
    steps = -(-split_at // args.batch_size)
    tfm_flops = tfm_epoch_flops = None
    if any(name in TRANSFORMER_VARIANTS for name in results):
        from scripts.benchmarks import torch_transformer

        tfm_flops = torch_transformer.flop_counts(
            args.batch_size, probe.max_encoder_seq_length, probe.max_decoder_seq_length, len(probe.target_vocab),
            **torch_transformer.sizes(probe))
        tfm_epoch_flops = (tfm_flops["train_step"] * split_at + tfm_flops["eval_batch"] * (len(probe) - split_at)) / args.batch_size

    rows = []
    for name, r in results.items():
        ep = [e["epoch_s"] for e in r["epochs"]]
        r["epoch_cpu_s_median"] = _median([e["cpu_s"] for e in r["epochs"]])
        tr = [e["train_s"] for e in r["epochs"] if e["train_s"] is not None]
        r["epoch_s_median"] = _median(ep)
        r["train_step_s_median"] = _median(tr) / steps if tr else None
        r["single_step_s_median"] = _median(r.get("single_step_s", []))
        seed_work = name in VARIANTS  # the FLOP count is the seed model's; attention rows get none
        row_flops, row_epoch_flops = (tfm_flops, tfm_epoch_flops) if name in TRANSFORMER_VARIANTS else (flops, epoch_flops)
        seed_work = seed_work or name in TRANSFORMER_VARIANTS  # the transformer rows: their own count
        r["peak_fraction_epoch"] = row_epoch_flops / r["epoch_s_median"] / (peak_gflops * 1e9) if ep and seed_work else None
        r["peak_fraction_train"] = (
            row_flops["train_step"] * split_at / args.batch_size / _median(tr) / (peak_gflops * 1e9) if tr and seed_work else None
        )
    for name, r in results.items():
        if name.endswith("-gru"):  # the FLOP count above is the LSTM's; a GRU does 3/4 of its recurrent matmuls
            r["peak_fraction_epoch"] = r["peak_fraction_train"] = None
        lstm_of = {"minis2s-gru": "minis2s-bptt", "torch-gru": "torch"}.get(name)
        if lstm_of in results and results[lstm_of]["epoch_s_median"] and r["epoch_s_median"]:
            r["ratio_vs_lstm"] = r["epoch_s_median"] / results[lstm_of]["epoch_s_median"]
        for ref in ("keras-jax", "torch"):
            if ref in results and results[ref]["epoch_s_median"] and r["epoch_s_median"]:
                r[f"ratio_vs_{ref}"] = r["epoch_s_median"] / results[ref]["epoch_s_median"]
        rows.append(name)

    head = ("| variant | compile s (CPU s) | warm-up s | s/epoch (median) | CPU s/epoch | train ms/step | jitted single step ms "
            "| % fp32 peak (epoch) | % peak (train) | vs Keras-JAX | vs PyTorch | peak RSS MB |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    for name in rows:
        r = results[name]
        lines.append(
            f"| {name} | {_fmt(r.get('compile_s'))}{_paren(r.get('compile_cpu_s'))} | {_fmt(r.get('warmup_s'))} | {_fmt(r['epoch_s_median'])} | {_fmt(r['epoch_cpu_s_median'])} "
            f"| {_fmt(r['train_step_s_median'] and 1e3 * r['train_step_s_median'], '.1f')} "
            f"| {_fmt(r['single_step_s_median'] and 1e3 * r['single_step_s_median'], '.1f')} "
            f"| {_fmt(r['peak_fraction_epoch'] and 100 * r['peak_fraction_epoch'], '.0f')} "
            f"| {_fmt(r['peak_fraction_train'] and 100 * r['peak_fraction_train'], '.0f')} "
            f"| {_fmt(r.get('ratio_vs_keras-jax'))} | {_fmt(r.get('ratio_vs_torch'))} | {_fmt(r.get('rss_mb'), '.0f')} |"
        )
    targets = attention_targets(results)
    load_after = os.getloadavg()
    summary = "".join(f"\n{line}" for line in targets) + (
        f"\ndata: {source}, {n} pairs ({split_at} train / {len(probe) - split_at} val), batch {args.batch_size}, "
        f"latent {args.latent_dim}, {args.threads} thread(s), T_enc {probe.max_encoder_seq_length}, T_dec {probe.max_decoder_seq_length}, "
        f"V_in {len(probe.input_vocab)}, V_out {len(probe.target_vocab)}; {repeats_done} timed epochs per variant "
        f"after a warm-up, medians.\nmatmul peak {peak_gflops:.0f} GFLOP/s fp32 ({_fmt_peak(peak)}); "
        f"useful FLOPs {flops['train_step'] / 1e9:.2f} GFLOP/train step, {epoch_flops / 1e12:.3f} TFLOP/epoch"
        + (f" (transformer {tfm_flops['train_step'] / 1e9:.2f} GFLOP/train step, {tfm_epoch_flops / 1e12:.3f} TFLOP/epoch; "
           f"sizes {torch_transformer.sizes(probe)})" if tfm_flops else "") + ".\n"
        f"load average before/after: {load_before[0]:.1f}/{load_after[0]:.1f} on {os.cpu_count()} CPUs"
        + (f"; skipped (not installed, or model not registered): {', '.join(skipped)}" if skipped else "")
        + "".join(
            f"\n{name} epoch / its LSTM's epoch: {_fmt(r['ratio_vs_lstm'])} (target <= 0.85)"
            for name, r in results.items() if r.get("ratio_vs_lstm")
        )
    )
    table = "\n".join(lines) + "\n" + summary
    print(table)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": _cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": load_after, "versions": _versions()},
        "data": {"source": source, "pairs": n, "train": split_at, "val": len(probe) - split_at,
                 "t_enc": probe.max_encoder_seq_length, "t_dec": probe.max_decoder_seq_length,
                 "v_in": len(probe.input_vocab), "v_out": len(probe.target_vocab)},
        "omp_wait_policy_torch": args.omp_wait_policy, "threads": args.threads,
        "batch_size": args.batch_size, "latent_dim": args.latent_dim, "repeats": repeats_done,
        "peak": peak, "peak_gflops": peak_gflops, "flops": {**flops, "epoch": epoch_flops},
        "transformer_flops": tfm_flops and {**tfm_flops, "epoch": tfm_epoch_flops},
        "variants": results, "skipped": skipped, "targets": targets, "table": table, "total_s": time.perf_counter() - t_start,
    }
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"JSON written to {args.json} ({report['total_s']:.0f}s total; worker logs in {log_dir})", file=sys.stderr)
    return 0


def attention_targets(results: dict) -> list[str]:
    """The attention rows' targets, from the median epoch times of one run: luong / seed
    (at most 1.3) and torch-bahdanau / minis2s-bahdanau (at least 3); then, with no target,
    torch-bahdanau-hoisted / minis2s-bahdanau."""
    def epoch(name):
        return results.get(name, {}).get("epoch_s_median")

    lines = []
    for slow, fast, what, ok in (
        ("minis2s-luong", "minis2s-bptt", "luong epoch / seed epoch", lambda r: r <= 1.3),
        ("torch-bahdanau", "minis2s-bahdanau", "PyTorch-tutorial bahdanau epoch / minis2s bahdanau epoch", lambda r: r >= 3.0),
    ):
        if epoch(slow) and epoch(fast):
            r = epoch(slow) / epoch(fast)
            target = "<= 1.3" if "luong" in slow else ">= 3"
            lines.append(f"{what}: {r:.2f} (target {target}: {'met' if ok(r) else 'NOT met'})")
    if epoch("minis2s-transformer") and epoch("torch-transformer"):
        r = epoch("minis2s-transformer") / epoch("torch-transformer")
        lines.append(f"minis2s transformer epoch / PyTorch transformer epoch: {r:.2f} (target <= 1.0: {'met' if r <= 1.0 else 'NOT met'})")
    if epoch("torch-bahdanau-hoisted") and epoch("minis2s-bahdanau"):
        r = epoch("torch-bahdanau-hoisted") / epoch("minis2s-bahdanau")
        lines.append(f"PyTorch bahdanau with the keys projected once / minis2s bahdanau epoch: {r:.2f} (no target)")
    return lines


def _paren(x) -> str:
    return "" if x is None else f" ({x:.2f})"


def _fmt_peak(peak: dict) -> str:
    return ", ".join(f"{k.removesuffix('_gflops')} {v:.0f}" for k, v in peak.items())


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("jax", "jaxlib", "optax", "keras", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


PROFILE_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "OMP_NUM_THREADS": "1"}


def run_profile(argv: list[str]) -> int:
    """Where the time of a minis2s training step goes, as CPU time on ONE thread.

    On a shared machine wall-clock times of small pieces are noise; the CPU time of a
    single-threaded process pinned to one core is far steadier (a few % between runs), so
    the pieces can be compared with each other and with a one-core matmul peak measured
    the same way. Re-executes itself with XLA's thread pool off, pinned to one core.
    """
    if os.environ.get("MINIS2S_PROFILE_CHILD") != "1":
        env = {**os.environ, **PROFILE_ENV, "MINIS2S_PROFILE_CHILD": "1"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, __file__, "profile", *argv]
        if hasattr(os, "sched_getaffinity"):
            cmd = ["taskset", "-c", str(max(os.sched_getaffinity(0))), *cmd]
        return subprocess.call(cmd, env=env)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from minis2s import bptt, lstm, model, train

    B, t_enc, t_dec, v_in, v_out, H = 64, 16, 59, 70, 93, 256
    reps = 8

    def cpu_ms(fn, *a):
        jax.block_until_ready(fn(*a))
        ts = []
        for _ in range(reps):
            c0 = time.process_time()
            jax.block_until_ready(fn(*a))
            ts.append(time.process_time() - c0)
        return 1e3 * statistics.median(ts)

    key = jax.random.PRNGKey(0)
    n = 2048
    a = jax.random.normal(key, (n, n))
    peak_ms = cpu_ms(jax.jit(lambda x: x @ x), a)
    peak = 2 * n**3 / peak_ms / 1e6  # GFLOP/s on one core
    rows = [("matmul 2048^3 (one-core peak)", peak_ms, 2 * n**3)]

    p = lstm.init_lstm(key, v_out, H)
    U = p["recurrent_kernel"]
    h = jnp.full((B, H), 0.1)
    zx = jnp.zeros((t_dec, B, 4 * H))
    rec = 2 * B * H * 4 * H * t_dec  # one pass of recurrent matmuls over the decoder

    def dot_only(U, zx, h):
        def step(h, zx_t):
            z = zx_t + h @ U
            return z[:, :H], None
        return jax.lax.scan(step, h, zx)[0]

    rows.append(("decoder scan, body = h @ U only", cpu_ms(jax.jit(dot_only), U, zx, h), rec))
    x = jax.random.randint(key, (B, t_dec), 0, v_out)
    w = jax.random.normal(key, (t_dec, B, H))
    fwd = jax.jit(lambda p, h: bptt.layer_time_major(p, x, (h, h))[0])
    rows.append(("decoder layer forward (one-tanh gates)", cpu_ms(fwd, p, h), rec))
    fwd_res = jax.jit(lambda p, h: bptt._lstm_fwd(p, x, h, h)[1][4:])
    rows.append(("decoder layer forward, saving residuals", cpu_ms(fwd_res, p, h), rec))
    layers = {
        "bptt": bptt.layer_time_major,
        "autodiff": lambda p, x, s: (jnp.swapaxes(lstm.layer(p, x, s)[0], 0, 1), None),
    }
    for name, layer in layers.items():
        g = jax.jit(jax.grad(lambda p, h: jnp.sum(w * layer(p, x, (h, h))[0]), argnums=(0, 1)))
        rows.append((f"decoder layer forward + backward ({name})", cpu_ms(g, p, h), 3 * rec))

    params = model.init_params(key, model.ModelConfig(v_in, v_out, H))
    rng = np.random.default_rng(0)
    batch = {
        "encoder_tokens": jnp.asarray(rng.integers(0, v_in, (B, t_enc)), jnp.int32),
        "decoder_tokens": jnp.asarray(rng.integers(0, v_out, (B, t_dec)), jnp.int32),
        "target_tokens": jnp.asarray(rng.integers(0, v_out, (B, t_dec)), jnp.int32),
        "weight": jnp.ones((B,), jnp.float32),
    }
    flops = flop_counts(B, t_enc, t_dec, H, v_out)
    head = jax.jit(jax.grad(lambda d, hs: train.loss_fn(
        {"encoder": params["encoder"], "decoder": params["decoder"], "dense": d}, batch,
        lambda prm, b: model.dense_softmax(prm["dense"], hs))[0], argnums=(0, 1)))
    hs = jnp.full((B, t_dec, H), 0.1)
    rows.append(("dense + softmax + loss, forward + backward", cpu_ms(head, params["dense"], hs),
                 3 * 2 * B * t_dec * H * v_out))
    opt = train.make_optimizer(train.Config())
    for grad in ("bptt", "autodiff"):
        step = train.make_train_step(opt, grad=grad)
        st = opt.init(params)
        rows.append((f"whole train step ({grad})", cpu_ms(lambda: step(params, st, batch)), flops["train_step"]))

    n_steps = 8  # the same step inside the epoch runner: data on the device, one call
    data = {k: jnp.concatenate([batch[k]] * n_steps) for k in ("encoder_tokens", "decoder_tokens", "target_tokens")}
    index = np.arange(n_steps * B, dtype=np.int32).reshape(n_steps, B)
    weight = np.ones((n_steps, B), np.float32)
    epoch = train.make_train_epoch(opt, grad="bptt")
    st = opt.init(params)
    ms = cpu_ms(lambda: epoch(params, st, data, index, weight)) / n_steps
    rows.append(("train step inside the epoch runner (bptt)", ms, flops["train_step"]))

    print(f"One-core CPU time (median of {reps}), seed shapes: B {B}, T_enc {t_enc}, T_dec {t_dec}, H {H}, V_out {v_out}")
    print("| piece | CPU ms | matmul GFLOP | GFLOP/s | % of one-core peak |")
    print("|---|---|---|---|---|")
    for name, ms, fl in rows:
        print(f"| {name} | {ms:.1f} | {fl / 1e9:.3f} | {fl / ms / 1e6:.0f} | {100 * fl / ms / 1e6 / peak:.0f} |")
    return 0


def run_decode(argv: list[str]) -> int:
    path = Path(__file__).resolve().parent / "bench_decode.py"
    if not path.is_file():
        print(f"bench.py decode: {path} does not exist (yet)", file=sys.stderr)
        return 2
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_decode", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return int(mod.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED_FRA) if SHARED_FRA.is_file() else "synthetic",
                   help="fra.txt path, or 'synthetic' (default: the shared fra.txt when present)")
    p.add_argument("--num-samples", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, choices=(1, 2),
                   help="2 (default): every framework uses the machine's cores (PyTorch set to 2 threads); "
                        "1: every worker single-threaded and pinned to one core, where CPU time is a "
                        "load-robust measure on a shared machine")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY for the PyTorch worker (default PASSIVE: on a shared, "
                        "oversubscribed machine spinning OpenMP threads slow PyTorch several-fold; '' keeps the default)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="shorter epochs with the same shapes: train on the first N*64 pairs, "
                        "validate on the next N*16 (default: the full 8,000/2,000 split)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per variant after the warm-up")
    p.add_argument("--steps", type=int, default=10, help="timed single jitted steps (minis2s)")
    p.add_argument("--budget-s", type=float, default=150.0, help="start no new repeat after this many seconds")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated subset of {','.join(VARIANTS + ATTENTION_VARIANTS[1:] + TRANSFORMER_VARIANTS)}")
    p.add_argument("--json", default="bench.json", help="where to write the JSON report (default bench.json)")
    p.add_argument("--attention", action="store_true",
                   help=f"run only the attention rows ({','.join(ATTENTION_VARIANTS)}); overrides --variants")
    p.add_argument("--transformer", action="store_true",
                   help=f"run only the transformer rows ({','.join(TRANSFORMER_VARIANTS)}); overrides --variants")
    p.add_argument("--quick", action="store_true", help="800 pairs, 1 repeat, 3 steps: a smoke test in about a minute")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["decode"]:
        return run_decode(argv[1:])
    if argv[:1] == ["profile"]:
        return run_profile(argv[1:])
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.attention:
        args.variants = ",".join(ATTENTION_VARIANTS)
    if args.transformer:
        args.variants = ",".join(TRANSFORMER_VARIANTS)
    if args.quick:
        args.num_samples, args.repeats, args.steps = min(args.num_samples, 800), 1, 3
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
