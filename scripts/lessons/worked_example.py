"""A worked example: the seed model with H = 2 on one pair, every number of one forward and
one backward pass printed (docs/math.md section 11).

The pair is ``Go.`` -> ``Va !``: a 3-character input, decoder input ``\\tVa !``, target
``Va !\\n``. The parameters are the library's own initialisation (``minis2s.model.init_params``,
key 0) in float64, so the printed numbers do not depend on float32 rounding. The forward
pass is the equations of math.md section 3, step by step; the backward pass is the
recurrence of section 6, step by step, written out here. At the end both are checked
against the library: the probabilities against ``minis2s.model.apply`` and the gradients
against ``jax.grad`` of ``minis2s.losses.categorical_crossentropy`` (through
``minis2s.bptt._lstm_bwd``).

Run: ``python scripts/lessons/worked_example.py`` (``--json PATH`` also writes every array).
"""

from __future__ import annotations

import argparse
import json

import jax

jax.config.update("jax_enable_x64", True)  # float64: the printed digits are exact to the last place shown

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minis2s import data, losses, model  # noqa: E402

ENGLISH, FRENCH, HIDDEN, KEY = "Go.", "Va !", 2, 0


def sigmoid(a):
    return 1.0 / (1.0 + jnp.exp(-a))


def lstm_forward(p, tokens, h, c):
    """Section 3, one step at a time. Returns the saved values of every step."""
    H = h.shape[-1]
    steps = []
    for k in tokens:
        z = p["kernel"][k] + h @ p["recurrent_kernel"] + p["bias"]  # x_t W (a row) + h_{t-1} U + b
        i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), jnp.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        steps.append(dict(token=int(k), z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, h=h))
    return steps


def lstm_backward(p, steps, dh_out, dh_next, dc_next):
    """Section 6.3, from the last step to the first; section 6.4 for the weights."""
    U = p["recurrent_kernel"]
    grads = {name: jnp.zeros_like(a) for name, a in p.items()}
    back = [None] * len(steps)
    for t in reversed(range(len(steps))):
        s = steps[t]
        dh = dh_out[t] + dh_next
        tanh_c = jnp.tanh(s["c"])
        do = dh * tanh_c
        dc = dc_next + dh * s["o"] * (1 - tanh_c ** 2)
        di, dg, df = dc * s["g"], dc * s["i"], dc * s["c_prev"]
        dz = jnp.concatenate([di * s["i"] * (1 - s["i"]), df * s["f"] * (1 - s["f"]),
                              dg * (1 - s["g"] ** 2), do * s["o"] * (1 - s["o"])])
        grads["kernel"] = grads["kernel"].at[s["token"]].add(dz)  # X^T dZ: a scatter-add of rows
        grads["recurrent_kernel"] = grads["recurrent_kernel"] + jnp.outer(s["h_prev"], dz)
        grads["bias"] = grads["bias"] + dz
        back[t] = dict(dh=dh, dc=dc, dz=dz)
        dh_next, dc_next = dz @ U.T, dc * s["f"]
    return back, grads, dh_next, dc_next


