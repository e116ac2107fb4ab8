"""``pplevelset explore``: the command-line front of :mod:`pplevelset.explore` (parser and command)."""

from __future__ import annotations

import sys
import time

from pplevelset.errors import UserInputError


def add_explore_parser(sub) -> None:
    from pplevelset.explore.settings import REFINE_KERNELS, Settings

    default = Settings()
    explore = sub.add_parser(
        "explore",
        help="a local web page to move the target and see its level set",
        description="pplevelset explore WORLD [--port P] [--address 127.0.0.1]",
    )
    explore.add_argument("world", help="a world name (see `pplevelset worlds`) or module:Class")
    explore.add_argument("--port", type=int, default=5006, help="port to listen on (default 5006)")
    explore.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    explore.add_argument(
        "--pairs",
        action="append",
        metavar="A,B",
        help="class pairs to precompute (repeatable, or `all`; default: every pair up to 4 "
        "classes, else the first two); others are sampled when chosen",
    )
    explore.add_argument(
        "--alpha",
        type=float,
        default=default.alpha,
        help=f"Dirichlet concentration (default {default.alpha:g}; the page offers others)",
    )
    explore.add_argument(
        "--particles",
        type=int,
        default=default.particles,
        help=f"particles per precomputed target (default {default.particles})",
    )
    explore.add_argument(
        "--refine-particles",
        type=int,
        default=default.refine_particles,
        dest="refine_particles",
        help=f"particles of a Refine run (default {default.refine_particles})",
    )
    explore.add_argument("--warmup", type=int, default=default.warmup, help=f"warm-up steps (default {default.warmup})")
    explore.add_argument("--steps", type=int, default=default.steps, help=f"recorded steps (default {default.steps})")
    explore.add_argument(
        "--kernel",
        default=default.kernel,
        help=f"{' or '.join(REFINE_KERNELS)}, for the sweep and Refine (default {default.kernel})",
    )
    explore.add_argument("--seed", type=int, default=default.seed)
    explore.add_argument("--device", default=default.device, help="cpu (default) or cuda")


def cmd_explore(args) -> None:
    from pplevelset.explore.serve import check_port, require_panel, serve

    check_port(args.address, args.port)  # the cheap checks first: no sweep for a server that cannot start
    require_panel()
    answers = build_answers(args)
    print(f"explore: precomputing {answers.describe()}...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    answers.precompute()
    print(f"explore: ready in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    serve(answers, args.address, args.port)


def build_answers(args):
    """The :class:`Answers` the flags describe, every setting checked before anything is sampled."""
    from pplevelset.explore.answers import Answers, parse_pairs
    from pplevelset.explore.settings import REFINE_KERNELS, Settings
    from pplevelset.infer.config import RunConfig

    if args.kernel not in REFINE_KERNELS:
        raise UserInputError(f"--kernel {args.kernel!r}: the explorer runs {' or '.join(REFINE_KERNELS)}")
    for flag, value, least in (("--particles", args.particles, 2), ("--refine-particles", args.refine_particles, 6)):
        if value < least:  # Refine may run the ensemble kernel, which needs 3 particles per half
            raise UserInputError(f"{flag} {value}: need at least {least} particles")
    # the library's own checks of alpha, step counts, seed and device, for one target of this world
    config = RunConfig.build(
        args.world,
        "ambiguous",
        alpha=args.alpha,
        kernel=args.kernel,
        num_particles=args.particles,
        warmup=args.warmup,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        progress=False,
    )
    settings = Settings(
        alpha=args.alpha,
        particles=args.particles,
        refine_particles=args.refine_particles,
        warmup=args.warmup,
        steps=args.steps,
        kernel=args.kernel,
        seed=args.seed,
        device=args.device,
    )
    return Answers(config.world, settings, parse_pairs(args.pairs, config.world.classes), progress=True)
