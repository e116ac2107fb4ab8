"""Each speed-up we tried, measured before/after side by side in one process on the same latents.

- ``grad_mode``: the driver's step (``rwmh.step`` + trace collector) under ``torch.no_grad`` (what the
  driver uses) against ``torch.inference_mode``.
- ``layout``: the networks as trained (NCHW, ``ConvTranspose2d``) against what the worlds now run
  (channels-last convolutions; the VAE/GAN upsampling as sub-pixel convolutions), per part.
- ``threads``: the forward pass with 1 and with 2 torch threads, alternating.
- ``compile``: ``torch.compile(world.predict)``: compile time, time per call, and the break-even
  number of steps against eager (a typical run is 1,000 steps).
- ``bfloat16``: ``torch.autocast("cpu", torch.bfloat16)`` around the forward pass: time, and what
  it does to Delta (paper Eq. 5) of level-set samples and to their predictions.
- ``render``: the houses renderer's share of the forward pass, and its chunk size.
- ``chunk``: the forward pass over all N latents at once against the worlds' default, slices of
  :data:`pplevelset.worlds.chunks.CHUNK` rows (feature maps that stay in cache).
- ``trace``: :class:`ParticleDensity` through ``poutine.trace`` (``lean=False``) against the direct
  path for ``level_set_model`` (the default) and the bare forward pass.
"""

from __future__ import annotations

import copy
import importlib
import time

import torch
from timing import interleaved, load_average, sync

import pplevelset as pls
from pplevelset import metrics
from pplevelset.infer import rwmh
from pplevelset.infer.mcmc import TraceCollector, initial_positions
from pplevelset.model import ParticleDensity, level_set_model

render = importlib.import_module("pplevelset.worlds.houses.render")  # the module; the package exports its function


def _latents(world, target, alpha, num_particles):
    density = ParticleDensity(level_set_model, (world, target, alpha, num_particles))
    generator = torch.Generator(device=target.device).manual_seed(1)
    with torch.no_grad():
        z_unconstrained = initial_positions(density, generator)
    return density, z_unconstrained, density.constrain(z_unconstrained)["z"]


def grad_mode(world, target, alpha, num_particles, repeats, device) -> dict:
    density, z_unconstrained, _ = _latents(world, target, alpha, num_particles)
    generator = torch.Generator(device=target.device).manual_seed(0)
    runs = {}
    for name, context in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        with context():
            state = rwmh.init(z_unconstrained.clone(), density, 0.1)
        runs[name] = {"state": state, "i": 0, "context": context, "recorder": TraceCollector(0, repeats + 4, 1)}

    def stepper(run):
        def step():
            with run["context"]():
                state, info = rwmh.step(generator, run["state"], density)
                run["recorder"].record(run["i"], density, state, info, state.step_size)
            run["state"], run["i"] = state, run["i"] + 1

        return step

    times = interleaved({name: stepper(run) for name, run in runs.items()}, repeats, device)
    return {
        "no_grad_ms": 1e3 * times["no_grad"],
        "inference_mode_ms": 1e3 * times["inference_mode"],
        "speedup": times["no_grad"] / times["inference_mode"],
    }


def layout(world, target, alpha, num_particles, repeats, device) -> dict:
    """Networks as trained (contiguous NCHW, transposed convolutions) vs the worlds' fast path."""
    _, _, z = _latents(world, target, alpha, num_particles)
    nchw_classifier = copy.deepcopy(world.classifier).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        images = world.decode(z)
    if world.name.startswith("mnist"):
        network = world.vae if world.name == "mnist-vae" else world.generator
        old_decode = (lambda: network.decode(z)) if world.name == "mnist-vae" else (lambda: network(z))
        contenders = {"decode_before": old_decode, "decode_after": lambda: world.decode(z)}
    else:
        contenders = {}
    contenders.update(
        {
            "classify_before": lambda: torch.softmax(nchw_classifier(images), -1),
            "classify_after": lambda: world.classify(images),
        }
    )
    with torch.no_grad():
        largest = max(float((contenders["classify_before"]() - contenders["classify_after"]()).abs().max()), 0.0)
        if "decode_before" in contenders:
            largest = max(largest, float((contenders["decode_before"]() - contenders["decode_after"]()).abs().max()))
        times = interleaved(contenders, repeats, device)
    out = {f"{name}_ms": 1e3 * value for name, value in times.items()}
    before = times["classify_before"] + times.get("decode_before", 0.0)
    after = times["classify_after"] + times.get("decode_after", 0.0)
    out.update(
        {
            "speedup_classify": times["classify_before"] / times["classify_after"],
            "speedup_forward_excluding_render" if "decode_before" not in times else "speedup_forward": before / after,
            "max_abs_difference": largest,
        }
    )
    return out


def threads(world, target, alpha, num_particles, repeats, device) -> dict:
    _, _, z = _latents(world, target, alpha, num_particles)
    original = torch.get_num_threads()

    def with_threads(count):
        def run():
            torch.set_num_threads(count)
            with torch.no_grad():
                world.predict(z)

        return run

    try:
        times = interleaved({"1": with_threads(1), "2": with_threads(2)}, repeats, device)
    finally:
        torch.set_num_threads(original)
    return {
        "one_thread_ms": 1e3 * times["1"],
        "two_threads_ms": 1e3 * times["2"],
        "two_over_one": times["2"] / times["1"],
        "load_average": load_average(),
    }


