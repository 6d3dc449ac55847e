"""Data parallelism with JAX's own SPMD runtime: one mesh axis ``data``, many devices.

The training step is the same jitted function on one device or on many. What changes is
where its inputs live:

- the mesh is a 1-D :class:`jax.sharding.Mesh` with axis ``"data"`` over ``D`` devices;
- each batch ``(B, ...)`` is split along its batch dimension, ``B / D`` rows per device
  (``NamedSharding(mesh, P("data"))``);
- parameters and optimizer state are replicated on every device (``P()``).

``jit`` sees the shardings of its arguments and partitions the step: every device runs the
forward and backward pass on its rows, and the batch sums in the loss (``sum_b w_b l_b``)
become an all-reduce over ``data``. The update is then computed on identical, replicated
gradients, so every device holds the same new parameters. Mathematically

    g = (1 / sum_b w_b) * sum_{d} sum_{b in shard d} w_b * grad l_b

which is the one-device gradient up to the order of the float additions.

The global batch stays the user's ``--batch-size``. When it is not a multiple of ``D``,
each batch is filled up with rows of weight 0 (as the last, smaller batch of an epoch
already is), so the gradient, the update and the metrics stay exactly those of
``--batch-size``; only ``padded_batch_size - batch_size`` rows of work are wasted.

Several hosts (processes)
-------------------------
Start one process per host with ``--distributed``; it calls
:func:`jax.distributed.initialize`, which finds the coordinator by itself on Cloud TPU,
SLURM and Open MPI, or from ``--coordinator HOST:PORT --num-processes N --process-id I``
(``JAX_COORDINATOR_ADDRESS`` is read too). Every process then reads the same data, draws
the same shuffle from the same seed and so builds the same global batch; it hands to JAX
only the rows that belong to its own devices (:func:`jax.make_array_from_callback`). The
same code runs on one host, where every device is local, so there is no separate
single-host path. ``--devices N`` counts devices *per process*; the mesh holds the first
``N`` local devices of every process.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


# --------------------------------------------------------------------------- setup


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run with :func:`jax.distributed.initialize`.

    Must run before anything else touches JAX devices. Arguments left ``None`` are
    detected from the cluster environment (Cloud TPU, SLURM, Open MPI) where JAX can.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh ``("data",)`` over the first ``devices`` local devices of every process.

    ``devices=None`` takes all local devices. Raises ``ValueError`` naming the number of
    devices available when more are asked for.
    """
    local = jax.local_devices()
    if devices is None:
        devices = len(local)
    if devices <= 0:
        raise ValueError(f"--devices must be positive, got {devices}")
    if devices > len(local):
        raise ValueError(
            f"--devices {devices} asks for more devices than this process has: {len(local)} "
            f"({local[0].platform}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "makes N host devices"
        )
    chosen = [d for p in range(jax.process_count()) for d in jax.local_devices(process_index=p)[:devices]]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) dimension over ``data``; other dimensions whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``batch_size`` rounded up to a multiple of the number of devices on ``data``.

    The extra rows carry weight 0 (see the module docstring).
    """
    d = mesh.shape[DATA_AXIS]
    return -(-batch_size // d) * d


# --------------------------------------------------------------------------- placement


def _global_array(value: Any, sharding: NamedSharding) -> jax.Array:
    """The same host value on every process -> one global array laid out by ``sharding``.

    Each process materialises only the slices its own devices hold, so this works the
    same on one host and on many.
    """
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf of ``tree`` (parameters, optimizer state) whole on every device."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Split every array of a global batch along its first dimension over ``data``."""
    d = mesh.shape[DATA_AXIS]
    for k, v in batch.items():
        if np.shape(v)[0] % d:
            raise ValueError(
                f"batch array {k!r} has {np.shape(v)[0]} rows, not a multiple of {d} devices; "
                "fill it up to parallel.padded_batch_size rows with weight-0 rows"
            )
    sharding = data_sharding(mesh)
    return {k: _global_array(v, sharding) for k, v in batch.items()}


def to_host(tree: Any) -> Any:
    """Replicated global arrays -> numpy (each process reads its own copy)."""
    return jax.tree.map(lambda x: np.asarray(x), tree)


def is_main_process() -> bool:
    """True in process 0, the one that writes checkpoints in a multi-host run."""
    return jax.process_index() == 0


def describe(mesh: Mesh, batch_size: int) -> str:
    """One line for the training log: devices, and the rows each one gets."""
    d = mesh.shape[DATA_AXIS]
    padded = padded_batch_size(batch_size, mesh)
    platform = mesh.devices.flat[0].platform
    line = f"Devices: {d} {platform} ({jax.process_count()} process(es)), {padded // d} rows per device"
    if padded != batch_size:
        line += f" (batch {batch_size} filled up to {padded} with weight-0 rows)"
    return line


__all__ = [
    "DATA_AXIS", "data_sharding", "describe", "initialize_distributed", "is_main_process", "make_mesh",
    "padded_batch_size", "replicate", "replicated_sharding", "shard_batch", "to_host",
]
