"""Speed against Bayes-TrEx's own setup: Pyro NUTS, one chain, 1,000 warm-up + 1,000 steps, on its
ambiguous-pair program, against our batched ensemble kernel on the same program and on our Normal
likelihood.

Bayes-TrEx's pair program (``MNIST/mnist_inspect.py``, ``program_avb``): ``z ~ N(0, I)``,
``p = f(g(z))``, ``|p_A - p_B| ~ Normal(., 0.05)`` observed at 0 and ``min(p_A, p_B) - max(rest) ~
Normal(., 0.05)`` observed at 0.5. :func:`pair_program` writes it over a plate of particles: with one
particle it is Bayes-TrEx's program exactly (what Pyro NUTS runs), with N it is N independent copies
(what our ensemble runs, through :class:`~pplevelset.model.ParticleDensity`'s trace path). The third
contender is ``pls.sample(likelihood="normal")``: the general form, ``Normal(p_i, 0.05)`` on every
class probability observed at the target ``A = B = 0.49``, on the lean density path.

Measure: minimum bulk ESS of ``z`` over latent dimensions (ArviZ; particles as chains for ours,
and for ours the smaller of that and the ESS of the population's mean, since the ensemble's
particles are not independent chains) per second of sampling, warm-up included; the ratio is
NUTS's seconds per effective sample over ours. ``--nuts-warmup/--nuts-steps`` shorten the NUTS
run; its time and ESS are then extrapolated per step to 1,000 + 1,000 (ESS in proportion to the
steps), and the results say so.

    .venv/bin/python benchmarks/bayestrex_speed.py [--quick] [--out benchmarks/results-bayestrex.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_sample

sys.path.insert(0, str(Path(__file__).parent))
from samplers import ess_rhat  # noqa: E402  (the smallest bulk ESS over latent dimensions)

import pplevelset as pls  # noqa: E402
from pplevelset.diagnostics import az, population_convergence  # noqa: E402
from pplevelset.infer import ensemble  # noqa: E402
from pplevelset.infer.mcmc import initial_positions, run_mcmc  # noqa: E402
from pplevelset.model import PLATE, ParticleDensity  # noqa: E402
from pplevelset.reproduce.bayestrex import pair_numbers, pair_spec  # noqa: E402
from pplevelset.rng import generator as seeded_generator  # noqa: E402

SIGMA = 0.05
CASES = (("mnist-vae", "1", "7"), ("fashion-vae", "tshirt", "shirt"))


def pair_program(world, a: int, b: int, num_particles: int, sigma: float = SIGMA):
    """Bayes-TrEx's ``program_avb`` over a plate of ``num_particles`` independent copies."""
    with pyro.plate(PLATE, num_particles):
        z = pyro.sample("z", world.prior())
        probs = pyro.deterministic("probs", world.classify(world.decode(z)), event_dim=1)
        rest = torch.ones(probs.shape[-1], dtype=torch.bool, device=probs.device)
        rest[[a, b]] = False
        diff = (probs[..., a] - probs[..., b]).abs()
        margin = torch.minimum(probs[..., a], probs[..., b]) - probs[..., rest].max(-1).values
        pyro.sample("u1", dist.Normal(diff, sigma), obs=torch.zeros_like(diff))
        pyro.sample("u2", dist.Normal(margin, sigma), obs=torch.full_like(margin, 0.5))


def level_set(world, z: torch.Tensor, a: int, b: int) -> dict:
    with torch.no_grad():
        probs = world.classify(world.decode(z.reshape(-1, z.shape[-1]).to(world.device))).cpu()
    return pair_numbers(probs, a, b)


def pyro_nuts(world, a, b, warmup, steps, seed) -> dict:
    """Bayes-TrEx's setup: Pyro NUTS defaults, one chain, on the one-particle program."""
    marks = {}

    def hook(kernel, params, stage, i):
        if not stage.startswith("Warmup") and "sampling" not in marks:
            marks["sampling"] = time.perf_counter()

    pyro.set_rng_seed(seed)
    mcmc = MCMC(
        NUTS(pair_program, init_strategy=init_to_sample, jit_compile=False),
        num_samples=steps,
        warmup_steps=warmup,
        num_chains=1,
        hook_fn=hook,
        disable_progbar=True,
    )
    start = time.perf_counter()
    mcmc.run(world, a, b, 1)
    end = time.perf_counter()
    z = mcmc.get_samples()["z"].detach().cpu()  # (steps, 1, d)
    sampling_start = marks.get("sampling", end)
    ess = ess_rhat(z.permute(1, 0, 2).numpy())[0]
    warmup_s, sampling_s = sampling_start - start, end - sampling_start
    full = {"warmup_s": warmup_s / warmup * 1000, "sampling_s": sampling_s / steps * 1000, "ess": ess * 1000 / steps}
    return {
        "warmup": warmup,
        "steps": steps,
        "elapsed_s": end - start,
        "warmup_s": warmup_s,
        "sampling_s": sampling_s,
        "ess_bulk_min": ess,
        "extrapolated_to_1000_1000": warmup != 1000 or steps != 1000,
        "seconds_1000_1000": full["warmup_s"] + full["sampling_s"],
        "ess_1000_1000": full["ess"],
        "seconds_per_ess": (full["warmup_s"] + full["sampling_s"]) / max(full["ess"], 1e-9),
        "level_set": level_set(world, z, a, b),
    }


