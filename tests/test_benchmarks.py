"""The benchmark script runs end to end at tiny sizes and writes results.json in the promised layout.

No timing is asserted: the numbers depend on the machine and its load.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pplevelset as pls
from pplevelset.infer.mcmc import initial_positions
from pplevelset.model import ParticleDensity, level_set_model

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"rwmh", "ensemble", "nuts", "pyro_nuts_single", "pyro_rw_single", "prior_rejection", "smc"}


def test_benchmark_smoke_writes_the_results_layout(tmp_path):
    out_json, out_md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--tiny",
        "--worlds",
        "toy",
        "--budget",
        "0.3",
        "--sections",
        "compare",
        "floor",
        "--out-json",
        str(out_json),
        "--out-md",
        str(out_md),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out_json.read_text())
    for target in ("ambiguous", "two_class"):
        block = results["toy"][target]
        for key in ("ess_per_s", "hits_per_s", "rhat"):
            assert set(block[key]) == METHODS, key
        assert all(isinstance(v, (int, float)) and v >= 0 for v in block["ess_per_s"].values())
        assert all(isinstance(v, (int, float)) and v >= 0 for v in block["hits_per_s"].values())
        assert all(v is None or isinstance(v, float) for v in block["rhat"].values())
    assert set(results["floor"]["toy"]) == {"100"} and results["floor"]["toy"]["100"] > 0
    machine = results["machine"]
    for key in ("cpu_model", "cpu_cores", "torch_threads", "torch", "pyro", "load_average_start", "command"):
        assert key in machine
    text = out_md.read_text()
    assert "Effective samples and hits per second" in text and "The floor" in text


@pytest.mark.parametrize("world_name", ["toy", "houses", "houses-circles", "mnist-vae"])
def test_direct_density_equals_the_traced_one(world_name):
    """ParticleDensity's direct path for level_set_model gives the trace path's numbers, bit for bit,
    including the Jacobian of a constrained prior and states far outside the data."""
    world = pls.load_world(world_name)
    target = pls.parse_target("ambiguous", world.classes)
    direct = ParticleDensity(level_set_model, (world, target, 10.0, 64))
    traced = ParticleDensity(level_set_model, (world, target, 10.0, 64), lean=False)
    assert direct.lean and not traced.lean
    with torch.no_grad():
        z = initial_positions(traced, torch.Generator().manual_seed(0))
        z = torch.cat([z[:-2], torch.full_like(z[-2:], 40.0)])  # far out: extreme probabilities, edge of supports
        a, b = direct(z), traced(z)
    for name in a._fields:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_houses_classifier_in_chunks_matches_one_batch():
    from pplevelset.worlds.chunks import CHUNK

    world = pls.load_world("houses")
    z = world.prior().sample((CHUNK + 5,))
    with torch.no_grad():
        images = world.decode(z)
        whole = torch.softmax(world.classifier(images), -1)
        torch.testing.assert_close(world.classify(images), whole, atol=1e-6, rtol=0)


def test_direct_density_rejects_nan_like_the_traced_one():
    from conftest import HoleWorld

    world = HoleWorld()
    target = pls.parse_target("ambiguous", world.classes)
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    with torch.no_grad():
        a = ParticleDensity(level_set_model, (world, target, 10.0, 2))(z)
        b = ParticleDensity(level_set_model, (world, target, 10.0, 2), lean=False)(z)
    np.testing.assert_array_equal(a.log_likelihood.numpy(), b.log_likelihood.numpy())
    assert torch.isnan(a.log_likelihood[1])


def test_fast_mnist_decoder_equals_the_trained_networks():
    """The worlds' sub-pixel, channels-last, chunked forward pass is the trained networks' function."""
    from pplevelset.worlds.chunks import CHUNK
    from pplevelset.worlds.mnist.world import fast_forward

    z = torch.randn(2 * CHUNK + 3, 5, generator=torch.Generator().manual_seed(0))  # several chunks
    vae, gan = pls.load_world("mnist-vae"), pls.load_world("mnist-gan")
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z), vae.vae.decode(z), atol=1e-5, rtol=0)
        torch.testing.assert_close(gan.decode(z), gan.generator(z), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            torch.sigmoid(fast_forward(vae.vae.decoder, z)), vae.vae.decode(z), atol=1e-5, rtol=0
        )
        images = vae.vae.decode(z)
        torch.testing.assert_close(vae.classify(images), torch.softmax(vae.classifier(images), -1), atol=1e-6, rtol=0)
    z = z[:7].clone()
    z.requires_grad_(True)
    vae.predict(z)[:, 1].sum().backward()  # differentiable end to end (NUTS)
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
