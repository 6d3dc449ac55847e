"""Gradient checking: analytic gradients against central finite differences, in float64.

For a scalar function ``f`` of a parameter pytree ``p`` (for example the model loss on a
fixed batch), :func:`check_grads` compares ``jax.grad(f)(p)`` with finite differences

.. math::

    \\text{entry } j:\\quad
        \\frac{\\partial f}{\\partial p_j} \\approx
        \\frac{-f(p + 2h e_j) + 8 f(p + h e_j) - 8 f(p - h e_j) + f(p - 2h e_j)}{12 h}

    \\text{direction } d:\\quad
        \\nabla f \\cdot d \\approx \\text{the same stencil along } d, \\; \\|d\\| = 1

(the fourth-order central difference; ``order=2`` gives the classic
``(f(p + h e_j) - f(p - h e_j)) / 2h``). Its truncation error is ``O(h^4)``, so with
``h = 1e-3`` in float64 both truncation and rounding error (``|f| eps_mach / h``) sit
near ``1e-12`` for an ``O(1)`` loss, far below any real bug. That is also why gradients
smaller than ``atol / rtol`` are judged by absolute error: their relative error is noise.

Each check is made leaf by leaf: element-wise on all, a chosen, or a random subset of the
leaf's entries, and along random unit directions inside the leaf (one directional check
covers every entry at once). The result is a :class:`GradcheckReport` with one
:class:`LeafCheck` per leaf, named by its path (``decoder/recurrent_kernel``).

Errors, for an analytic value ``a`` and a numeric value ``n``::

    abs_err = |a - n|
    rel_err = |a - n| / max(|a|, |n|, atol / rtol)

A check passes when ``rel_err <= rtol``, i.e. ``|a - n| <= max(atol, rtol * max(|a|, |n|))``:
gradients far from zero are judged relatively, those below ``atol / rtol`` absolutely
(a relative error of an exactly-zero gradient means nothing).

Float64: the check switches on ``jax_enable_x64`` only inside its own ``with`` block and
casts the floating leaves of ``p`` to float64 there, so the caller's float32 world is
untouched afterwards. Arrays ``f`` closes over (a batch) are promoted by JAX's usual
rules. If ``f`` still returns float32 (it casts internally), the check refuses to run,
since float32 differences cannot resolve errors of ``1e-6``.

``f`` must be a JAX-traceable function of the pytree: it is differentiated with
``jax.grad`` and evaluated for many perturbations at once with ``jax.vmap``.

Use it in a pytest::

    from minis2s.gradcheck import assert_grads

    def test_my_loss_gradient():
        params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
        x = jnp.arange(6.0).reshape(2, 3)
        assert_grads(lambda p: jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2), params)
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import path_name

__all__ = ["GradcheckError", "GradcheckReport", "LeafCheck", "assert_grads", "check_grads", "leaf_paths", "model_loss_problem"]

# Stencils ``sum_k w_k f(p + s_k h d) / h``: (offsets s_k, weights w_k).
_STENCILS = {
    2: ((-1.0, 1.0), (-0.5, 0.5)),
    4: ((-2.0, -1.0, 1.0, 2.0), (1.0 / 12, -8.0 / 12, 8.0 / 12, -1.0 / 12)),
}
# Largest number of leaf-sized copies evaluated in one vmapped call.
_MAX_CHUNK_ELEMENTS = 1 << 22


class GradcheckError(AssertionError):
    """Raised by :func:`assert_grads` (an ``AssertionError``, so pytest shows it as a
    failure) and by :func:`check_grads` when the check cannot be made; the message names
    the leaves and, for failures, carries the full report table (and the report itself
    as ``.report``)."""

    def __init__(self, message: str, report: "GradcheckReport | None" = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class LeafCheck:
    """The result for one leaf of the parameter pytree.

    Attributes:
        path: ``"decoder/recurrent_kernel"``-style name of the leaf.
        shape: the leaf's shape.
        entries: entries compared element-wise.
        directions: random unit directions compared.
        max_abs_err: largest ``|a - n|`` over those entries and directions.
        max_rel_err: largest ``|a - n| / max(|a|, |n|, atol / rtol)``.
        worst: where ``max_rel_err`` occurred: ``"entry (2, 5)"`` or ``"direction 1"``.
        analytic, numeric: the two values at ``worst``.
        passed: ``max_rel_err <= rtol``.
    """

    path: str
    shape: tuple[int, ...]
    entries: int
    directions: int
    max_abs_err: float
    max_rel_err: float
    worst: str
    analytic: float
    numeric: float
    passed: bool


@dataclass(frozen=True)
class GradcheckReport:
    """Per-leaf results of :func:`check_grads` and the settings they were made with."""

    leaves: tuple[LeafCheck, ...]
    value: float  # f(p) in float64
    rtol: float
    atol: float
    eps: float
    order: int

    @property
    def ok(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def failures(self) -> tuple[LeafCheck, ...]:
        return tuple(leaf for leaf in self.leaves if not leaf.passed)

    @property
    def max_abs_err(self) -> float:
        return max((leaf.max_abs_err for leaf in self.leaves), default=0.0)

    @property
    def max_rel_err(self) -> float:
        return max((leaf.max_rel_err for leaf in self.leaves), default=0.0)

    def __getitem__(self, path: str) -> LeafCheck:
        for leaf in self.leaves:
            if leaf.path == path:
                return leaf
        raise KeyError(f"no leaf {path!r}; leaves: {', '.join(leaf.path for leaf in self.leaves)}")

    def table(self) -> str:
        """A fixed-width table, one row per leaf, and a summary line."""
        head = ("leaf", "shape", "entries", "dirs", "max abs err", "max rel err", "worst at", "")
        rows = [
            (
                leaf.path,
                "(" + ", ".join(map(str, leaf.shape)) + ("," if len(leaf.shape) == 1 else "") + ")",
                str(leaf.entries),
                str(leaf.directions),
                f"{leaf.max_abs_err:.2e}",
                f"{leaf.max_rel_err:.2e}",
                leaf.worst,
                "ok" if leaf.passed else "FAIL",
            )
            for leaf in self.leaves
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        lines.append(
            f"{len(self.leaves)} leaves, {len(self.failures)} failed "
            f"(rtol {self.rtol:g}, atol {self.atol:g}, h {self.eps:g}, "
            f"order-{self.order} central differences in float64; f(p) = {self.value:.10g})"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# --------------------------------------------------------------------------- helpers


def leaf_paths(tree: Any) -> list[str]:
    """The names :func:`check_grads` gives the leaves of ``tree``, in its order."""
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


@contextlib.contextmanager
def _float64() -> Iterator[None]:
    """``jax_enable_x64`` on inside the block, restored afterwards (whatever it was)."""
    if hasattr(jax, "enable_x64"):  # newer jax: a config context manager
        with jax.enable_x64(True):
            yield
    else:  # older jax
        from jax.experimental import enable_x64

        with enable_x64():
            yield


def _index_str(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, index)) + ("," if len(index) == 1 else "") + ")"


def _select_entries(spec: Any, path: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Flat indices of the entries to check for one leaf (see ``entries`` of :func:`check_grads`)."""
    size = math.prod(shape)
    if isinstance(spec, Mapping):
        spec = spec.get(path, 0)
    if spec is None or (isinstance(spec, str) and spec == "all"):
        return np.arange(size)
    if isinstance(spec, str):
        raise ValueError(f"entries={spec!r} for leaf {path}: use an int, 'all', or a list of indices")
    if isinstance(spec, (int, np.integer)):
        if spec < 0:
            raise ValueError(f"entries for leaf {path} must be >= 0, got {spec}")
        if spec >= size:
            return np.arange(size)
        return np.sort(rng.choice(size, size=int(spec), replace=False))
    # An explicit list of indices: tuples into the leaf's shape, or flat ints.
    flat = []
    for idx in spec:
        try:
            if isinstance(idx, (int, np.integer)):
                if not 0 <= idx < size:
                    raise ValueError
                flat.append(int(idx))
            else:
                flat.append(int(np.ravel_multi_index(tuple(idx), shape)) if shape else 0)
        except ValueError:
            raise ValueError(f"index {idx} is outside leaf {path} of shape {shape}") from None
    return np.asarray(flat, dtype=np.int64)