def compute(english: str = ENGLISH, french: str = FRENCH, hidden: int = HIDDEN, key: int = KEY) -> dict:
    """Every number of the example, as NumPy float64 arrays and plain values."""
    ds = data.build_dataset([english], ["\t" + french + "\n"])
    enc, dec, tgt = ds.encoder_tokens[0], ds.decoder_tokens[0], ds.target_tokens[0]
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), hidden)
    params = model.init_params(jax.random.PRNGKey(key), config, dtype=jnp.float64)
    T_d, V = len(dec), len(ds.target_vocab)

    # forward: encoder from zeros, decoder from the encoder's final state, softmax head
    zeros = jnp.zeros(hidden)
    enc_steps = lstm_forward(params["encoder"], enc, zeros, zeros)
    dec_steps = lstm_forward(params["decoder"], dec, enc_steps[-1]["h"], enc_steps[-1]["c"])
    hs = jnp.stack([s["h"] for s in dec_steps])  # (T_d, H)
    logits = hs @ params["dense"]["kernel"] + params["dense"]["bias"]
    probs = jnp.exp(logits) / jnp.exp(logits).sum(-1, keepdims=True)
    p_target = probs[jnp.arange(T_d), tgt]
    assert bool(jnp.all((p_target > 1e-7) & (p_target < 1 - 1e-7))), "a clipped position: clip' = 0 there"
    position_losses = -jnp.log(p_target)
    loss = position_losses.mean()

    # backward: softmax + cross-entropy (6.1), dense head (6.2), decoder, bridge (6.5), encoder
    da = (probs - jax.nn.one_hot(tgt, V)) / T_d
    dense_grads = {"kernel": hs.T @ da, "bias": da.sum(0)}
    dh_out = da @ params["dense"]["kernel"].T
    dec_back, dec_grads, dh0, dc0 = lstm_backward(params["decoder"], dec_steps, dh_out, zeros, zeros)
    enc_back, enc_grads, _, _ = lstm_backward(params["encoder"], enc_steps, jnp.zeros((len(enc), hidden)), dh0, dc0)
    grads = {"encoder": enc_grads, "decoder": dec_grads, "dense": dense_grads}

    # the same numbers from the library: forward (model.apply) and jax.grad through bptt._lstm_bwd
    def library_loss(p):
        return losses.categorical_crossentropy(model.apply(p, enc[None], dec[None]), tgt[None])

    lib_loss, lib_grads = jax.value_and_grad(library_loss)(params)
    lib_probs = model.apply(params, enc[None], dec[None])[0]
    grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(lib_grads)))

    as_np = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float64), tree)  # noqa: E731
    stack = lambda steps, name: np.stack([np.asarray(s[name]) for s in steps])  # noqa: E731
    return {
        "english": english, "french": french, "hidden": hidden,
        "input_vocab": list(ds.input_vocab.chars), "target_vocab": list(ds.target_vocab.chars),
        "encoder_tokens": enc.tolist(), "decoder_tokens": dec.tolist(), "target_tokens": tgt.tolist(),
        "params": as_np(params),
        "forward": {side: {name: stack(steps, name) for name in ("z", "i", "f", "g", "o", "c", "h")}
                    for side, steps in (("encoder", enc_steps), ("decoder", dec_steps))},
        "logits": np.asarray(logits), "probs": np.asarray(probs),
        "position_losses": np.asarray(position_losses), "loss": float(loss),
        "backward": {side: {name: stack(steps, name) for name in ("dh", "dc", "dz")}
                     for side, steps in (("encoder", enc_back), ("decoder", dec_back))},
        "da": np.asarray(da), "dh_bridge": np.asarray(dh0), "dc_bridge": np.asarray(dc0),
        "grads": as_np(grads),
        "check": {"loss_diff": abs(float(lib_loss) - float(loss)),
                  "probs_diff": float(jnp.max(jnp.abs(lib_probs - probs))), "grad_diff": grad_diff},
    }


# --------------------------------------------------------------------------- printing


def _v(a) -> str:
    return "[" + " ".join(f"{x:+.4f}" for x in np.ravel(a)) + "]"


def _ch(c: str) -> str:
    return {"\t": "\\t", "\n": "\\n", " ": "' '"}.get(c, c)


