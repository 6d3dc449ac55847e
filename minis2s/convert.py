"""Keras weights <-> minis2s parameters.

A trained Keras seed model (two ``LSTM`` layers and a softmax ``Dense``) holds exactly the
numbers minis2s uses, under the same names: each LSTM has ``kernel (D, 4H)``,
``recurrent_kernel (H, 4H)`` and ``bias (4H,)`` with the gates in the order i, f, c, o,
and the Dense has ``kernel (H, V_out)`` and ``bias (V_out,)``. The GRU variant (two
``GRU(reset_after=True)`` layers, Keras 3's default) has ``kernel (D, 3H)``,
``recurrent_kernel (H, 3H)`` and ``bias (2, 3H)``, gates z, r, h, as :mod:`minis2s.gru`;
which cell a set of weights belongs to is read off the bias shape (:func:`cell_of`).
Conversion is therefore a copy, no transposes or gate reordering::

    from minis2s.convert import from_keras
    params = from_keras("s2s.keras")          # or "s2s.weights.h5", "s2s.h5", or a model
    probs = minis2s.model.apply(params, encoder_tokens, decoder_tokens)

Which layer is which: the first LSTM (or GRU) of the model (the seed builds the encoder first) is
the ``encoder``, the second the ``decoder``, the only Dense is ``dense``; then the shapes
must fit together (decoder units = encoder units = Dense inputs; decoder inputs = Dense
outputs). Pass ``layer_names={"encoder": ..., "decoder": ..., "dense": ...}`` to choose
by Keras layer name instead.

Files:

- ``.keras`` (Keras 3 ``model.save``): loaded with ``keras.saving.load_model``.
- ``.weights.h5`` (Keras 3 ``model.save_weights``): read with ``h5py`` alone, no model
  needed; layers are found by name (``layers/lstm/cell/vars/0`` ...), LSTMs in the order
  of their names (``lstm``, ``lstm_1``, ...: creation order).
- ``.h5`` (legacy Keras 2 ``model.save`` / ``save_weights``): read with ``h5py``; the
  file lists its layers in model order.

Keras and h5py are imported only inside these functions (they are test-time packages
for minis2s, never runtime dependencies).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from .model import ModelConfig, param_shapes

__all__ = [
    "ConversionError", "LAYERS", "cell_of", "find_keras_layers", "from_keras", "from_keras_model",
    "from_weights_file", "keras_seed_model", "to_keras",
]

LAYERS = ("encoder", "decoder", "dense")
LSTM_WEIGHTS = ("kernel", "recurrent_kernel", "bias")  # Keras' variable order (GRU: the same)
GATES = {"lstm": 4, "gru": 3}  # gate blocks per cell: kernel (D, GATES * H)
DENSE_WEIGHTS = ("kernel", "bias")


class ConversionError(ValueError):
    """The model or file is not the seed's architecture, or cannot be read."""


# --------------------------------------------------------------------------- shared


def _import_keras():
    # Keras picks its backend at import; minis2s is a JAX project, so ask for JAX unless
    # the user chose otherwise (or Keras is already imported).
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError as e:
        raise ConversionError(f"reading Keras models needs the keras package ({e}); pip install keras") from None
    return keras


def _import_h5py():
    try:
        import h5py
    except ImportError as e:
        raise ConversionError(f"reading .h5 files needs the h5py package ({e}); pip install h5py") from None
    return h5py


def _short(name: str) -> str:
    """Keras 3 ``kernel``; Keras 2 ``lstm/lstm_cell/kernel:0`` -> ``kernel``."""
    return name.rsplit("/", 1)[-1].split(":")[0]


