"""Train the seed model with Keras 3 (JAX backend) on the same data, for comparison.

Keras is a test/benchmark-only oracle for minis2s, never a runtime dependency. This script
builds the Keras example's model (``minis2s.convert.keras_seed_model``), trains it on the
seed's one-hot arrays exactly as the example does (``fit(batch_size=64, epochs=100,
validation_split=0.2)``) and writes the history as JSON, so that a minis2s run's
``history.json`` can be compared epoch by epoch:

    KERAS_BACKEND=jax python scripts/benchmarks/keras_seed.py --data PATH/fra.txt --out keras-history.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from minis2s import data  # noqa: E402
from minis2s.convert import keras_seed_model  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", required=True)
parser.add_argument("--num-samples", type=int, default=10_000)
parser.add_argument("--epochs", type=int, default=100)
parser.add_argument("--latent-dim", type=int, default=256)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="keras-history.json")
args = parser.parse_args()

keras.utils.set_random_seed(args.seed)
ds = data.load_dataset(args.data, args.num_samples)
enc, dec_in, dec_tgt = ds.one_hot()
model = keras_seed_model(len(ds.input_vocab), len(ds.target_vocab), args.latent_dim)


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.t0


h = model.fit([enc, dec_in], dec_tgt, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.2, verbose=2, callbacks=[EpochTimer()])
history = {k: [float(v) for v in vs] for k, vs in h.history.items()}
with open(args.out, "w") as f:
    json.dump(history, f, indent=1)
va, vl = np.array(history["val_accuracy"]), np.array(history["val_loss"])
print(f"val_accuracy at the last epoch {va[-1]:.4f} (best {va.max():.4f} at epoch {va.argmax() + 1}); "
      f"min val_loss {vl.min():.4f} at epoch {vl.argmin() + 1}; median {np.median(history['seconds']):.1f} s/epoch")
