"""Keras weights <-> minis2s parameters.

A trained Keras seed model (two ``LSTM`` layers and a softmax ``Dense``) holds exactly the
numbers minis2s uses, under the same names: each LSTM has ``kernel (D, 4H)``,
``recurrent_kernel (H, 4H)`` and ``bias (4H,)`` with the gates in the order i, f, c, o,
and the Dense has ``kernel (H, V_out)`` and ``bias (V_out,)``. The GRU variant (two
``GRU(reset_after=True)`` layers, Keras 3's default) has ``kernel (D, 3H)``,
``recurrent_kernel (H, 3H)`` and ``bias (2, 3H)``, gates z, r, h, as :mod:`minis2s.gru`;
which cell a set of weights belongs to is read off its shapes (:func:`cell_of`; each
:class:`minis2s.cells.Cell` names its Keras layer and gate count).
Conversion is therefore a copy, no transposes or gate reordering::

    from minis2s.convert import from_keras
    params = from_keras("s2s.keras")          # or "s2s.weights.h5", "s2s.h5", or a model
    probs = minis2s.model.apply(params, encoder_tokens, decoder_tokens)

Which layer is which: the first LSTM (or GRU) of the model (the seed builds the encoder first) is
the ``encoder``, the second the ``decoder``, the only Dense is ``dense``; then the shapes
must fit together (decoder units = encoder units = Dense inputs; decoder inputs = Dense
outputs). Pass ``layer_names={"encoder": ..., "decoder": ..., "dense": ...}`` to choose
by Keras layer name instead.

The Luong attention model (:func:`keras_luong_model`; ``minis2s train --model luong``)
converts the same way: its two LSTMs are ``encoder`` and ``decoder``, the ``tanh`` Dense
over ``[context ; decoder output]`` (kernel ``(2H, H)``) is ``combine``, the softmax Dense
is ``dense``; the ``Attention`` layer has no weights, except with ``use_scale=True``
(``minis2s train --attention-scale``): its scalar ``scale`` is ``attention/scale``. Which model a Keras model or file
holds is read from its layers (one Dense: the seed; two Denses and an ``Attention``
layer, or in a weights file two Denses: Luong).

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

from . import cells
from .model import ModelConfig, param_shapes

__all__ = [
    "ConversionError", "LAYERS", "cell_of", "find_keras_layers", "from_keras", "from_keras_model",
    "from_weights_file", "keras_luong_model", "keras_seed_model", "LUONG_LAYERS", "to_keras",
    "from_keras_transformer", "keras_transformer_model", "to_keras_transformer",
]

LAYERS = ("encoder", "decoder", "dense")  # the seed's layers
LUONG_LAYERS = ("encoder", "decoder", "combine", "dense")  # and "attention" with use_scale=True
RECURRENT_ROLES = ("encoder", "decoder")
LSTM_WEIGHTS = ("kernel", "recurrent_kernel", "bias")  # Keras' variable order (GRU: the same)
DENSE_WEIGHTS = ("kernel", "bias")


class ConversionError(ValueError):
    """The model or file is not the seed's (or the Luong model's) architecture, or cannot be read."""


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


def cell_of(params: Mapping, source: str = "params") -> str:
    """The cell whose shapes the encoder's weights have (:func:`minis2s.cells.of_params`):
    ``"gru"`` for a ``(2, 3H)`` bias (Keras GRU, reset_after), ``"lstm"`` for ``(4H,)``."""
    cell = cells.of_params(params["encoder"])
    if cell is None:
        shapes = {k: tuple(np.shape(v)) for k, v in params["encoder"].items()}
        raise ConversionError(f"{source}: the encoder's weights {shapes} fit no cell ({', '.join(cells.CELLS)})")
    return cell.name


def _model_name(roles) -> str:
    """``"luong"`` when there is a ``combine`` layer, else ``"seed"``."""
    return "luong" if "combine" in roles else "seed"


def _finish(raw: dict[str, dict[str, np.ndarray]], source: str) -> dict[str, dict[str, jnp.ndarray]]:
    """Check that the layers fit together; return float32 JAX arrays."""
    model = _model_name(raw)
    scaled = model == "luong" and "attention" in raw  # Keras Attention(use_scale=True)
    roles = (*LUONG_LAYERS, *(("attention",) if scaled else ())) if model == "luong" else LAYERS
    for role in roles:
        names = LSTM_WEIGHTS if role in RECURRENT_ROLES else ("scale",) if role == "attention" else DENSE_WEIGHTS
        missing = [n for n in names if n not in raw[role]]
        if missing:
            raise ConversionError(f"{source}: the {role} layer has no {', '.join(missing)} weights")
    enc, dense = raw["encoder"], raw["dense"]
    h = enc["recurrent_kernel"].shape[0]
    v_out = dense["kernel"].shape[-1]
    cell = cells.get(cell_of(raw, source))
    gates = cell.gates
    if enc["kernel"].ndim != 2 or enc["kernel"].shape[1] != gates * h:
        raise ConversionError(f"{source}: encoder/kernel has shape {enc['kernel'].shape}, expected (V_in, {gates * h})")
    # V_in is whatever the encoder kernel says; every other shape must fit the model.
    sizes = ModelConfig(enc["kernel"].shape[0], v_out, h, model, cell.name, attention_scale=scaled)
    for path, shape in param_shapes(sizes).items():
        role, name = path.split("/")
        got = tuple(raw[role][name].shape)
        if got != shape:
            names = ", ".join(f"{r!r}: ..." for r in roles)
            raise ConversionError(
                f"{source}: {path} has shape {got}, expected {shape} for the {model} model "
                f"(latent_dim {h}, {v_out} output tokens); is this the {model}'s {cell.name.upper()} encoder-decoder? "
                f"If the layers were matched wrongly, pass layer_names={{{names}}}"
            )
    return {role: {n: jnp.asarray(np.asarray(a, np.float32)) for n, a in raw[role].items()} for role in roles}


def _split_denses(denses: list, rows, source: str) -> dict:
    """The Luong model's two Denses: ``combine`` reads ``[context ; h]`` (twice the rows of
    ``dense``, which reads ``combine``'s output); ``rows(d)`` is a Dense's input size."""
    a, b = denses
    if rows(a) == 2 * rows(b):
        return {"combine": a, "dense": b}
    if rows(b) == 2 * rows(a):
        return {"combine": b, "dense": a}
    raise ConversionError(
        f"{source}: of two Dense layers one should read [context ; decoder output] (2H inputs) and the "
        f"other its H outputs; their inputs are {rows(a)} and {rows(b)}"
    )


# --------------------------------------------------------------------------- Keras model objects


def find_keras_layers(model: Any, layer_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The layers of a Keras seed model, ``{"encoder": LSTM, "decoder": LSTM, "dense": Dense}``
    (or two GRU layers: the model's recurrent layers must be both LSTMs or both GRUs), or of
    a Luong model (LSTMs), the same and ``"combine": Dense`` (and ``"attention"`` with
    ``use_scale=True``)."""
    keras = _import_keras()
    if layer_names is not None:
        if set(layer_names) not in (set(LAYERS), set(LUONG_LAYERS), {*LUONG_LAYERS, "attention"}):
            raise ConversionError(
                f"layer_names must map exactly {LAYERS} (or, for the luong model, {LUONG_LAYERS}) "
                f"to Keras layer names, got {dict(layer_names)}"
            )
        try:
            return {role: model.get_layer(name) for role, name in layer_names.items()}
        except ValueError as e:
            names = [layer.name for layer in model.layers]
            raise ConversionError(f"{e}; the model's layers are {names}") from None
    kinds = cells.keras_layers()  # the Keras classes of the registered cells: ("LSTM", "GRU")
    by_kind = {k: [layer for layer in model.layers if isinstance(layer, getattr(keras.layers, k))] for k in kinds}
    recurrent = [layers for layers in by_kind.values() if layers]
    recurrent = recurrent[0] if len(recurrent) == 1 else []  # both recurrent layers of one kind
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    attentions = [layer for layer in model.layers if isinstance(layer, keras.layers.Attention)]
    if len(recurrent) == 2 and len(denses) == 2 and len(attentions) == 1:
        _check_attention(attentions[0])
        split = _split_denses(denses, lambda d: d.kernel.shape[0], f"Keras model {model.name!r}")
        scale = {"attention": attentions[0]} if attentions[0].weights else {}  # use_scale=True
        return {"encoder": recurrent[0], "decoder": recurrent[1], **split, **scale}
    if len(recurrent) != 2 or len(denses) != 1 or attentions:
        found = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers]
        counts = [f"{len(by_kind[k])} {k}" for i, k in enumerate(kinds) if i == 0 or by_kind[k]]
        either = " (or ".join(f"2 {k}" for k in kinds) + ")" * (len(kinds) - 1)
        raise ConversionError(
            f"expected the seed's {either} layers and 1 Dense layer (or the luong model's 2 {kinds[0]}, "
            f"1 Attention and 2 Dense), found {', '.join(counts)} and {len(denses)} Dense among {found}; "
            "pass layer_names={'encoder': ..., 'decoder': ..., 'dense': ...}"
        )
    return {"encoder": recurrent[0], "decoder": recurrent[1], "dense": denses[0]}