def compiled(world, target, alpha, num_particles, repeats, device, typical_steps=1000) -> dict:
    _, _, z = _latents(world, target, alpha, num_particles)
    eager = lambda: world.predict(z)
    try:
        import torch._dynamo

        torch._dynamo.reset()
        compiled_predict = torch.compile(world.predict)
        start = time.perf_counter()
        with torch.no_grad():
            reference, result = eager(), compiled_predict(z)
        sync(device)
        compile_s = time.perf_counter() - start
    except Exception as exc:  # no compiler, unsupported op: record why
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    with torch.no_grad():
        times = interleaved({"eager": eager, "compiled": lambda: compiled_predict(z)}, repeats, device)
    saved = times["eager"] - times["compiled"]
    return {
        "compile_s": compile_s,
        "eager_ms": 1e3 * times["eager"],
        "compiled_ms": 1e3 * times["compiled"],
        "speedup": times["eager"] / times["compiled"],
        "break_even_steps": (compile_s / saved) if saved > 0 else None,
        "wins_in_typical_run": bool(saved > 0 and compile_s < saved * typical_steps),
        "typical_steps": typical_steps,
        "max_abs_difference": float((reference - result).abs().max()),
    }


def bfloat16(world, target, alpha, num_particles, repeats, device, steps=40, spec="ambiguous") -> dict:
    """Autocast to bfloat16: speed, and its effect on predictions and Delta of level-set samples."""
    post = pls.sample(
        world,
        spec,
        alpha=alpha,
        num_particles=num_particles,
        warmup=steps // 2,
        steps=steps - steps // 2,
        seed=3,
        device=str(device),
        progress=False,
    )
    z = post.z.to(device)
    device_type = torch.device(device).type

    def low():
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return world.predict(z).float()

    with torch.no_grad():
        full, half = world.predict(z), low()
        times = interleaved({"float32": lambda: world.predict(z), "bfloat16": low}, repeats, device)
    target_cpu = target.cpu()
    return {
        "float32_ms": 1e3 * times["float32"],
        "bfloat16_ms": 1e3 * times["bfloat16"],
        "speedup": times["float32"] / times["bfloat16"],
        "delta_float32": metrics.delta(target_cpu, full.cpu()),
        "delta_bfloat16": metrics.delta(target_cpu, half.cpu()),
        "mean_abs_prediction_change": float((full - half).abs().mean()),
        "max_abs_prediction_change": float((full - half).abs().max()),
        "samples": f"final states of pls.sample(N={num_particles}, {steps} steps, target {spec})",
    }


def rendering(world, target, alpha, num_particles, repeats, device, chunks=(64, 256, 1024)) -> dict:
    _, _, z = _latents(world, target, alpha, num_particles)
    with torch.no_grad():
        images = world.decode(z)
        contenders = {"render": lambda: world.decode(z), "classify": lambda: world.classify(images)}
        original = render.CHUNK

        def chunked(size):
            def run():
                render.CHUNK = size
                try:
                    world.decode(z)
                finally:
                    render.CHUNK = original

            return run

        contenders.update({f"render_chunk_{size}": chunked(size) for size in chunks})
        times = interleaved(contenders, repeats, device)
    return {
        **{f"{name}_ms": 1e3 * value for name, value in times.items()},
        "render_share_of_forward": times["render"] / (times["render"] + times["classify"]),
        "current_chunk": render.CHUNK,
    }


def trace_overhead(world, target, alpha, num_particles, repeats, device) -> dict:
    lean, z_unconstrained, z = _latents(world, target, alpha, num_particles)
    traced = ParticleDensity(level_set_model, (world, target, alpha, num_particles), lean=False)
    with torch.no_grad():
        a, b = lean(z_unconstrained), traced(z_unconstrained)
        equal = all(torch.equal(x, y) for x, y in zip(a, b))
        times = interleaved(
            {
                "forward": lambda: world.classify(world.decode(z)),
                "lean": lambda: lean(z_unconstrained),
                "trace": lambda: traced(z_unconstrained),
            },
            repeats,
            device,
        )
    return {
        "forward_ms": 1e3 * times["forward"],
        "lean_ms": 1e3 * times["lean"],
        "trace_ms": 1e3 * times["trace"],
        "trace_over_forward": times["trace"] / times["forward"],
        "lean_over_forward": times["lean"] / times["forward"],
        "trace_over_lean": times["trace"] / times["lean"],
        "bitwise_equal": bool(equal),
    }


def chunking(world, target, alpha, num_particles, repeats, device, sizes=(256, 512, 1024)) -> dict:
    from pplevelset.worlds import chunks

    _, _, z = _latents(world, target, alpha, num_particles)
    original = chunks.CHUNK

    def with_chunk(size):
        def run():
            chunks.CHUNK = size
            try:
                with torch.no_grad():
                    return world.classify(world.decode(z))
            finally:
                chunks.CHUNK = original

        return run

    contenders = {"whole": with_chunk(10**12), **{str(size): with_chunk(size) for size in sizes}}
    with torch.no_grad():
        difference = float((contenders["whole"]() - with_chunk(original)()).abs().max())
    times = interleaved(contenders, repeats, device)
    return {
        "num_particles": num_particles,
        "whole_ms": 1e3 * times["whole"],
        **{f"chunk_{size}_ms": 1e3 * times[str(size)] for size in sizes},
        "default_chunk": original,
        "speedup_default": times["whole"] / times[str(original)] if str(original) in times else None,
        "max_abs_difference": difference,
    }


EXPERIMENTS = {
    "grad_mode": grad_mode,
    "layout": layout,
    "threads": threads,
    "compile": compiled,
    "bfloat16": bfloat16,
    "render": rendering,
    "chunk": chunking,
    "trace": trace_overhead,
}
