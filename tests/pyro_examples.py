"""Four plain Pyro models (no ``particles`` plate) and their exact posteriors, shared by
``tests/test_pyro_models.py`` and ``benchmarks/pyro_models.py``.

Each :class:`Example` holds the model, its arguments, and a function giving the exact posterior
mean and sd of named scalar quantities (``{"p_latent[1]": (mean, sd), ...}``), or ``None`` where
the answer is a stored long reference run (eight schools, ``tests/data/eight_schools_reference.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from scipy import stats

REFERENCE = Path(__file__).parent / "data" / "eight_schools_reference.json"


def beta_bernoulli(data):
    """Pyro's own random-walk test model (``tests/infer/mcmc/test_rwkernel.py``): two coins."""
    p_latent = pyro.sample("p_latent", dist.Beta(torch.tensor([1.1, 2.2]), torch.tensor([1.1, 2.2])))
    with pyro.plate("data", data.shape[0], dim=-2):
        pyro.sample("obs", dist.Bernoulli(p_latent), obs=data)


def normal_mean(y, sigma=2.0, prior_sd=10.0):
    """Conjugate normal mean: ``mu ~ N(0, prior_sd)``, ``y_i ~ N(mu, sigma)`` in a data plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, prior_sd))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def hierarchical_scale(y):
    """A constrained global and a local per datum: ``tau ~ LogNormal(0, 1)``, ``mu_i ~ N(0, tau)``,
    ``y_i ~ N(mu_i, 1)``."""
    tau = pyro.sample("tau", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        mu = pyro.sample("mu", dist.Normal(0.0, tau))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def eight_schools(sigma, y):
    """Eight schools, non-centred (Rubin 1981; Gelman et al., BDA 5.5)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


BETA_BERNOULLI_DATA = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 0], [1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.float)
NORMAL_DATA = torch.tensor([1.9, 3.1, 0.4, 2.7, 2.2, 4.0, 1.1, 2.6, 3.3, 1.5])
HIERARCHICAL_DATA = torch.tensor([2.1, -0.4, 3.5, 0.8, -2.6, 1.7])
SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def beta_bernoulli_exact() -> dict[str, tuple[float, float]]:
    """Beta(a + successes, b + failures) per coin."""
    successes = BETA_BERNOULLI_DATA.sum(0).double().numpy()
    a = np.array([1.1, 2.2]) + successes
    b = np.array([1.1, 2.2]) + len(BETA_BERNOULLI_DATA) - successes
    return {f"p_latent[{i}]": (float(stats.beta.mean(a[i], b[i])), float(stats.beta.std(a[i], b[i]))) for i in range(2)}


def normal_mean_exact(sigma=2.0, prior_sd=10.0) -> dict[str, tuple[float, float]]:
    y = NORMAL_DATA.double().numpy()
    precision = 1 / prior_sd**2 + len(y) / sigma**2
    return {"mu": (float(y.sum() / sigma**2 / precision), float(precision**-0.5))}


def hierarchical_scale_exact() -> dict[str, tuple[float, float]]:
    """Grid over log tau of ``LogNormal(tau) prod_i N(y_i; 0, tau^2 + 1)`` (mu integrated out);
    given tau, ``mu_i | y ~ N(s y_i, s)`` with shrinkage ``s = tau^2 / (tau^2 + 1)``."""
    y = HIERARCHICAL_DATA.double().numpy()
    log_tau = np.linspace(-12.0, 6.0, 200001)
    tau = np.exp(log_tau)
    # density of log tau: the LogNormal prior in log space is N(0, 1)
    log_post = stats.norm.logpdf(log_tau) + stats.norm.logpdf(y[:, None], 0.0, np.sqrt(tau**2 + 1)).sum(0)
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    moments = {"tau": _mean_sd(weights, tau)}
    shrink = tau**2 / (tau**2 + 1)
    for i, value in enumerate(y):
        mean = float(weights @ (shrink * value))
        variance = float(weights @ (shrink + (shrink * value) ** 2)) - mean**2
        moments[f"mu[{i}]"] = (mean, variance**0.5)
    return moments


def eight_schools_reference() -> dict[str, tuple[float, float]]:
    """Moments of the stored long NUTS run (see ``benchmarks/pyro_models.py --reference``)."""
    stored = json.loads(REFERENCE.read_text())["moments"]
    return {name: (entry["mean"], entry["sd"]) for name, entry in stored.items()}


def _mean_sd(weights: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    mean = float(weights @ values)
    return mean, float(np.sqrt(weights @ (values - mean) ** 2))


@dataclass(frozen=True)
class Example:
    """A model, its arguments, its exact (or reference) posterior moments, and the deterministic
    sites those moments name, as a function of the latent samples (MCMC does not record them)."""

    name: str
    model: Callable
    args: tuple
    exact: Callable[[], dict[str, tuple[float, float]]]
    derived: Callable[[dict], dict] = lambda samples: {}


EXAMPLES = {
    "beta_bernoulli": Example("beta_bernoulli", beta_bernoulli, (BETA_BERNOULLI_DATA,), beta_bernoulli_exact),
    "normal_mean": Example("normal_mean", normal_mean, (NORMAL_DATA,), normal_mean_exact),
    "hierarchical_scale": Example(
        "hierarchical_scale", hierarchical_scale, (HIERARCHICAL_DATA,), hierarchical_scale_exact
    ),
    "eight_schools": Example(
        "eight_schools",
        eight_schools,
        (SCHOOLS_SIGMA, SCHOOLS_Y),
        eight_schools_reference,
        lambda s: {"theta": s["mu"][..., None] + s["tau"][..., None] * s["eta"]},
    ),
}


def scalar_draws(example: Example, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"p_latent[1]": draws[..., 1], "mu": draws, ...}``: the quantities the exact moments name, from
    site samples whose leading dims are chains and draws and whose trailing dims are the site's own."""
    samples = {**samples, **example.derived(samples)}
    out = {}
    for name in example.exact():
        site, _, index = name.partition("[")
        value = samples[site]
        out[name] = value[..., int(index[:-1])] if index else value
    return out
