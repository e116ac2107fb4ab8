"""LevelSetPosterior: the result of a run — final states, traces, resampling, metrics, ArviZ export."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import torch
import xarray as xr

from pplevelset import metrics
from pplevelset.diagnostics import (
    BurnInVerdict,
    az,
    burn_in_check,
    convergence,
    population_convergence,
    run_warnings,
)
from pplevelset.worlds.base import World

POSTERIOR_VARIABLES = ("z", "prediction_probs")
OBSERVED = "target"  # the observed_data variable; the log_likelihood group is keyed the same way


class LevelSetPosterior:
    """Samples of ``p(z | prediction = target)`` from N particles, with their traces.

    ``traces`` maps names to CPU tensors with chains first (ArviZ's ``chain``) and steps second
    (``draw``): ``z`` ``(N, T, d)``, ``prediction_probs`` ``(N, T, L)``, ``log_likelihood`` and the
    sample stats ``lp``, ``acceptance_rate``, ``step_size`` (and any a kernel adds) ``(N, T)``.
    ``warmup_traces`` holds the statistics during warm-up. ``chains`` says what a chain is:
    ``"particles"`` (MCMC kernels) or ``"populations"`` (SMC, whose per-temperature statistics are
    in ``stages``). A resampled posterior has final states only.
    """

    def __init__(
        self,
        world: World,
        target: torch.Tensor,
        settings: dict[str, Any],
        z: torch.Tensor,
        final_predictions: torch.Tensor,
        traces: dict[str, torch.Tensor] | None = None,
        warmup_traces: dict[str, torch.Tensor] | None = None,
        elapsed_s: float = 0.0,
        stats: dict[str, Any] | None = None,
        indices: torch.Tensor | None = None,
        stages: dict[str, torch.Tensor] | None = None,
        chains: str = "particles",
    ):
        self.world = world
        self.target = target.detach().cpu()
        self.settings = dict(settings)
        self.z = z.detach().cpu()
        self._predictions = final_predictions.detach().cpu()
        self.traces = traces
        self.warmup_traces = warmup_traces
        self.elapsed_s = elapsed_s
        self.stats = dict(stats or {})
        self.indices = indices  # which particles a resampled posterior drew
        self.stages = stages  # SMC only: (populations, temperatures) beta, ess, acceptance_rate, step_size
        self.chains = chains

    def __len__(self) -> int:
        return self.z.shape[0]

    def __repr__(self) -> str:
        return (
            f"LevelSetPosterior(world={self.world.name!r}, target={self.settings.get('target')!r}, "
            f"samples={len(self)}, kernel={self.settings.get('kernel')!r}, delta={self.delta():.4f})"
        )

    # -- samples --------------------------------------------------------------------------------
    def predictions(self) -> torch.Tensor:
        """Classifier probabilities of the final states, ``(N, L)``."""
        return self._predictions

    def images(self, batch_size: int = 1024) -> torch.Tensor:
        """The final states decoded by the world (on the CPU), in batches to bound memory."""
        chunks = []
        with torch.no_grad():
            for start in range(0, len(self), batch_size):
                chunk = self.z[start : start + batch_size].to(self.world.device)
                chunks.append(self.world.decode(chunk).cpu())
        return torch.cat(chunks)

    def resample(self, n: int, seed: int = 0) -> LevelSetPosterior:
        """``n`` final states drawn uniformly with replacement (the paper's last step)."""
        if n < 1:
            raise ValueError("resample needs n >= 1")
        generator = torch.Generator().manual_seed(seed)
        index = torch.randint(len(self), (n,), generator=generator)
        return LevelSetPosterior(
            self.world,
            self.target,
            self.settings,
            self.z[index],
            self._predictions[index],
            elapsed_s=self.elapsed_s,
            stats=self.stats,
            indices=index if self.indices is None else self.indices[index],
            chains=self.chains,
        )

    # -- metrics --------------------------------------------------------------------------------
    def delta(self) -> float:
        """Average deviation from the target (paper Eq. 5)."""
        return metrics.delta(self.target, self._predictions)

    def hits(self, eps: float = 0.1) -> int:
        """Samples whose prediction is within total variation ``eps`` of the target."""
        return metrics.hits(self.target, self._predictions, eps)

    def confidence(self) -> dict[str, float]:
        return metrics.confidence(self.target, self._predictions)

    def distinct_samples(self) -> int:
        return metrics.distinct_samples(self.z)

    # -- diagnostics ----------------------------------------------------------------------------
    def burn_in(self) -> BurnInVerdict:
        """Did the chains still drift when sampling began? (See :func:`burn_in_check`.)"""
        traces = self._require_traces("burn_in")
        if self.chains == "populations":
            return BurnInVerdict(True, math.nan, math.nan, "no burn-in to check: SMC tempers from the prior")
        return burn_in_check(
            traces["log_likelihood"].numpy(),
            self.settings.get("warmup", 0),
            self.settings.get("kernel"),
            self.settings.get("start", "prior"),
        )

    def convergence(self) -> dict[str, float]:
        """R-hat and ESS of z with particles as chains; for the ensemble kernel also the ESS and
        autocorrelation time of the population's mean (:func:`population_convergence`), because
        its particles are not independent chains."""
        self._require_traces("convergence")
        idata = self.to_arviz()
        out = convergence(idata)
        if self.settings.get("kernel") == "ensemble":
            out.update(population_convergence(idata))
        return out

    def summary(self, keep: int | None = 64, seed: int = 0) -> dict[str, Any]:
        """The run's ``summary.json``: settings, Delta over ``keep`` resampled states, diagnostics."""
        kept = self.resample(keep, seed) if keep else self
        out: dict[str, Any] = {
            "world": self.world.name,
            "classes": list(self.world.classes),
            "target": [round(float(v), 8) for v in self.target],
            "target_spec": self.settings.get("target"),
        }
        keys: tuple[str, ...] = ("alpha", "kernel", "num_particles", "warmup", "steps", "seed", "device")
        if self.chains == "populations":
            keys += ("populations", "moves", "target_ess")
        if self.settings.get("kernel") == "ensemble":
            keys += ("rungs",)
        if self.settings.get("start", "prior") != "prior":  # chains started at a tempered run's particles
            keys += ("start", "moves", "target_ess")
        out.update({key: self.settings.get(key) for key in keys})
        out.update(likelihood=self.settings.get("likelihood", "dirichlet"), sigma=self.settings.get("sigma"))
        out.update(
            {
                "elapsed_s": round(self.elapsed_s, 3),
                "keep": len(kept),
                "delta": kept.delta(),
                "delta_all_particles": self.delta(),
                "mean_prediction": {name: float(p) for name, p in zip(self.world.classes, kept.predictions().mean(0))},
                "confidence": kept.confidence(),
                "hits_tv_0.1": self.hits(0.1),
                "distinct_samples": kept.distinct_samples(),
            }
        )
        if self.traces is not None:
            verdict = self.burn_in()
            out.update(
                {
                    "acceptance_rate": float(self.traces["acceptance_rate"].mean()),
                    **{key: _finite_or_none(value) for key, value in self.convergence().items()},
                    "burn_in_ok": bool(verdict.ok),
                    "burn_in": verdict.message,
                }
            )
            out["warnings"] = run_warnings(
                str(self.settings.get("kernel", "")),
                out["acceptance_rate"],
                out.get("rhat_max"),
                self.settings.get("warmup"),
                int(self.settings.get("rungs") or 1),
                self.settings.get("alpha"),
                out.get("tau_population_max"),
                self.traces["z"].shape[1],
                self.settings.get("start", "prior"),
            )
        out.update(self.stats)
        out["versions"] = _versions()
        return out

    # -- ArviZ ----------------------------------------------------------------------------------
    def to_arviz(self) -> az.InferenceData:
        """InferenceData with particles (SMC: populations) as ``chain`` and steps as ``draw``.

        Groups: ``posterior`` (``z``, ``prediction_probs``), ``log_likelihood`` (``target``, keyed
        like ``observed_data``, so ``az.loo``/``az.waic`` find it), ``sample_stats`` (``lp``,
        ``acceptance_rate``, ``step_size`` and any kernel statistic), ``warmup_sample_stats`` when
        warm-up was recorded, ``observed_data`` (``target``), and for SMC ``smc_stages``: beta,
        ESS, acceptance and step size per population (``chain``) and temperature (``stage``).
        """
        traces = self._require_traces("to_arviz")
        classes = [str(name) for name in self.world.classes]
        coords = {"z_dim": np.arange(self.z.shape[-1]), "class": classes}
        dims = {"z": ["z_dim"], "prediction_probs": ["class"], OBSERVED: ["class"]}
        numpy = lambda tensors, names: {name: tensors[name].numpy() for name in names}
        statistics = lambda tensors: [name for name in tensors if name not in POSTERIOR_VARIABLES + ("log_likelihood",)]
        kwargs: dict[str, Any] = {}
        if self.warmup_traces:
            kwargs = {
                "warmup_sample_stats": numpy(self.warmup_traces, statistics(self.warmup_traces)),
                "save_warmup": True,
            }
        attrs = self._attrs()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="More chains")  # many particles, few steps: normal here
            idata = az.from_dict(
                posterior=numpy(traces, POSTERIOR_VARIABLES),
                sample_stats=numpy(traces, statistics(traces)),
                log_likelihood={OBSERVED: traces["log_likelihood"].numpy()},
                observed_data={OBSERVED: self.target.numpy()},
                coords=coords,
                dims=dims,
                attrs=attrs,
                posterior_attrs=attrs,
                **kwargs,
            )
        if self.stages is not None:
            stages = xr.Dataset({name: (("chain", "stage"), value.numpy()) for name, value in self.stages.items()})
            idata.add_groups({"smc_stages": stages}, warn_on_custom_groups=False)
        return idata

    def _attrs(self) -> dict[str, Any]:
        attrs = {key: value for key, value in self.settings.items() if isinstance(value, (int, float, str))}
        attrs["world"] = self.world.name
        attrs["chains"] = self.chains
        attrs["elapsed_s"] = self.elapsed_s
        attrs["checkpoint_sha256"] = json.dumps(self.world.checkpoints)
        attrs["inference_library"] = "pplevelset"
        attrs["inference_library_version"] = _versions()["pplevelset"]
        if "log_evidence" in self.stats:
            attrs["log_evidence"] = self.stats["log_evidence"]
        return attrs

    def _require_traces(self, what: str) -> dict[str, torch.Tensor]:
        if self.traces is None:
            raise ValueError(f"{what} needs traces; a resampled posterior keeps final states only")
        return self.traces


def _finite_or_none(value: float):
    return float(value) if math.isfinite(value) else None


def _versions() -> dict[str, str]:
    import pyro

    from pplevelset.version import __version__

    return {"pplevelset": __version__, "torch": torch.__version__, "pyro": pyro.__version__}