def _evaluate(f_vec: Callable, theta: np.ndarray, rows: list[tuple[int, np.ndarray]], scales: np.ndarray, vectorize: bool) -> np.ndarray:
    """``f_vec(theta + s * d)`` for every row ``(start, d)`` (``d`` placed at ``theta[start:]``)
    and every ``s`` in ``scales``: ``(len(rows), len(scales))`` float64.

    Points are evaluated in chunks of one fixed size (the last one padded), so ``f_vec``
    is compiled once whatever the number of leaves and checks.
    """
    n = theta.size
    chunk = max(1, min(256, _MAX_CHUNK_ELEMENTS // max(1, n)))
    f = jax.jit(jax.vmap(f_vec)) if vectorize else jax.jit(f_vec)
    jobs = [(r, k) for r in range(len(rows)) for k in range(len(scales))]
    out = np.zeros((len(rows), len(scales)))
    for c in range(0, len(jobs), chunk):
        part = jobs[c : c + chunk]
        points = np.repeat(theta[None], chunk if vectorize else len(part), axis=0)
        for j, (r, k) in enumerate(part):
            start, d = rows[r]
            points[j, start : start + d.size] += scales[k] * d
        if vectorize:
            values = np.asarray(f(jnp.asarray(points)), np.float64)
        else:
            values = np.array([float(f(jnp.asarray(p))) for p in points])
        for j, (r, k) in enumerate(part):
            out[r, k] = values[j]
    return out


# --------------------------------------------------------------------------- check


def check_grads(
    fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    entries: int | str | Mapping[str, Any] | None = 16,
    directions: int = 2,
    eps: float = 1e-3,
    order: int = 4,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    seed: int = 0,
    vectorize: bool = True,
) -> GradcheckReport:
    """Compare ``jax.grad(fn)(params)`` with central finite differences in float64.

    Args:
        fn: scalar function of the pytree ``params`` (JAX-traceable).
        params: a pytree of arrays (nested dicts, lists, tuples); integer leaves are skipped.
        entries: which entries of each leaf to check element-wise. An int ``k``: ``k``
            random entries per leaf (all of them if the leaf is smaller); ``"all"`` or
            ``None``: every entry; a mapping ``{path: k | "all" | [index, ...]}``: per
            leaf, where an index is a tuple into the leaf's shape (or a flat int) and
            leaves not named get no element-wise checks (only directions).
        directions: random unit directions per leaf (Gaussian, normalised).
        eps: the finite-difference step ``h``.
        order: 4 (five-point stencil, default) or 2 (``(f(p+h) - f(p-h)) / 2h``).
        rtol, atol: a check passes when ``|a - n| <= max(atol, rtol * max(|a|, |n|))``.
        seed: seeds the choice of random entries and directions.
        vectorize: evaluate perturbations with ``jax.vmap`` (set False for a function
            that cannot be vmapped; slower).
    Returns:
        a :class:`GradcheckReport`; ``report.ok`` tells whether every leaf passed.
    Raises:
        GradcheckError: ``fn`` is not scalar, or does not compute in float64.
    """
    if order not in _STENCILS:
        raise ValueError(f"order must be 2 or 4, got {order}")
    if not (eps > 0 and rtol > 0 and atol >= 0 and directions >= 0):
        raise ValueError(f"need eps > 0, rtol > 0, atol >= 0, directions >= 0; got {eps}, {rtol}, {atol}, {directions}")
    offsets, weights = _STENCILS[order]
    offsets_a, weights_a = np.asarray(offsets), np.asarray(weights)
    floor = atol / rtol
    rng = np.random.default_rng(seed)
    checks: list[LeafCheck] = []

    with _float64():
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_name(p) for p, _ in flat]
        leaves = [jnp.asarray(x) for _, x in flat]
        inexact = [i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.inexact)]
        if isinstance(entries, Mapping):
            unknown = set(entries) - {paths[i] for i in inexact}
            if unknown:
                raise ValueError(f"entries names unknown leaves {sorted(unknown)}; leaves are {paths}")
        # All floating leaves, in float64, laid end to end in one vector theta.
        shapes = {i: tuple(leaves[i].shape) for i in inexact}
        starts, n = {}, 0
        for i in inexact:
            starts[i], n = n, n + math.prod(shapes[i])
        theta = np.concatenate([np.asarray(leaves[i], np.float64).reshape(-1) for i in inexact]) if inexact else np.zeros(0)

        def f_vec(vec):
            full = list(leaves)
            for i in inexact:
                full[i] = vec[starts[i] : starts[i] + math.prod(shapes[i])].reshape(shapes[i])
            return fn(jax.tree_util.tree_unflatten(treedef, full))

        try:
            value, grad = jax.jit(jax.value_and_grad(f_vec))(jnp.asarray(theta))
        except TypeError as e:
            if "scalar" not in str(e):
                raise
            raise GradcheckError(f"fn must return a real scalar: {e}") from None
        if value.shape != ():
            raise GradcheckError(f"fn must return a scalar, got shape {value.shape}")
        if value.dtype != jnp.float64:
            raise GradcheckError(
                f"fn returned {value.dtype} for float64 parameters: it casts to a lower precision "
                "inside, so finite differences cannot resolve small errors; let it follow the "
                "parameters' dtype (e.g. use params['w'].dtype instead of jnp.float32)"
            )
        grad = np.asarray(grad, np.float64)

        # One row per checked quantity: a unit basis vector (an entry) or a unit direction.
        rows: list[tuple[int, np.ndarray]] = []
        plan = []  # per leaf: (leaf index, flat entry indices, first row, number of rows)
        for i in inexact:
            shape, size = shapes[i], math.prod(shapes[i])
            idx = _select_entries(entries, paths[i], shape, rng)
            dirs = rng.standard_normal((directions, size))
            dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-300)
            plan.append((i, idx, len(rows), len(idx) + directions))
            rows += [(starts[i] + int(j), np.ones(1)) for j in idx]
            rows += [(starts[i], d) for d in dirs]
        values = _evaluate(f_vec, theta, rows, offsets_a * eps, vectorize)  # (Q, S)
        numeric_all = values @ weights_a / eps  # (Q,)
        analytic_all = np.array([grad[s : s + d.size] @ d for s, d in rows])  # (Q,)

        for i, idx, first, count in plan:
            if count == 0:
                continue
            shape = shapes[i]
            analytic = analytic_all[first : first + count]
            numeric = numeric_all[first : first + count]
            abs_err = np.abs(analytic - numeric)
            rel_err = abs_err / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
            rel_err = np.where(np.isfinite(rel_err), rel_err, np.inf)
            w = int(np.argmax(rel_err))
            where = (
                f"entry {_index_str(tuple(int(k) for k in np.unravel_index(idx[w], shape)))}"
                if w < len(idx)
                else f"direction {w - len(idx)}"
            )
            checks.append(
                LeafCheck(
                    path=paths[i],
                    shape=shape,
                    entries=len(idx),
                    directions=directions,
                    max_abs_err=float(np.nanmax(abs_err)) if np.isfinite(abs_err).any() else math.inf,
                    max_rel_err=float(rel_err.max()),
                    worst=where,
                    analytic=float(analytic[w]),
                    numeric=float(numeric[w]),
                    passed=bool(rel_err.max() <= rtol),
                )
            )
        value = float(value)
    return GradcheckReport(tuple(checks), value, rtol, atol, eps, order)


