"""Keras as the test oracle: load minis2s parameters into a Keras model and ask it for its
loss and gradients. Shared by the seed, GRU and Luong parity tests; imported only after the
test module has imported Keras with the JAX backend."""

from __future__ import annotations

import jax
import keras
import numpy as np

from minis2s.convert import find_keras_layers, to_keras


def load_into_keras(m, params) -> None:
    """Set the Keras weights to ``params`` and start RMSprop afresh (zero velocities)."""
    to_keras(params, m)
    for v in m.optimizer.variables:
        if v.path.endswith("_velocity") or v.path.endswith("/iteration"):
            v.assign(np.zeros(v.shape, v.dtype))


def keras_gradients(m, x, y) -> tuple[float, dict]:
    """Keras' loss and ``d loss / d weight`` for every trainable variable, keyed like our params."""
    layers = find_keras_layers(m)
    key_of = {id(v): (role, v.name) for role, layer in layers.items() for v in layer.trainable_weights}
    trainable = [v.value for v in m.trainable_variables]
    non_trainable = [v.value for v in m.non_trainable_variables]

    def loss(values):
        y_pred, _ = m.stateless_call(values, non_trainable, x, training=True)
        return keras.ops.mean(keras.losses.categorical_crossentropy(y, y_pred))

    value, grads = jax.jit(jax.value_and_grad(loss))(trainable)
    out: dict = {}
    for v, g in zip(m.trainable_variables, grads):
        role, name = key_of[id(v)]
        out.setdefault(role, {})[name] = np.asarray(g)
    return float(value), out