def _natural_key(name: str) -> tuple:
    """``lstm`` < ``lstm_1`` < ``lstm_2`` < ``lstm_10`` (Keras numbers layers as it creates them)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def cell_of(params: Mapping) -> str:
    """``"gru"`` when the encoder bias is ``(2, 3H)`` (Keras GRU, reset_after), else ``"lstm"``."""
    return "gru" if np.ndim(params["encoder"]["bias"]) == 2 else "lstm"


def _finish(raw: dict[str, dict[str, np.ndarray]], source: str) -> dict[str, dict[str, jnp.ndarray]]:
    """Check that the three layers fit together; return float32 JAX arrays."""
    enc, dec, dense = raw["encoder"], raw["decoder"], raw["dense"]
    expected = {"encoder": LSTM_WEIGHTS, "decoder": LSTM_WEIGHTS, "dense": DENSE_WEIGHTS}
    for role, names in expected.items():
        missing = [n for n in names if n not in raw[role]]
        if missing:
            raise ConversionError(f"{source}: the {role} layer has no {', '.join(missing)} weights")
    h = enc["recurrent_kernel"].shape[0]
    v_out = dense["kernel"].shape[-1]
    cell = cell_of(raw)
    gates = GATES[cell]
    if enc["kernel"].ndim != 2 or enc["kernel"].shape[1] != gates * h:
        raise ConversionError(f"{source}: encoder/kernel has shape {enc['kernel'].shape}, expected (V_in, {gates * h})")
    # V_in is whatever the encoder kernel says; every other shape must fit the seed model.
    for path, shape in param_shapes(ModelConfig(enc["kernel"].shape[0], v_out, h, cell=cell)).items():
        role, name = path.split("/")
        got = tuple(raw[role][name].shape)
        if got != shape:
            raise ConversionError(
                f"{source}: {path} has shape {got}, expected {shape} for the seed model "
                f"(latent_dim {h}, {v_out} output tokens); is this the seed's {cell.upper()} encoder-decoder? "
                "If the layers were matched wrongly, pass layer_names={'encoder': ..., 'decoder': ..., 'dense': ...}"
            )
    return {role: {n: jnp.asarray(np.asarray(a, np.float32)) for n, a in raw[role].items()} for role in LAYERS}


# --------------------------------------------------------------------------- Keras model objects


def find_keras_layers(model: Any, layer_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"encoder": LSTM layer, "decoder": LSTM layer, "dense": Dense layer}`` of a Keras model
    (or two GRU layers: the model's recurrent layers must be both LSTMs or both GRUs)."""
    keras = _import_keras()
    if layer_names is not None:
        unknown = set(layer_names) - set(LAYERS)
        if unknown or set(layer_names) != set(LAYERS):
            raise ConversionError(f"layer_names must map exactly {LAYERS} to Keras layer names, got {dict(layer_names)}")
        try:
            return {role: model.get_layer(name) for role, name in layer_names.items()}
        except ValueError as e:
            names = [layer.name for layer in model.layers]
            raise ConversionError(f"{e}; the model's layers are {names}") from None
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    grus = [layer for layer in model.layers if isinstance(layer, keras.layers.GRU)]
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    recurrent = grus if len(grus) == 2 and not lstms else lstms
    if len(recurrent) != 2 or len(denses) != 1 or (lstms and grus):
        found = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers]
        gru_note = f" (and {len(grus)} GRU)" if grus else ""
        raise ConversionError(
            f"expected the seed's 2 LSTM (or 2 GRU) layers and 1 Dense layer, found {len(lstms)} LSTM and "
            f"{len(denses)} Dense{gru_note} among {found}; pass layer_names={{'encoder': ..., 'decoder': ..., 'dense': ...}}"
        )
    return {"encoder": recurrent[0], "decoder": recurrent[1], "dense": denses[0]}


def _check_layer_config(layers: dict[str, Any]) -> None:
    """minis2s computes tanh/sigmoid LSTMs (or GRUs with ``reset_after=True``) with biases and
    a softmax Dense; refuse others."""
    want_lstm = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "go_backwards": False}
    for role in ("encoder", "decoder"):
        cfg = layers[role].get_config()
        kind = type(layers[role]).__name__
        want = dict(want_lstm, reset_after=True) if kind == "GRU" else want_lstm
        for k, v in want.items():
            if k in cfg and cfg[k] != v:
                raise ConversionError(f"{role} {kind} {layers[role].name!r} has {k}={cfg[k]!r}; minis2s needs {k}={v!r}")
    cfg = layers["dense"].get_config()
    if cfg.get("activation") != "softmax" or not cfg.get("use_bias", True):
        raise ConversionError(
            f"Dense {layers['dense'].name!r} has activation={cfg.get('activation')!r}, "
            f"use_bias={cfg.get('use_bias')}; minis2s needs a softmax Dense with a bias"
        )


