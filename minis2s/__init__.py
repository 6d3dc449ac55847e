"""minis2s: the Keras character-level seq2seq (English to French) example in pure JAX."""

__version__ = "0.1.0"
