"""The Keras seed example, re-told top to bottom on minis2s' functions.

Run it as ``python scripts/train_seed.py --data PATH/fra.txt`` (defaults: the seed's
10,000 samples, 100 epochs, latent 256, batch 64). ``minis2s train`` does the same with
checkpoints and more options; this script is for reading.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from minis2s import data, model, train
from minis2s.decode import greedy_reference

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default=None, help="fra.txt or fra-eng.zip (default: download)")
parser.add_argument("--num-samples", type=int, default=10_000)
parser.add_argument("--epochs", type=int, default=100)
parser.add_argument("--latent-dim", type=int, default=256)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--show", type=int, default=20, help="training sentences to decode at the end")
args = parser.parse_args()

# 1. Load the data: the first num_samples English<TAB>French pairs, the target wrapped in
#    "\t" (start) and "\n" (end), sorted character vocabularies, padding with " ".
ds = data.load_dataset(data.resolve_data(args.data), args.num_samples)
print("Number of samples:", len(ds))
print("Number of unique input tokens:", len(ds.input_vocab))
print("Number of unique output tokens:", len(ds.target_vocab))
print("Max sequence length for inputs:", ds.max_encoder_seq_length)
print("Max sequence length for outputs:", ds.max_decoder_seq_length)

# 2. Build the model: encoder LSTM, decoder LSTM seeded with the encoder's final [h, c],
#    Dense softmax head. Parameters are a plain nested dict named as Keras names them.
config = train.Config(
    num_samples=args.num_samples, epochs=args.epochs, latent_dim=args.latent_dim, batch_size=args.batch_size
)
init_key, _ = jax.random.split(jax.random.PRNGKey(config.seed))
params = model.init_params(init_key, train.model_config(config, ds))
for layer, leaves in params.items():
    print(layer, {name: tuple(a.shape) for name, a in leaves.items()})

# 3. Train: RMSprop(1e-3), categorical cross-entropy on probabilities, accuracy over every
#    position; the last 20% of the samples are held out for validation, as Keras'
#    validation_split does. One line per epoch, like Keras' fit.
params, history = train.fit(config, ds, params=params)

# 4. Decode: encode the English sentence, then feed "\t" and each predicted character back
#    in until "\n", exactly as the seed's decode_sequence.
for i in range(min(args.show, len(ds))):
    decoded = greedy_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length)
    print("-")
    print("Input sentence:", ds.input_texts[i])
    print("Decoded sentence:", decoded.rstrip("\n"))
print("best val_accuracy:", max(history["val_accuracy"]), "min val_loss:", float(np.min(history["val_loss"])))
