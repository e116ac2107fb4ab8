"""The ``pplevelset`` command: worlds, sample, diagnose, train, reproduce.

Exit status 0 on success, 2 on bad input (one line on stderr), 1 on an internal error (one line;
set ``PPLEVELSET_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pplevelset.errors import UserInputError
from pplevelset.imports import import_object
from pplevelset.infer.config import DEFAULT_KERNEL, KERNELS
from pplevelset.memory import keep_freed_memory


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, with exit status 2."""

    def error(self, message):
        raise UserInputError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _cadence(text: str) -> tuple[int | None, float | None]:
    """``--checkpoint-every``: ``K`` steps, or ``S`` seconds written ``30s``."""
    import math

    try:
        if text.strip().lower().endswith("s"):
            seconds = float(text.strip()[:-1])
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError
            return None, seconds
        steps = int(text)
        if steps < 1:
            raise ValueError
        return steps, None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a positive number of steps (50) nor of seconds (30s)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pplevelset", description="Sample prediction level sets of classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("worlds", help="list the worlds: latent dim, classes, differentiable, checkpoint ok")

    sample = sub.add_parser("sample", help="sample a level set and write a run directory")
    sample.add_argument("world", nargs="?", help="a world name (see `pplevelset worlds`) or module:Class")
    sample.add_argument("--target", help="ambiguous | name=p,... | p1,p2,... (required unless --resume)")
    sample.add_argument("--alpha", type=float, default=10.0, help="Dirichlet concentration (default 10)")
    sample.add_argument(
        "--likelihood",
        default="dirichlet",
        help="dirichlet (default) | normal: Normal(f_i(x), sigma) per class, Bayes-TrEx's",
    )
    sample.add_argument("--sigma", type=float, default=0.05, help="the normal likelihood's standard deviation (0.05)")
    sample.add_argument("--particles", type=_positive_int, default=1000, help="N chains (default 1000)")
    sample.add_argument("--warmup", type=_positive_int, default=500, help="adaptation steps (default 500)")
    sample.add_argument("--steps", type=_positive_int, default=500, help="recorded steps T (default 500)")
    sample.add_argument("--thin", type=_positive_int, default=1, help="keep every k-th step in the traces")
    sample.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"{' | '.join(KERNELS)} (default {DEFAULT_KERNEL})")
    sample.add_argument(
        "--rungs",
        type=_positive_int,
        default=1,
        help="ensemble: replica exchange over this many temperatures, beta = 1 recorded (default 1: none)",
    )
    sample.add_argument(
        "--start",
        default="prior",
        help="rwmh/ensemble: prior (default) | smc: start the chains at a tempered SMC run's particles",
    )
    sample.add_argument("--populations", type=_positive_int, default=4, help="smc: independent populations (default 4)")
    sample.add_argument(
        "--moves", type=_positive_int, default=10, help="smc, and --start smc: MH moves per temperature (default 10)"
    )
    sample.add_argument("--keep", type=_positive_int, default=64, help="n states resampled at the end (default 64)")
    sample.add_argument("--seed", type=_positive_int, default=0)
    sample.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    sample.add_argument("--out", type=Path, help="run directory (default runs/<world>-<target>-<time>)")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out (only a previous run)")
    sample.add_argument("--quiet", action="store_true", help="no progress bar")
    sample.add_argument(
        "--checkpoint-every",
        type=_cadence,
        default=(None, 60.0),
        metavar="K|Ss",
        help="rwmh/ensemble: save a checkpoint every K steps, or every S seconds with a trailing "
        "s (default 60s); Ctrl-C or SIGTERM saves one and stops",
    )
    sample.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue an interrupted run from its DIR (<out>.partial, or its --out) with its "
        "own settings; the result is bit for bit the uninterrupted run's",
    )

    diagnose = sub.add_parser("diagnose", help="ArviZ summary, burn-in verdict and plots of a run")
    diagnose.add_argument(
        "run_dir", type=Path, nargs="+", help="a run folder; two or more: also R-hat pooled over them"
    )

    from pplevelset.worlds.training import TRAINERS

    train = sub.add_parser("train", help="train a network and write it with its model card to models/")
    train.add_argument("name", help=" | ".join(TRAINERS))
    train.add_argument(
        "--data-root",
        type=Path,
        help="folder of MNIST or Fashion-MNIST IDX files (default: the "
        "bundled MNIST digits; Fashion-MNIST from the Debian package dataset-fashion-mnist)",
    )
    train.add_argument("--download", action="store_true", help="download the data set with torchvision (online)")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--seed", type=_positive_int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--out", type=Path, help="models folder to write into (default: the package's models/)")

    from pplevelset.reproduce import EXPERIMENTS

    reproduce = sub.add_parser("reproduce", help="rerun the paper's experiments and write a report")
    reproduce.add_argument("experiment", help=" | ".join([*EXPERIMENTS, "all"]))
    reproduce.add_argument("--quick", action="store_true", help="reduced sizes, a few minutes")
    reproduce.add_argument("--out", type=Path, help="report folder (default runs/reproduce-<experiment>)")
    reproduce.add_argument("--overwrite", action="store_true")
    reproduce.add_argument("--device", default="cpu")

    from pplevelset.audit.command import add_sweep_parser

    add_sweep_parser(sub)

    from pplevelset.explore.command import add_explore_parser

    add_explore_parser(sub)
    return parser