def from_keras_model(model: Any, layer_names: Mapping[str, str] | None = None) -> dict:
    """Parameters of a Keras seed model object (see the module docstring)."""
    layers = find_keras_layers(model, layer_names)
    _check_layer_config(layers)
    raw = {role: {_short(v.name): np.asarray(v.numpy()) for v in layer.weights} for role, layer in layers.items()}
    return _finish(raw, f"Keras model {model.name!r}")


def to_keras(params: Mapping, model: Any, layer_names: Mapping[str, str] | None = None) -> Any:
    """Copy minis2s ``params`` into a Keras seed model, variable by variable, by name.

    Returns the model. Raises :class:`ConversionError` on a missing name or a shape mismatch.
    """
    layers = find_keras_layers(model, layer_names)
    for role, layer in layers.items():
        for v in layer.weights:
            name = _short(v.name)
            if name not in params[role]:
                raise ConversionError(f"params[{role!r}] has no {name!r} for Keras variable {v.path}")
            value = np.asarray(params[role][name], np.float32)
            if tuple(value.shape) != tuple(v.shape):
                raise ConversionError(f"{role}/{name} has shape {value.shape}, Keras variable {v.path} has {tuple(v.shape)}")
            v.assign(value)
    return model


def keras_seed_model(
    num_encoder_tokens: int, num_decoder_tokens: int, latent_dim: int, compile: bool = True, cell: str = "lstm"
) -> Any:
    """The Keras example's training model, built with Keras (for exports and parity checks).

    ``Input -> LSTM(return_state)`` encoder, ``LSTM(return_sequences, return_state)``
    decoder started from the encoder state, ``Dense(softmax)``; compiled as the seed does
    (``rmsprop``, ``categorical_crossentropy``, ``accuracy``) unless ``compile=False``.
    ``cell="gru"`` puts ``keras.layers.GRU`` (``reset_after=True``) in place of both LSTMs:
    the encoder hands the decoder its one state ``h``.
    """
    keras = _import_keras()
    if cell not in GATES:
        raise ConversionError(f"cell must be one of {', '.join(GATES)}; got {cell!r}")
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    if cell == "gru":
        _, state_h = keras.layers.GRU(latent_dim, return_state=True)(encoder_inputs)
        decoder_gru = keras.layers.GRU(latent_dim, return_sequences=True, return_state=True)
        decoder_outputs, _ = decoder_gru(decoder_inputs, initial_state=[state_h])
    else:
        _, state_h, state_c = keras.layers.LSTM(latent_dim, return_state=True)(encoder_inputs)
        decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
        decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=[state_h, state_c])
    outputs = keras.layers.Dense(num_decoder_tokens, activation="softmax")(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], outputs)
    if compile:
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


# --------------------------------------------------------------------------- files


def _assign_roles(lstms: list[tuple[str, dict]], denses: list[tuple[str, dict]], source: str) -> dict:
    if len(lstms) != 2 or len(denses) != 1:
        raise ConversionError(
            f"{source}: expected the seed's 2 LSTM (or GRU) layers and 1 Dense layer, found LSTM/GRU "
            f"{[n for n, _ in lstms]} and Dense {[n for n, _ in denses]}; pass layer_names=..."
        )
    return {"encoder": lstms[0][1], "decoder": lstms[1][1], "dense": denses[0][1]}