def ensemble_on_pair_program(world, a, b, particles, warmup, steps, seed) -> dict:
    """Our ensemble kernel on the same program, N particles batched (the trace path of the density)."""
    with torch.random.fork_rng(devices=[]):
        density = ParticleDensity(pair_program, (world, a, b, particles))
    generator = seeded_generator(seed, torch.device("cpu"))
    start = time.perf_counter()
    with torch.no_grad():
        draws = run_mcmc(
            ensemble.algorithm(), density, generator, initial_positions(density, generator), warmup, steps, 1, False
        )
    elapsed = time.perf_counter() - start
    return {
        "particles": particles,
        "warmup": warmup,
        "steps": steps,
        "elapsed_s": elapsed,
        **population_ess(draws.traces["z"].numpy(), elapsed),
        "level_set": level_set(world, draws.z, a, b),
    }


def population_ess(z, elapsed: float) -> dict:
    """The per-particle bulk ESS and the population mean's (the ensemble's particles are not
    independent chains: :func:`pplevelset.diagnostics.population_convergence`); seconds per ESS
    counts the smaller."""
    bulk = ess_rhat(z)[0]
    population = population_convergence(az.convert_to_inference_data({"z": z}))
    ess = min(bulk, population["ess_population_min"])
    return {"ess_bulk_min": bulk, **population, "ess": ess, "seconds_per_ess": elapsed / ess}


def ensemble_normal(world, a, b, particles, warmup, steps, seed) -> dict:
    """``pls.sample`` with the Normal likelihood on every class, target A = B = 0.49 (the lean path)."""
    names = [str(world.classes[a]), str(world.classes[b])]
    post = pls.sample(
        world,
        pair_spec(*names),
        likelihood="normal",
        sigma=SIGMA,
        kernel="ensemble",
        num_particles=particles,
        warmup=warmup,
        steps=steps,
        seed=seed,
        progress=False,
    )
    return {
        "particles": particles,
        "warmup": warmup,
        "steps": steps,
        "elapsed_s": post.elapsed_s,
        **population_ess(post.traces["z"].numpy(), post.elapsed_s),
        "level_set": level_set(world, post.z, a, b),
    }


def merged(path: Path, results: dict) -> dict:
    """``results`` with the cases of an earlier run in ``path`` kept for the worlds not rerun (a world
    whose checkpoints arrive later is measured on its own, into the same file)."""
    if not path.exists():
        return results
    earlier = json.loads(path.read_text())
    rerun = {case["world"] for case in results["cases"]}
    kept = [case for case in earlier.get("cases", []) if case["world"] not in rerun and "skipped" not in case]
    return dict(results, cases=kept + results["cases"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="NUTS 100 + 100 and ours 100 + 100 (extrapolated)")
    parser.add_argument("--nuts-warmup", type=int, default=1000)
    parser.add_argument("--nuts-steps", type=int, default=1000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worlds", default=",".join(case[0] for case in CASES))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results-bayestrex.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.nuts_warmup, args.nuts_steps, args.warmup, args.steps = 100, 100, 100, 100
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    given = argv if argv is not None else sys.argv[1:]
    results = {
        "command": "python benchmarks/bayestrex_speed.py " + " ".join(given),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "cases": [],
    }
    for world_name, a_name, b_name in CASES:
        if world_name not in args.worlds.split(","):
            continue
        try:
            world = pls.load_world(world_name)
        except pls.UserInputError as exc:  # a world whose networks are missing: say so, measure the others
            results["cases"].append({"world": world_name, "skipped": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        a, b = world.classes.index(a_name), world.classes.index(b_name)
        case = {
            "world": world_name,
            "pair": f"{a_name}v{b_name}",
            "command": results["command"],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_before": [round(v, 2) for v in os.getloadavg()],
        }
        print(f"{world_name} {a_name}v{b_name}: Pyro NUTS {args.nuts_warmup} + {args.nuts_steps} ...", flush=True)
        case["pyro_nuts_single_chain"] = pyro_nuts(world, a, b, args.nuts_warmup, args.nuts_steps, args.seed)
        print(f"  ensemble on the same program, N = {args.particles} ...", flush=True)
        case["ensemble_pair_program"] = ensemble_on_pair_program(
            world, a, b, args.particles, args.warmup, args.steps, args.seed
        )
        print("  ensemble, --likelihood normal ...", flush=True)
        case["ensemble_normal_likelihood"] = ensemble_normal(
            world, a, b, args.particles, args.warmup, args.steps, args.seed
        )
        nuts = case["pyro_nuts_single_chain"]["seconds_per_ess"]
        case["speedup_same_program"] = nuts / case["ensemble_pair_program"]["seconds_per_ess"]
        case["speedup_normal_likelihood"] = nuts / case["ensemble_normal_likelihood"]["seconds_per_ess"]
        case["load_after"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(case, indent=1), flush=True)
        results["cases"].append(case)
    args.out.write_text(json.dumps(merged(args.out, results), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