def cmd_worlds(args) -> None:
    from pplevelset.checkpoints import is_available
    from pplevelset.worlds import names, origin, plugins, world_class

    rows = [("world", "latent dim", "classes", "differentiable", "checkpoints", "package")]
    for name in names():
        package = origin(name)
        try:
            cls: Any = world_class(name)
            if not isinstance(cls, type):
                cls = cls()
            checkpoints = getattr(cls, "required_checkpoints", ())
            ok = all(is_available(folder, ck) for folder, ck in checkpoints)
            classes = ", ".join(map(str, cls.classes))
            rows.append(
                (
                    name,
                    str(cls.latent_dim),
                    classes if len(classes) < 40 else classes[:37] + "...",
                    "yes" if cls.differentiable else "no",
                    ("ok" if ok else "MISSING") if checkpoints else "none needed",
                    package,
                )
            )
        except ImportError as exc:
            rows.append((name, "-", "-", "-", f"unavailable ({exc.name})", package))
        except UserInputError as exc:  # a plugin that fails to import: its reason, in one line
            rows.append((name, "-", "-", "-", f"unavailable ({str(exc).split(' cannot be imported: ')[-1]})", package))
        except Exception as exc:  # one broken world (or model card) does not hide the others
            first = (str(exc).strip().splitlines() or [""])[0][:60]
            rows.append((name, "-", "-", "-", f"broken ({type(exc).__name__}: {first})", package))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for plugin in plugins():
        if plugin.shadowed_by is not None:
            print(f"note: world {plugin.name!r} of package {plugin.package!r} is not used: {plugin.shadowed_by}")