def _read_keras3_weights(f, source: str, layer_names: Mapping[str, str] | None) -> dict:
    """Keras 3 ``.weights.h5``: ``layers/<name>/cell/vars/{0,1,2}``, ``layers/<name>/vars/{0,1}``."""
    if "layers" not in f:
        raise ConversionError(f"{source}: no 'layers' group; not a Keras 3 .weights.h5 file")
    group = f["layers"]
    lstms, denses = [], []
    for name in sorted(group.keys(), key=_natural_key):
        layer = group[name]
        if "cell" in layer and "vars" in layer["cell"] and len(layer["cell"]["vars"]) == 3:
            v = layer["cell"]["vars"]
            lstms.append((name, {n: v[str(i)][()] for i, n in enumerate(LSTM_WEIGHTS)}))
        elif "vars" in layer and len(layer["vars"]) == 2 and layer["vars"]["0"].ndim == 2:
            v = layer["vars"]
            denses.append((name, {n: v[str(i)][()] for i, n in enumerate(DENSE_WEIGHTS)}))
    if layer_names is not None:
        found = dict(lstms + denses)
        missing = [n for n in layer_names.values() if n not in found]
        if missing:
            raise ConversionError(f"{source}: no layer(s) {missing}; layers with weights: {list(found)}")
        return {role: found[name] for role, name in layer_names.items()}
    return _assign_roles(lstms, denses, source)


def _read_legacy_h5(f, source: str, layer_names: Mapping[str, str] | None) -> dict:
    """Keras 2 style ``.h5``: attribute ``layer_names`` in model order, ``weight_names`` per layer."""
    root = f["model_weights"] if "model_weights" in f else f
    lstms, denses = [], []
    found = {}
    for raw_name in root.attrs["layer_names"]:
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        group = root[name]
        weights = {}
        for wname in group.attrs.get("weight_names", []):
            wname = wname.decode() if isinstance(wname, bytes) else str(wname)
            weights[_short(wname)] = group[wname][()]
        found[name] = weights
        if set(weights) == set(LSTM_WEIGHTS):
            lstms.append((name, weights))
        elif set(weights) == set(DENSE_WEIGHTS) and weights["kernel"].ndim == 2:
            denses.append((name, weights))
    if layer_names is not None:
        missing = [n for n in layer_names.values() if n not in found]
        if missing:
            raise ConversionError(f"{source}: no layer(s) {missing}; layers: {list(found)}")
        return {role: found[name] for role, name in layer_names.items()}
    return _assign_roles(lstms, denses, source)


def from_weights_file(path: str | os.PathLike, layer_names: Mapping[str, str] | None = None) -> dict:
    """Parameters from a Keras 3 ``.weights.h5`` or a legacy ``.h5`` file, read with h5py."""
    h5py = _import_h5py()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs):
            raw = _read_legacy_h5(f, str(path), layer_names)
        else:
            raw = _read_keras3_weights(f, str(path), layer_names)
    return _finish(raw, str(path))


def from_keras(source: Any, layer_names: Mapping[str, str] | None = None) -> dict:
    """minis2s parameters from a Keras seed model, or a ``.keras`` / ``.weights.h5`` / ``.h5`` file.

    Args:
        source: a Keras model object, or the path of a saved model or weights file.
        layer_names: optional ``{"encoder": name, "decoder": name, "dense": name}``.
    Returns:
        ``{"encoder": {...}, "decoder": {...}, "dense": {...}}`` of float32 arrays, ready
        for :func:`minis2s.model.apply` (a GRU model's for
        ``models.build(ModelConfig(..., cell=cell_of(params)))``).
    Raises:
        ConversionError: a missing or unreadable file, or not the seed's architecture.
    """
    if not isinstance(source, (str, os.PathLike)):
        return from_keras_model(source, layer_names)
    path = Path(source)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return from_weights_file(path, layer_names)
    if name.endswith(".keras"):
        keras = _import_keras()
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as e:  # Keras raises many kinds for a bad archive
            raise ConversionError(f"{path}: Keras could not load it ({type(e).__name__}: {e})") from None
        return from_keras_model(model, layer_names)
    raise ConversionError(f"{path}: expected a .keras, .weights.h5 or .h5 file")
