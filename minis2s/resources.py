"""Will it fit? A rough memory figure for training, checked before the parameters exist.

A model far too large for the machine should be refused with a number, not fail deep inside
XLA's allocator (or be killed by the operating system) after the data were read and the
step compiled. The estimate counts float32 values:

- parameters ``P``, counted from the shapes the model's ``init`` would make
  (:func:`minis2s.models.param_shapes`, traced, nothing allocated); for the seed,
  ``P = 4H (V_in + H + 1) + 4H (V_out + H + 1) + V_out (H + 1)``;
- RMSprop's running mean of squared gradients, one value per parameter: ``P``;
- the gradient and the update of one step: ``2P``;
- activations kept for the backward pass, per row and time step: the four gates, ``c`` and
  ``h`` (``6H``) for ``T_enc + T_dec`` steps, and the output probabilities and their
  gradient (``2 V_out``) for ``T_dec`` steps, times the batch size; a model with its own
  figure gives it (the transformer: :func:`minis2s.models.transformer.activation_values`,
  whose attention weights grow with ``T^2``).

It is a lower bound on what XLA really allocates (temporaries, the compiled program), so
only a model that cannot fit is refused; :func:`is_out_of_memory` recognises the allocator's
own error for the cases in between.
"""

from __future__ import annotations

import os

FLOAT32 = 4


class ModelTooLarge(ValueError):
    """Training these settings cannot fit in the device's memory; the message has the figure."""


def training_bytes(n_params: int, v_out: int, latent: int, batch: int, t_enc: int, t_dec: int,
                   per_row: int | None = None) -> dict[str, int]:
    """Rough bytes of training a model of ``n_params`` parameters, by part (see the module
    docstring); ``per_row`` replaces the recurrent models' activations per batch row (a
    model's own :attr:`minis2s.models.Model.activations`)."""
    h = latent
    params = FLOAT32 * n_params
    if per_row is None:
        per_row = (t_enc + t_dec) * 6 * h + t_dec * 2 * v_out
    activations = FLOAT32 * batch * per_row
    return {
        "parameters": params,
        "RMSprop state": params,
        "gradients and updates": 2 * params,
        "activations": activations,
    }


def available_bytes() -> tuple[int | None, str]:
    """``(bytes, what)``: the memory of the default device, or ``(None, ...)`` when unknown.

    On CPU, the machine's physical memory (``os.sysconf``); on an accelerator, the
    allocator's limit as JAX reports it.
    """
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return (int(limit), f"the {device.device_kind} has") if limit else (None, "")
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine has"
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None, ""


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def count_params(model_config) -> int:
    """Parameters of a :class:`minis2s.models.ModelConfig`, from its shapes (nothing allocated)."""
    import math

    from .models import param_shapes

    return sum(math.prod(shape) for shape in param_shapes(model_config).values())


def check_fits(model_config, batch: int, t_enc: int, t_dec: int) -> None:
    """Raise :class:`ModelTooLarge` with the figure when training cannot fit in memory."""
    from .models import build

    model = build(model_config)
    latent = model_config.latent_dim
    per_row = model.activations(t_enc, t_dec) if model.activations is not None else None
    parts = training_bytes(count_params(model_config), model_config.num_decoder_tokens, latent, batch, t_enc, t_dec,
                           per_row)
    need = sum(parts.values())
    have, where = available_bytes()
    if have is None or need <= have:
        return
    detail = ", ".join(f"{k} {_gb(v)}" for k, v in parts.items())
    what = f"--latent-dim {latent}" if model.activations is None else f"{model_config.model} ({model.describe()})"
    raise ModelTooLarge(
        f"{what} with --batch-size {batch} needs at least {_gb(need)} ({detail}) but "
        f"{where} {_gb(have)}; lower {model.size_flags} (or --batch-size)"
    )


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocator's out-of-memory error (XLA's ``RESOURCE_EXHAUSTED`` or Python's)."""
    if isinstance(e, MemoryError):
        return True
    return type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(e)


__all__ = ["ModelTooLarge", "available_bytes", "check_fits", "count_params", "is_out_of_memory", "training_bytes"]
