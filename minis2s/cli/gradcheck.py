"""``minis2s gradcheck``: the model's loss gradient against float64 finite differences."""

from __future__ import annotations

import sys

from .options import SEED_MAX, UsageError, add_model_options, count_or_all, number, positive_int


def add(sub) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check the model's loss gradient against float64 finite differences",
        description="Build a tiny random batch and model, compare jax.grad of the training loss "
        "with fourth-order central differences in float64, leaf by leaf. Exit status 1 if "
        "any leaf is out of tolerance.",
    )
    p.add_argument("--latent-dim", type=positive_int, default=8, metavar="N",
                   help="latent size of the tiny model (default 8)")
    p.add_argument("--seed", type=number(int, 0, SEED_MAX, what="an integer from 0 to 2**63-1"), default=0,
                   help="seeds the parameters, the batch and the checked entries (default 0)")
    p.add_argument("--entries", type=count_or_all, default="all", metavar="N|all",
                   help="entries per leaf: a count, or 'all' (default all)")
    p.add_argument("--directions", type=number(int, 0), default=2, metavar="N",
                   help="random directions per leaf (default 2)")
    p.add_argument("--rtol", type=number(float, 0.0, inclusive=False), default=1e-6,
                   help="relative tolerance (default 1e-6)")
    p.add_argument("--eps", type=number(float, 0.0, inclusive=False), default=None, metavar="H",
                   help="finite-difference step (default: the model's, 1e-3; the transformer's ReLU asks for 1e-5)")
    p.add_argument("--atol", type=number(float, 0.0), default=1e-10, help="absolute tolerance near zero (default 1e-10)")
    p.add_argument("--grad", choices=("bptt", "autodiff"), default="bptt",
                   help="which LSTM gradient to check: the hand-derived BPTT that training uses "
                   "by default, or JAX autodiff (default bptt)")
    add_model_options(p, "seed", "lstm")
    from ..gradcheck import TRANSFORMER_SIZES

    t = p.add_argument_group("transformer sizes (--model transformer)")
    for name, default in TRANSFORMER_SIZES.items():
        t.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=default, metavar="N",
                       help=f"default {default}")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import Config
    from ..gradcheck import TRANSFORMER_SIZES, check_grads, model_loss_problem, problem_step

    if args.input_feeding:  # a model that has no use for it would silently check another model
        try:
            Config(model=args.model, cell=args.cell, input_feeding=True).validate()
        except ValueError as e:
            raise UsageError(f"--input-feeding: {e}") from None
    loss, params, description = model_loss_problem(args.latent_dim, args.seed, args.model, args.cell,
                                                   bool(args.attention_scale), args.grad,
                                                   {name: getattr(args, name) for name in TRANSFORMER_SIZES},
                                                   bool(args.input_feeding))
    print(f"gradcheck: {description}")
    entries = "all" if str(args.entries) == "all" else args.entries
    report = check_grads(loss, params, entries=entries, directions=args.directions, rtol=args.rtol,
                         atol=args.atol, seed=args.seed, eps=args.eps or problem_step(args.model, args.cell))
    print(report.table())
    if not report.ok:
        print("gradcheck: FAILED for " + ", ".join(leaf.path for leaf in report.failures), file=sys.stderr)
        return 1
    return 0
