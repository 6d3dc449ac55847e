"""How much gradient reaches each encoder and decoder step, with forget bias 1 versus 0
(docs/math.md section 10, figure ``docs/img/gradient-norms.png``).

Two models are built from the same key, the seed's initialisation except for the
forget-gate bias (1, Keras' ``unit_forget_bias``, or 0), and trained with the same batches on
the offline demo corpus with the settings the demo used when docs/math.md quoted these numbers
(latent 64, batch 8, RMSprop lr 5e-3: :data:`SETTINGS`, pinned here; ``minis2s train --data demo``
has since moved to lr 2e-3) for ``--epochs`` epochs (default 60). Before and after
training the script measures, on the demo's validation split (53 pairs, one batch), the
gradient of the loss with respect to each step's hidden state ``h_t`` and cell ``c_t``: a
zero is added to the state after every step and ``jax.grad`` differentiates with respect to
those zeros, so ``dL/dh_t`` and ``dL/dc_t`` are what flows back into step ``t`` from
everything after it (and, for the decoder's ``h_t``, from its own output). It prints the
per-sample norms (mean over the batch) and the largest global gradient norm seen in training.

Run: ``python scripts/lessons/gradient_norms.py [--epochs 60] [--out docs/img]`` (about a minute on
2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from minis2s import data, losses, lstm, model, train

# The demo's settings when docs/math.md section 10 was measured (pinned: its numbers come from them).
SETTINGS = {"num_samples": None, "latent_dim": 64, "batch_size": 8, "learning_rate": 5e-3}


def set_forget_bias(params: model.Params, value: float) -> model.Params:
    """The same parameters with the forget-gate slice ``[H:2H]`` of both LSTM biases set."""
    out = {k: dict(v) for k, v in params.items()}
    for side in ("encoder", "decoder"):
        H = out[side]["recurrent_kernel"].shape[0]
        out[side]["bias"] = out[side]["bias"].at[H:2 * H].set(value)
    return out


def _probed_layer(p, tokens, state, probe_h, probe_c):
    """``minis2s.lstm.cell`` over time, adding ``probe_h[t]``, ``probe_c[t]`` to the state after
    step ``t`` (zeros: the values are unchanged; their gradients are dL/dh_t, dL/dc_t)."""
    zx = lstm.input_projection(p, tokens)  # (T, B, 4H)

    def step(carry, xs):
        zx_t, ph, pc = xs
        h, c = lstm.cell(p, zx_t, carry)
        h, c = h + ph, c + pc
        return (h, c), h

    state, hs = jax.lax.scan(step, state, (zx, probe_h, probe_c))
    return jnp.swapaxes(hs, 0, 1), state


def state_gradients(params: model.Params, batch: dict) -> dict[str, np.ndarray]:
    """``{"encoder_dh", "encoder_dc", "decoder_dh", "decoder_dc"}``: each ``(T, B, H)``."""
    enc, dec, tgt = batch["encoder_tokens"], batch["decoder_tokens"], batch["target_tokens"]
    B, H = enc.shape[0], params["encoder"]["recurrent_kernel"].shape[0]
    zeros = lambda T: jnp.zeros((T, B, H))  # noqa: E731

    def loss(probes):
        start = (jnp.zeros((B, H)), jnp.zeros((B, H)))
        _, state = _probed_layer(params["encoder"], enc, start, probes["encoder_dh"], probes["encoder_dc"])
        hs, _ = _probed_layer(params["decoder"], dec, state, probes["decoder_dh"], probes["decoder_dc"])
        return losses.categorical_crossentropy(model.dense_softmax(params["dense"], hs), tgt)

    probes = {"encoder_dh": zeros(enc.shape[1]), "encoder_dc": zeros(enc.shape[1]),
              "decoder_dh": zeros(dec.shape[1]), "decoder_dc": zeros(dec.shape[1])}
    return {k: np.asarray(v) for k, v in jax.grad(loss)(probes).items()}


def step_norms(grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per step: the mean over the batch of each sample's L2 norm, ``(T,)``."""
    return {k: np.linalg.norm(v, axis=-1).mean(axis=-1) for k, v in grads.items()}


def train_model(params, ds, split_at: int, epochs: int, batch_size: int, lr: float, seed: int = 0):
    """The plain loop of scripts/lessons/tutorial.py; returns params and the largest global grad norm."""
    optimizer = optax.rmsprop(lr, decay=0.9, eps=1e-7)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        grads, _ = jax.grad(train.loss_fn, has_aux=True)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, optax.global_norm(grads)

    rng = np.random.default_rng(seed)
    largest = 0.0
    for _ in range(epochs):
        norms = []
        for batch in train.batches(ds, rng.permutation(split_at), batch_size):
            params, opt_state, norm = step(params, opt_state, batch)
            norms.append(norm)
        largest = max(largest, float(jnp.max(jnp.stack(norms))))
    return params, largest