def _check_attention(layer: Any) -> None:
    """minis2s computes Keras ``Attention`` with the dot score (``use_scale`` either way)."""
    cfg = layer.get_config()
    if cfg.get("score_mode", "dot") != "dot":
        raise ConversionError(
            f"Attention {layer.name!r} has score_mode={cfg.get('score_mode')!r}; the luong model computes "
            "score_mode='dot'"
        )


def _check_layer_config(layers: dict[str, Any]) -> None:
    """minis2s computes the recurrent layers as its cells do (each cell's ``keras_config``:
    tanh/sigmoid LSTMs, GRUs with ``reset_after=True``, with biases) and a softmax Dense;
    refuse others."""
    for role in RECURRENT_ROLES:
        cfg = layers[role].get_config()
        kind = type(layers[role]).__name__
        cell = cells.by_keras_layer(kind)
        if cell is None:
            raise ConversionError(
                f"{role} layer {layers[role].name!r} is a {kind}; minis2s converts "
                f"{', '.join(cells.keras_layers())} layers"
            )
        for k, v in cell.keras_config:
            if k in cfg and cfg[k] != v:
                raise ConversionError(f"{role} {kind} {layers[role].name!r} has {k}={cfg[k]!r}; minis2s needs {k}={v!r}")
    cfg = layers["dense"].get_config()
    if cfg.get("activation") != "softmax" or not cfg.get("use_bias", True):
        raise ConversionError(
            f"Dense {layers['dense'].name!r} has activation={cfg.get('activation')!r}, "
            f"use_bias={cfg.get('use_bias')}; minis2s needs a softmax Dense with a bias"
        )
    if "combine" in layers:
        cfg = layers["combine"].get_config()
        if cfg.get("activation") != "tanh" or not cfg.get("use_bias", True):
            raise ConversionError(
                f"Dense {layers['combine'].name!r} has activation={cfg.get('activation')!r}, "
                f"use_bias={cfg.get('use_bias')}; the luong model's combine layer is a tanh Dense with a bias"
            )