def assert_grads(
    fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    **kwargs: Any,
) -> GradcheckReport:
    """:func:`check_grads`, then raise :class:`GradcheckError` (an ``AssertionError``)
    naming every failing leaf, with the whole table, if any leaf is out of tolerance.

    Returns the report when all leaves pass, so a test can also look at the numbers.
    """
    report = check_grads(fn, params, rtol=rtol, atol=atol, **kwargs)
    if not report.ok:
        names = ", ".join(
            f"{leaf.path} (rel err {leaf.max_rel_err:.2e} at {leaf.worst}: "
            f"analytic {leaf.analytic:.6g}, numeric {leaf.numeric:.6g})"
            for leaf in report.failures
        )
        raise GradcheckError(f"gradient check failed for {names}\n{report.table()}", report)
    return report


# --------------------------------------------------------------------------- the model's loss

# A tiny random problem (``minis2s gradcheck``): 7 input and 9 output tokens, 3 samples,
# short sequences, one padding row of weight 0 as in a real last batch.
PROBLEM_SIZES = {"v_in": 7, "v_out": 9, "batch": 3, "t_enc": 5, "t_dec": 6}
# The transformer's sizes in that problem (the other models ignore them): 2 blocks a side,
# 2 heads of 4, so every path (stacking, head split and merge) is checked.
TRANSFORMER_SIZES = {"layers": 2, "heads": 2, "embed_dim": 8, "ff_dim": 12, "max_positions": 8}


