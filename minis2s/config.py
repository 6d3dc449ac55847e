"""Training settings: the :class:`Config` dataclass, the optimizer it names, and the
history keys every run records. Imported by training, checkpoints and the CLI alike (it
imports none of them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import optax

from . import cells, models, scheduled
from .data import Dataset
from .models import ModelConfig
from .splits import SPLITS

@dataclass(frozen=True)
class Config:
    """Training settings; the defaults are the Keras seed example's."""

    num_samples: int | None = 10000  # None: every line of the file
    batch_size: int = 64
    epochs: int = 100
    latent_dim: int = 256
    validation_split: float = 0.2
    seed: int = 0
    learning_rate: float = 1e-3
    rho: float = 0.9
    epsilon: float = 1e-7
    # How the LSTM gradient is computed: "bptt" (hand-derived backward pass, faster; see
    # scripts/bench.py and docs/performance.md) or "autodiff" (JAX differentiates the scan;
    # the reference). Both give the same numbers within float tolerance.
    grad: str = "bptt"
    model: str = "seed"  # an entry of minis2s.models.MODELS; "seed" is the Keras example
    cell: str = cells.DEFAULT  # an entry of minis2s.cells.CELLS ("lstm")
    attention_scale: bool = False  # luong: learn a scale of the attention scores (Keras use_scale=True)
    bucket: bool = False  # length buckets (minis2s/bucketing.py); departs from the seed
    mask_padding: bool = False  # loss over real target characters only; departs from the seed
    # Scheduled sampling (minis2s/scheduled.py): the probability of feeding the decoder the
    # true previous character (1.0: always, the seed's teacher forcing); with
    # teacher_forcing_end, it decays linearly to that value at the last epoch.
    teacher_forcing: float = 1.0
    teacher_forcing_end: float | None = None
    # Which pairs train, validate and test (minis2s/splits.py): "keras" is the seed's
    # validation_split (the last lines, no test side); "source" keeps every translation of an
    # English sentence on one side, drawn from a hash of split_seed and the sentence, with
    # test_split of the sources held out for the test and validation_split for validation.
    split: str = "keras"
    test_split: float = 0.05
    split_seed: int = 0
    # The transformer's sizes (--model transformer; minis2s/models/transformer.py), read by
    # models.config_for; the other models ignore them. Defaults: ModelConfig's.
    layers: int = ModelConfig.layers
    heads: int = ModelConfig.heads
    embed_dim: int = ModelConfig.embed_dim
    ff_dim: int = ModelConfig.ff_dim
    max_positions: int = ModelConfig.max_positions
    input_feeding: bool = False  # luong: feed the previous attentional vector to the decoder (Luong et al. 3.3)
    dropout: float = ModelConfig.dropout  # the transformer: dropout rate in training (minis2s/dropout.py)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.num_samples is not None and self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        for name in ("batch_size", "epochs", "latent_dim", *models.TRANSFORMER_FIELDS):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.validation_split < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {self.validation_split}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive and finite, got {self.learning_rate}")
        for name in ("teacher_forcing", "teacher_forcing_end"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        if self.split == "source" and not (0.0 < self.test_split and self.test_split + self.validation_split < 1.0):
            raise ValueError(f"test_split must be positive and test_split + validation_split below 1, got "
                             f"{self.test_split} + {self.validation_split}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        models.check_names(self.model, self.cell, self.grad)
        probe = models.config_for(dataclasses.replace(self, latent_dim=1), "ab", "ab")  # the smallest such model
        if self.dropout and not models.build(probe, self.grad).dropout:
            raise ValueError(f"dropout needs a model that drops (e.g. --model transformer), not {self.model}")
        if self.dropout and scheduled.uses_scheduled_sampling(self.teacher_forcing, self.teacher_forcing_end):
            raise ValueError("dropout and scheduled sampling (teacher_forcing below 1) cannot be combined: "
                             "scheduled sampling trains through the decoding path, which never drops")
        if self.attention_scale and "attention/scale" not in models.param_shapes(probe):
            raise ValueError(f"attention_scale needs a model with attention (e.g. --model luong), not {self.model}")
        if self.input_feeding:  # a model that uses it widens its decoder's input by H (1 here)
            plain = models.param_shapes(dataclasses.replace(probe, input_feeding=False))
            if models.param_shapes(probe).get("decoder/kernel") == plain.get("decoder/kernel"):
                raise ValueError(f"input_feeding needs a model whose decoder reads its attentional vector "
                                 f"(e.g. --model luong), not {self.model}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Keras ``RMSprop()``: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / sqrt(v + eps)``."""
    return optax.rmsprop(config.learning_rate, decay=config.rho, eps=config.epsilon)


def model_config(config: Config, data: Dataset) -> ModelConfig:
    """The model ``config`` trains on ``data``: :func:`minis2s.models.config_for` of its vocabularies."""
    return models.config_for(config, data.input_vocab, data.target_vocab)


# Per-epoch values in a run's history (history.json and every checkpoint manifest).
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
