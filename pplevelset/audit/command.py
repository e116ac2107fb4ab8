"""``pplevelset sweep``: the command-line front of :mod:`pplevelset.audit` (parser and command)."""

from __future__ import annotations

from pathlib import Path

from pplevelset.errors import UserInputError
from pplevelset.infer.config import DEFAULT_KERNEL


def add_sweep_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="many targets (and worlds, seeds) in batched runs: a sweep directory",
        description="pplevelset sweep WORLD --targets FAMILY ... | pplevelset sweep SPEC.toml",
    )
    sweep.add_argument("world", help="a world name, or a TOML spec (worlds x targets x seeds)")
    sweep.add_argument(
        "--targets", action="append", help="graded:A | graded:A,B | pairs | corners | file:PATH | a target (repeatable)"
    )
    sweep.add_argument("--seeds", help="comma-separated seeds (default 0)")
    sweep.add_argument(
        "--particles-per-target", type=int, dest="particles_per_target", help="particles per target (default 100)"
    )
    sweep.add_argument("--kernel", help=f"rwmh, ensemble or smc (default {DEFAULT_KERNEL})")
    sweep.add_argument("--alpha", type=float)
    sweep.add_argument("--likelihood", help="dirichlet (default) or normal (Bayes-TrEx's)")
    sweep.add_argument("--sigma", type=float, help="the normal likelihood's standard deviation (default 0.05)")
    sweep.add_argument("--rungs", type=int, help="ensemble: replica-exchange temperatures (default 1: none)")
    sweep.add_argument("--start", help="rwmh/ensemble: prior (default) | smc: start at a tempered run's particles")
    sweep.add_argument("--warmup", type=int, help="adaptation steps (default 200)")
    sweep.add_argument("--steps", type=int, help="recorded steps (default 200)")
    sweep.add_argument("--thin", type=int)
    sweep.add_argument("--populations", type=int, help="smc: populations per target (default 4)")
    sweep.add_argument("--moves", type=int, help="smc, and --start smc: MH moves per temperature (default 10)")
    sweep.add_argument("--keep", type=int, help="states resampled per item (default 64)")
    sweep.add_argument(
        "--chunk-size",
        type=int,
        dest="chunk_size",
        help="targets per batch and per Ray task (default: all of a world's targets)",
    )
    sweep.add_argument("--device", help="cpu (default) or cuda (Ray: one GPU per task)")
    sweep.add_argument("--backend", default="local", help="local (default: one process) or ray")
    sweep.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    sweep.add_argument(
        "--max-retries", type=int, default=2, dest="max_retries", help="ray: retries of a failing task (default 2)"
    )
    sweep.add_argument("--out", type=Path, help="sweep directory (default runs/sweep-<world>-<targets>)")
    sweep.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")


SETTING_ARGS = (
    "particles_per_target",
    "kernel",
    "alpha",
    "likelihood",
    "sigma",
    "rungs",
    "start",
    "warmup",
    "steps",
    "thin",
    "populations",
    "moves",
    "keep",
    "chunk_size",
    "device",
)


def plan_from_args(args):
    """The plan the command line describes: a world with ``--targets``, or a TOML spec; flags given
    on the command line override the spec's values."""
    from pplevelset.audit.plan import build_plan, read_spec, settings_from
    from pplevelset.targets import target_label

    spec: dict = {}
    if args.world.endswith(".toml"):
        spec = read_spec(args.world)
        worlds, targets = spec.get("worlds"), args.targets or spec.get("targets")
        if not worlds:
            raise UserInputError(f"{args.world} names no worlds")
    else:
        worlds, targets = [args.world], args.targets
    if not targets:
        raise UserInputError("a sweep needs --targets (graded:A, graded:A,B, pairs, corners, file:PATH or a target)")
    seeds = spec.get("seeds", [0])
    if args.seeds is not None:
        try:
            seeds = [int(part) for part in args.seeds.split(",")]
        except ValueError:
            raise UserInputError(f"--seeds {args.seeds!r} is not a comma-separated list of integers") from None
    values = {key: spec.get(key) for key in SETTING_ARGS}
    values.update({key: getattr(args, key) for key in SETTING_ARGS if getattr(args, key) is not None})
    if args.backend not in ("local", "ray"):
        raise UserInputError(f"unknown backend {args.backend!r}; choose local or ray")
    plan = build_plan(worlds, targets, seeds, settings_from(values), check_device=args.backend == "local")
    out = args.out or spec.get("out")
    if out is None:
        stem = "-".join(worlds) if len(worlds) <= 2 else f"{len(worlds)}-worlds"
        out = Path("runs") / f"sweep-{stem}-{target_label('_'.join(targets))}"
    return plan, Path(out)


def cmd_sweep(args) -> None:
    from pplevelset.audit.execute import execute

    plan, out = plan_from_args(args)
    if args.backend == "ray":
        from pplevelset.audit.ray_backend import ray_module

        ray_module()  # a one-line error before anything runs when Ray is not installed
    rows = execute(
        plan,
        out,
        backend=args.backend,
        address=args.address,
        overwrite=args.overwrite,
        progress=not args.quiet,
        max_retries=args.max_retries,
    )
    done = sum(row["status"] == "done" for row in rows)
    failed = [row for row in rows if row["status"] == "failed"]
    print(
        f"{done} of {len(rows)} items done, {len(failed)} failed; wrote {out}/: sweep.json sweep.csv "
        "and one folder per item"
    )
    for row in rows[:60]:
        if row["status"] == "done":
            extra = f", log Z {row['log_evidence']:.2f}" if row.get("log_evidence") is not None else ""
            rhat = "n/a" if row.get("rhat_max") is None else f"{row['rhat_max']:.2f}"
            print(
                f"  {row['world']} {row['target_spec']:<24} seed {row['seed']}: Delta {row['delta']:.4f}, "
                f"confidence {row['confidence']:.3f}, hits {row['hits_tv_0.1']}/{row['num_particles']}, "
                f"R-hat {rhat}{extra}"
            )
        else:
            error = row.get("error") or ""
            print(f"  {row['world']} {row['target_spec']:<24} seed {row['seed']}: {row['status']} {error}")
    if failed:
        raise SystemExit(1)