def report(r: dict) -> str:
    lines = []
    out = lines.append
    H = r["hidden"]
    out(f"pair {r['english']!r} -> {r['french']!r}, H = {H}, parameters from model.init_params(PRNGKey(0)), float64")
    out("input vocabulary  " + " ".join(f"{k}:{_ch(c)}" for k, c in enumerate(r["input_vocab"])))
    out("target vocabulary " + " ".join(f"{k}:{_ch(c)}" for k, c in enumerate(r["target_vocab"])))
    for side in ("encoder", "decoder"):
        p = r["params"][side]
        out(f"{side}: W (kernel, {p['kernel'].shape[0]}x{4 * H}, one row per character; columns i i f f c c o o)")
        for k, row in enumerate(p["kernel"]):
            out(f"  {_ch((r['input_vocab'] if side == 'encoder' else r['target_vocab'])[k]):4s} {_v(row)}")
        out(f"  U {_v(p['recurrent_kernel'][0])}")
        out(f"    {_v(p['recurrent_kernel'][1])}")
        out(f"  b {_v(p['bias'])}")
    out(f"dense: W_d {_v(r['params']['dense']['kernel'][0])}")
    out(f"           {_v(r['params']['dense']['kernel'][1])}   b_d = 0")
    out("")
    out("FORWARD (section 3)")
    for side, tokens, vocab in (("encoder", r["encoder_tokens"], r["input_vocab"]),
                                ("decoder", r["decoder_tokens"], r["target_vocab"])):
        f = r["forward"][side]
        start = "h_0 = c_0 = 0" if side == "encoder" else "h_0, c_0 = the encoder's final state"
        out(f"{side} ({start})")
        for t, k in enumerate(tokens):
            out(f" t={t + 1} x={_ch(vocab[k]):4s} z={_v(f['z'][t])}")
            out(f"     i={_v(f['i'][t])} f={_v(f['f'][t])} g={_v(f['g'][t])} o={_v(f['o'][t])}")
            out(f"     c={_v(f['c'][t])} h={_v(f['h'][t])}")
    out("softmax head: p_t over " + " ".join(_ch(c) for c in r["target_vocab"]))
    for t, y in enumerate(r["target_tokens"]):
        out(f" t={t + 1} p={_v(r['probs'][t])} target {_ch(r['target_vocab'][y]):4s}"
            f" p_y={r['probs'][t][y]:.4f} loss -log p_y={r['position_losses'][t]:.4f}")
    out(f"L = mean of the {len(r['target_tokens'])} losses = {r['loss']:.6f}")
    out("")
    out("BACKWARD (section 6)")
    out("6.1 da_t = (p_t - e_y) / T_d")
    for t in range(len(r["target_tokens"])):
        out(f" t={t + 1} da={_v(r['da'][t])}")
    for side in ("decoder", "encoder"):
        b = r["backward"][side]
        start = ("dh_next = dc_next = 0 after the last step; dh_out_t = da_t W_d^T" if side == "decoder" else
                 "dh_next, dc_next start as the decoder's (dh_0, dc_0); dh_out_t = 0")
        out(f"{side} ({start})")
        for t in reversed(range(len(b["dh"]))):
            out(f" t={t + 1} dh={_v(b['dh'][t])} dc={_v(b['dc'][t])} dz={_v(b['dz'][t])}")
        if side == "decoder":
            out(f" bridge: dh_0={_v(r['dh_bridge'])} dc_0={_v(r['dc_bridge'])}")
    out("weight gradients (section 6.4: dW = X^T dZ, dU = H_prev^T dZ, db = sum dZ)")
    for side in ("encoder", "decoder"):
        g = r["grads"][side]
        vocab = r["input_vocab"] if side == "encoder" else r["target_vocab"]
        for k, row in enumerate(g["kernel"]):
            out(f" {side} dW {_ch(vocab[k]):4s} {_v(row)}" + ("   (character not in the pair: 0)" if not row.any() else ""))
        out(f" {side} dU      {_v(g['recurrent_kernel'][0])}")
        out(f"                 {_v(g['recurrent_kernel'][1])}")
        out(f" {side} db      {_v(g['bias'])}")
    out(f" dense dW_d {_v(r['grads']['dense']['kernel'][0])}")
    out(f"            {_v(r['grads']['dense']['kernel'][1])}")
    out(f" dense db_d {_v(r['grads']['dense']['bias'])}")
    c = r["check"]
    ok = max(c.values()) < 1e-12
    out("library check: model.apply and jax.grad (through bptt._lstm_bwd) "
        + ("agree with every number above to 1e-12" if ok else f"DISAGREE by {max(c.values()):.1e}"))
    return "\n".join(lines)


def to_json(r: dict) -> dict:
    return jax.tree.map(lambda a: np.asarray(a).tolist() if isinstance(a, np.ndarray) else a, r)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write every array to this JSON file")
    args = parser.parse_args()
    result = compute()
    print(report(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(to_json(result), fh)
    if max(result["check"].values()) >= 1e-12:
        raise SystemExit("the hand-written passes disagree with the library")