def model_loss_problem(latent_dim: int, seed: int, model: str = "seed", cell: str = "lstm",
                       attention_scale: bool = False, grad: str = "bptt",
                       transformer_sizes: Mapping[str, int] | None = None,
                       input_feeding: bool = False) -> tuple[Callable, Any, str]:
    """``(loss, params, description)``: the training loss of a tiny random model on a tiny
    random batch (:data:`PROBLEM_SIZES`) as a function of the parameters, for :func:`check_grads`.
    ``transformer_sizes`` override :data:`TRANSFORMER_SIZES` (read by the transformer only)."""
    from . import models
    from .train import loss_fn

    s = PROBLEM_SIZES
    sizes = {**TRANSFORMER_SIZES, **(transformer_sizes or {})}
    net = models.build(models.ModelConfig(s["v_in"], s["v_out"], latent_dim, model, cell, bool(attention_scale), **sizes,
                                          input_feeding=bool(input_feeding)), grad)
    params = net.init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    batch = {
        "encoder_tokens": rng.integers(0, s["v_in"], (s["batch"], s["t_enc"])).astype(np.int32),
        "encoder_lengths": np.array([s["t_enc"], s["t_enc"] - 2, 1], np.int32),
        "decoder_tokens": rng.integers(0, s["v_out"], (s["batch"], s["t_dec"])).astype(np.int32),
        "target_tokens": rng.integers(0, s["v_out"], (s["batch"], s["t_dec"])).astype(np.int32),
        "weight": np.array([1.0, 1.0, 0.0], np.float32),
    }
    description = (
        f"loss of a {s['v_in']}->{s['v_out']}-token model, latent_dim {latent_dim}, batch {s['batch']}x{s['t_enc']}"
        f"->{s['t_dec']}, seed {seed}, model {model}{' with input feeding' if input_feeding else ''}, {cell} cell, "
        f"{grad} gradient"
    )
    return (lambda p: loss_fn(p, batch, net.apply)[0]), params, description


def problem_step(model: str = "seed", cell: str = "lstm") -> float:
    """The finite-difference step the model ``model`` asks for (:attr:`minis2s.models.Model.fd_step`)."""
    from . import models

    s = PROBLEM_SIZES
    return models.build(models.ModelConfig(s["v_in"], s["v_out"], 1, model, cell, **TRANSFORMER_SIZES)).fd_step