def measure(epochs: int = 60) -> dict:
    d = SETTINGS
    ds = data.load_dataset(data.resolve_data("demo"), d["num_samples"])
    split_at = train.split_train_val(len(ds), 0.2)
    val = {k: jnp.asarray(getattr(ds, k)[split_at:]) for k in ("encoder_tokens", "decoder_tokens", "target_tokens")}
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), d["latent_dim"])
    base = model.init_params(jax.random.PRNGKey(0), config)
    result = {"epochs": epochs, "T_enc": ds.max_encoder_seq_length, "T_dec": ds.max_decoder_seq_length,
              "val_pairs": len(ds) - split_at}
    for bias in (1.0, 0.0):
        params = set_forget_bias(base, bias)
        start = time.perf_counter()
        result[bias, "init"] = step_norms(state_gradients(params, val))
        trained, largest = train_model(params, ds, split_at, epochs, d["batch_size"], d["learning_rate"])
        result[bias, "trained"] = step_norms(state_gradients(trained, val))
        probs = model.apply(trained, val["encoder_tokens"], val["decoder_tokens"])
        result[bias, "val_loss"] = float(losses.categorical_crossentropy(probs, val["target_tokens"]))
        result[bias, "val_accuracy"] = float(losses.categorical_accuracy(probs, val["target_tokens"]))
        result[bias, "largest_grad_norm"] = largest
        result[bias, "seconds"] = time.perf_counter() - start
    return result


def draw(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T_e = result["T_enc"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for bias, color in ((1.0, "C0"), (0.0, "C3")):
            n = result[bias, when]
            steps_e = np.arange(1, T_e + 1)
            steps_d = T_e + np.arange(1, len(n["decoder_dc"]) + 1)
            label = f"forget bias {bias:g}"
            ax.semilogy(steps_e, n["encoder_dc"], color=color, label=f"{label}: ‖dL/dc_t‖")
            ax.semilogy(steps_d[:-1], n["decoder_dc"][:-1], color=color)  # the last is 0: no step after it
            ax.semilogy(steps_e, n["encoder_dh"], color=color, ls=":", label=f"{label}: ‖dL/dh_t‖")
            ax.semilogy(steps_d, n["decoder_dh"], color=color, ls=":")
        ax.axvline(T_e + 0.5, color="gray", lw=0.8)
        ax.text(T_e / 2, 0.97, "encoder", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=9)
        ax.text(T_e + 0.5 + len(result[1.0, when]["decoder_dc"]) / 2, 0.97, "decoder",
                transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=9)
        title = "at initialisation" if when == "init" else f"after {result['epochs']} epochs on the demo corpus"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step (encoder 1..T_e, then decoder)")
    # a decade of headroom above the highest curve, so the encoder/decoder labels sit on no line
    top = max(float(np.max(result[bias, when][key])) for bias in (1.0, 0.0) for when in ("init", "trained")
              for key in ("encoder_dc", "encoder_dh", "decoder_dc", "decoder_dh"))
    axes[0].set_ylim(top=10 * top)
    axes[0].set_ylabel("gradient reaching the step\n(mean per-sample norm)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Gradient reaching each step, latent 64, demo validation split", fontsize=11)
    fig.tight_layout()
    path = out / "gradient-norms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary(result: dict) -> str:
    lines = [f"demo corpus, latent 64, T_enc {result['T_enc']}, T_dec {result['T_dec']}, "
             f"{result['val_pairs']} validation pairs; trained {result['epochs']} epochs"]
    for when in ("init", "trained"):
        for bias in (1.0, 0.0):
            n = result[bias, when]
            lines.append(f"{when:7s} forget bias {bias:g}: ||dL/dc|| at encoder step 1 {n['encoder_dc'][0]:.2e}, "
                         f"at the last encoder step {n['encoder_dc'][-1]:.2e} (ratio {n['encoder_dc'][0] / n['encoder_dc'][-1]:.2e}); "
                         f"||dL/dh|| at decoder step 1 {n['decoder_dh'][0]:.2e}")
    for bias in (1.0, 0.0):
        lines.append(f"forget bias {bias:g}: val_loss {result[bias, 'val_loss']:.4f}, val_accuracy "
                     f"{result[bias, 'val_accuracy']:.4f}, largest global gradient norm in training "
                     f"{result[bias, 'largest_grad_norm']:.2f} ({result[bias, 'seconds']:.0f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "docs" / "img"))
    args = parser.parse_args()
    res = measure(args.epochs)
    print(summary(res))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("wrote", draw(res, out))