def cmd_sample(args) -> None:
    import dataclasses

    from pplevelset.infer.config import RunConfig, SMCOptions, check_keep
    from pplevelset.rundir import format_summary, open_interrupted, sample_to_directory
    from pplevelset.targets import target_label

    every_steps, every_seconds = args.checkpoint_every
    if args.resume is not None:
        defaults = _sample_defaults()
        given = [
            name
            for name, default in defaults.items()
            if name not in ("resume", "quiet", "checkpoint_every") and getattr(args, name) != default
        ]
        if given:
            flag = given[0] if given[0] == "world" else "--" + given[0].replace("_", "-")
            raise UserInputError(f"--resume takes every setting from the interrupted run; drop {flag}")
        staging, job, config = open_interrupted(args.resume)
        config = dataclasses.replace(config, progress=not args.quiet)
        if args.checkpoint_every == defaults["checkpoint_every"]:
            every_steps, every_seconds = job.get("every_steps"), job.get("every_seconds")
        summary = sample_to_directory(
            config,
            staging.out,
            world_spec=job["world"],
            overwrite=job["overwrite"],
            keep=job["keep"],
            every_steps=every_steps,
            every_seconds=every_seconds,
            staging=staging,
        )
        out = staging.shown
    else:
        if args.world is None or args.target is None:
            missing = "world" if args.world is None else "--target"
            raise UserInputError(f"the following arguments are required: {missing} (see pplevelset sample --help)")
        check_keep(args.keep)
        config = RunConfig.build(
            args.world,
            args.target,
            alpha=args.alpha,
            kernel=args.kernel,
            num_particles=args.particles,
            warmup=args.warmup,
            steps=args.steps,
            thin=args.thin,
            seed=args.seed,
            device=args.device,
            progress=not args.quiet,
            smc=SMCOptions(args.populations, args.moves),
            likelihood=args.likelihood,
            sigma=args.sigma,
            rungs=args.rungs,
            start=args.start,
        )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = args.out or Path("runs") / f"{config.world.name}-{target_label(args.target)}-{stamp}"
        summary = sample_to_directory(
            config,
            out,
            world_spec=args.world,
            overwrite=args.overwrite,
            keep=args.keep,
            every_steps=every_steps,
            every_seconds=every_seconds,
        )
    print(format_summary(summary))
    print(f"wrote {out}/: summary.json posterior.nc samples.png trace.png")


def _sample_defaults() -> dict:
    parser = build_parser()
    subparsers: Any = parser._subparsers  # argparse keeps its sub-commands here, and only here
    sample = next(action for action in subparsers._group_actions).choices["sample"]
    return {action.dest: action.default for action in sample._actions if action.dest != "help"}


def cmd_diagnose(args) -> None:
    from pplevelset.rundir import diagnose_runs

    print(diagnose_runs(args.run_dir))


def cmd_train(args) -> None:
    from pplevelset.infer.config import resolve_device
    from pplevelset.worlds.training import TRAINERS

    if args.name not in TRAINERS:
        raise UserInputError(f"nothing to train named {args.name!r}; choose one of {', '.join(TRAINERS)}")
    if args.data_root is not None and not args.data_root.is_dir():
        raise UserInputError(f"--data-root {args.data_root} is not a folder")
    device = resolve_device(args.device)
    trainer = import_object(TRAINERS[args.name])
    metrics = trainer(
        seed=args.seed,
        epochs=args.epochs,
        data_root=args.data_root,
        download=args.download,
        out=args.out,
        device=str(device),
        progress=True,
    )
    print(
        f"trained {args.name}: "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    )


def cmd_reproduce(args) -> None:
    from pplevelset.infer.config import resolve_device
    from pplevelset.reproduce import run_experiments

    resolve_device(args.device)
    run_experiments(args.experiment, quick=args.quick, out=args.out, overwrite=args.overwrite, device=args.device)


def cmd_sweep(args) -> None:
    from pplevelset.audit.command import cmd_sweep as run_sweep

    run_sweep(args)


def cmd_explore(args) -> None:
    from pplevelset.explore.command import cmd_explore as run_explorer

    run_explorer(args)


COMMANDS = {
    "worlds": cmd_worlds,
    "sample": cmd_sample,
    "diagnose": cmd_diagnose,
    "train": cmd_train,
    "reproduce": cmd_reproduce,
    "sweep": cmd_sweep,
    "explore": cmd_explore,
}


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    try:
        args = build_parser().parse_args(argv)
        keep_freed_memory()  # this process is ours: reuse freed blocks instead of faulting in fresh pages
        COMMANDS[args.command](args)
    except UserInputError as exc:
        print(f"pplevelset: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a run's own RunInterrupted says what was kept and how to resume
        signum = getattr(exc, "signum", 2)
        print(f"pplevelset: {exc if str(exc) else 'interrupted; nothing was written'}", file=sys.stderr)
        return 128 + int(signum)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for those who ask
        if os.environ.get("PPLEVELSET_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"pplevelset: internal error: {type(exc).__name__}: {first} (set PPLEVELSET_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