def from_keras_model(model: Any, layer_names: Mapping[str, str] | None = None) -> dict:
    """Parameters of a Keras seed or Luong model object (see the module docstring)."""
    layers = find_keras_layers(model, layer_names)
    _check_layer_config(layers)
    raw = {role: {_short(v.name): np.asarray(v.numpy()) for v in layer.weights} for role, layer in layers.items()}
    return _finish(raw, f"Keras model {model.name!r}")


def to_keras(params: Mapping, model: Any, layer_names: Mapping[str, str] | None = None) -> Any:
    """Copy minis2s ``params`` into a Keras seed (or Luong) model, variable by variable, by name.

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


def _keras_rnn(keras, cell: str):
    """The ``keras.layers`` class holding the weights of the cell named ``cell``."""
    layer = cells.get(cell).keras_layer if cell in cells.CELLS else None
    if layer is None:
        names = [c.name for c in map(cells.by_keras_layer, cells.keras_layers())]  # the cells Keras has
        raise ConversionError(f"a Keras model's cell must be one of {', '.join(names)}; got {cell!r}")
    return getattr(keras.layers, layer)


def keras_seed_model(
    num_encoder_tokens: int, num_decoder_tokens: int, latent_dim: int, compile: bool = True, cell: str = cells.DEFAULT
) -> Any:
    """The Keras example's training model, built with Keras (for exports and parity checks).

    ``Input -> LSTM(return_state)`` encoder, ``LSTM(return_sequences, return_state)``
    decoder started from the encoder state, ``Dense(softmax)``; compiled as the seed does
    (``rmsprop``, ``categorical_crossentropy``, ``accuracy``) unless ``compile=False``.
    ``cell="gru"`` puts ``keras.layers.GRU`` (``reset_after=True``) in place of both LSTMs
    (any cell's :attr:`~minis2s.cells.Cell.keras_layer`): the encoder hands the decoder its
    whole state (the GRU's one ``h``).
    """
    keras = _import_keras()
    rnn = _keras_rnn(keras, cell)
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    _, *state = rnn(latent_dim, return_state=True)(encoder_inputs)  # LSTM: h, c; GRU: h
    decoder_outputs, *_ = rnn(latent_dim, return_sequences=True, return_state=True)(decoder_inputs, initial_state=state)
    outputs = keras.layers.Dense(num_decoder_tokens, activation="softmax")(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], outputs)
    if compile:
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def keras_luong_model(
    num_encoder_tokens: int, num_decoder_tokens: int, latent_dim: int, compile: bool = True, use_scale: bool = False
) -> Any:
    """The Luong attention model (``minis2s train --model luong``), built with Keras: the
    test oracle of :mod:`minis2s.models.luong`.

    Three inputs: the one-hot English ``(B, Te, V_in)``, its mask ``(B, Te)`` bool (True on
    real characters, False on padding) and the one-hot decoder input ``(B, Td, V_out)``.
    ``use_scale`` is ``Attention``'s (``minis2s train --attention-scale``).
    The encoder LSTM reads the mask (its state holds still over the padding), the
    ``Attention`` layer masks the padding out of the softmax. Compiled as the seed is.
    """
    keras = _import_keras()
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens), name="encoder_inputs")
    encoder_mask = keras.Input(shape=(None,), dtype="bool", name="encoder_mask")
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens), name="decoder_inputs")
    encoder_outputs, state_h, state_c = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)(
        encoder_inputs, mask=encoder_mask
    )
    decoder_outputs = keras.layers.LSTM(latent_dim, return_sequences=True)(decoder_inputs, initial_state=[state_h, state_c])
    context = keras.layers.Attention(use_scale=use_scale)([decoder_outputs, encoder_outputs], mask=[None, encoder_mask])
    combined = keras.layers.Dense(latent_dim, activation="tanh")(keras.layers.Concatenate()([context, decoder_outputs]))
    outputs = keras.layers.Dense(num_decoder_tokens, activation="softmax")(combined)
    model = keras.Model([encoder_inputs, encoder_mask, decoder_inputs], outputs)
    if compile:
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


# --------------------------------------------------------------------------- files


def _assign_roles(lstms: list[tuple[str, dict]], denses: list[tuple[str, dict]], source: str,
                  scales: list[tuple[str, dict]] = ()) -> dict:
    if len(lstms) == 2 and len(denses) == 1 and not scales:
        return {"encoder": lstms[0][1], "decoder": lstms[1][1], "dense": denses[0][1]}
    if len(lstms) == 2 and len(denses) == 2 and len(scales) <= 1:
        split = _split_denses([d for _, d in denses], lambda d: d["kernel"].shape[0], source)
        scale = {"attention": scales[0][1]} if scales else {}
        return {"encoder": lstms[0][1], "decoder": lstms[1][1], **split, **scale}
    raise ConversionError(
        f"{source}: expected the seed's 2 LSTM (or GRU) layers and 1 Dense layer (or the luong model's 2 Dense), "
        f"found LSTM/GRU {[n for n, _ in lstms]} and Dense {[n for n, _ in denses]}; pass layer_names=..."
    )


def _read_keras3_weights(f, source: str, layer_names: Mapping[str, str] | None) -> dict:
    """Keras 3 ``.weights.h5``: ``layers/<name>/cell/vars/{0,1,2}``, ``layers/<name>/vars/{0,1}``."""
    if "layers" not in f:
        raise ConversionError(f"{source}: no 'layers' group; not a Keras 3 .weights.h5 file")
    group = f["layers"]
    lstms, denses, scales = [], [], []
    for name in sorted(group.keys(), key=_natural_key):
        layer = group[name]
        if "cell" in layer and "vars" in layer["cell"] and len(layer["cell"]["vars"]) == 3:
            v = layer["cell"]["vars"]
            lstms.append((name, {n: v[str(i)][()] for i, n in enumerate(LSTM_WEIGHTS)}))
        elif "vars" in layer and len(layer["vars"]) == 2 and layer["vars"]["0"].ndim == 2:
            v = layer["vars"]
            denses.append((name, {n: v[str(i)][()] for i, n in enumerate(DENSE_WEIGHTS)}))
        elif "vars" in layer and len(layer["vars"]) == 1 and layer["vars"]["0"].ndim == 0:
            scales.append((name, {"scale": layer["vars"]["0"][()]}))  # Attention(use_scale=True)
    if layer_names is not None:
        found = dict(lstms + denses + scales)
        missing = [n for n in layer_names.values() if n not in found]
        if missing:
            raise ConversionError(f"{source}: no layer(s) {missing}; layers with weights: {list(found)}")
        return {role: found[name] for role, name in layer_names.items()}
    return _assign_roles(lstms, denses, source, scales)


def _read_legacy_h5(f, source: str, layer_names: Mapping[str, str] | None) -> dict:
    """Keras 2 style ``.h5``: attribute ``layer_names`` in model order, ``weight_names`` per layer."""
    root = f["model_weights"] if "model_weights" in f else f
    lstms, denses, scales = [], [], []
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
        elif set(weights) == {"scale"} and np.ndim(weights["scale"]) == 0:
            scales.append((name, weights))
    if layer_names is not None:
        missing = [n for n in layer_names.values() if n not in found]
        if missing:
            raise ConversionError(f"{source}: no layer(s) {missing}; layers: {list(found)}")
        return {role: found[name] for role, name in layer_names.items()}
    return _assign_roles(lstms, denses, source, scales)


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
    """minis2s parameters from a Keras seed or Luong model, or a ``.keras`` / ``.weights.h5`` / ``.h5`` file.

    Args:
        source: a Keras model object, or the path of a saved model or weights file.
        layer_names: optional ``{"encoder": name, "decoder": name, "dense": name}`` (and
            ``"combine": name`` for the Luong model).
    Returns:
        ``{"encoder": {...}, "decoder": {...}, "dense": {...}}`` of float32 arrays, ready
        for :func:`minis2s.model.apply` (a GRU model's for
        ``models.build(ModelConfig(..., cell=cell_of(params)))``; with ``"combine"`` for the
        Luong model: ``models.build(ModelConfig(..., model="luong"))``).
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


# The transformer's Keras model and weights, in their own module (names copied by path).
from .convert_transformer import from_keras_transformer, keras_transformer_model, to_keras_transformer  # noqa: E402
