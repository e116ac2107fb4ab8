"""Run directories: written atomically, read back, summarised and diagnosed, all in this module.

A run directory holds ``summary.json``, ``posterior.nc`` (ArviZ), ``samples.png`` and
``trace.png``. It is written into a temporary sibling folder renamed into place at the end, so an
interrupted run leaves no half-written result, and an existing result is replaced only when the
caller says ``overwrite`` (and only once the new one is complete).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from pplevelset.diagnostics import BurnInVerdict, az, burn_in_check
from pplevelset.errors import UserInputError
from pplevelset.files import umask, write_json


def check_writable(out: str | Path, overwrite: bool) -> Path:
    """Fail early (before any sampling) if ``out`` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} exists and is not a directory")
    return out


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``out``, on error it is removed."""
    out = check_writable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes it private; the result should look like any folder
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.replace(old / out.name)
            tmp.replace(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_run(posterior, out: str | Path, keep: int = 64, seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``summary.json``, ``posterior.nc``, ``samples.png`` and ``trace.png`` into ``out``."""
    from pplevelset.plotting import diagnostics_figure, samples_figure, save_figure

    summary = posterior.summary(keep=keep, seed=seed)
    kept = posterior.resample(keep, seed)
    with atomic_directory(out, overwrite) as tmp:
        write_json(tmp / "summary.json", summary)
        posterior.to_arviz().to_netcdf(str(tmp / "posterior.nc"))
        save_figure(samples_figure(posterior, kept), tmp / "samples.png")
        save_figure(diagnostics_figure(posterior), tmp / "trace.png")
    return summary


def traces_from_arviz(idata: az.InferenceData) -> tuple[dict, dict]:
    """``(traces, warmup_traces)`` as arrays with particles first, from a run's InferenceData."""
    traces = {name: idata.posterior[name].values for name in ("z",) if name in idata.posterior}
    traces.update({name: idata.sample_stats[name].values for name in idata.sample_stats.data_vars})
    if "log_likelihood" in idata.groups():  # older runs kept it in sample_stats
        traces["log_likelihood"] = idata.log_likelihood["target"].values
    warmup = {}
    if "warmup_sample_stats" in idata.groups():
        warmup = {name: idata.warmup_sample_stats[name].values
                  for name in idata.warmup_sample_stats.data_vars}
    return traces, warmup


def smc_report(stages: dict) -> str:
    """Per population: temperatures used, the ESS and acceptance at each, and log Z if recorded."""
    lines = ["SMC temperatures (beta: ESS before resampling, mean MH acceptance):"]
    for population in range(stages["beta"].shape[0]):
        beta = stages["beta"][population]
        used = int(np.argmax(beta >= 1.0)) + 1 if (beta >= 1.0).any() else beta.size
        cells = [f"{b:.3g}: {e:.0f}, {a:.2f}" for b, e, a in
                 zip(beta[:used], stages["ess"][population][:used], stages["acceptance_rate"][population][:used])]
        lines.append(f"  population {population}: {used} temperatures | " + " | ".join(cells))
    return "\n".join(lines)


def diagnose_run(run_dir) -> str:
    """Read a run directory, write ``rank.png`` and ``trace.png`` into it, return the report text."""
    import matplotlib.pyplot as plt

    from pplevelset.plotting import save_figure, smc_figure, trace_figure

    run_dir = Path(run_dir)
    for name in ("summary.json", "posterior.nc"):
        if not (run_dir / name).is_file():
            raise UserInputError(f"{run_dir} is not a run directory: {name} is missing")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        idata = az.from_netcdf(str(run_dir / "posterior.nc"))
    except Exception as exc:
        raise UserInputError(f"cannot read the run in {run_dir}: {type(exc).__name__}: {exc}") from None
    traces, warmup = traces_from_arviz(idata)
    table = az.summary(idata, var_names=["z"], kind="all", round_to=3)
    smc = "smc_stages" in idata.groups()
    if smc:
        stages = {name: idata.smc_stages[name].values for name in idata.smc_stages.data_vars}
        verdict = BurnInVerdict(True, math.nan, math.nan, "no burn-in to check: SMC tempers from the prior")
        save_figure(smc_figure(stages), run_dir / "trace.png")
    else:
        verdict = burn_in_check(traces["log_likelihood"], int(idata.posterior.attrs.get("warmup") or 0))
        save_figure(trace_figure(traces, warmup, verdict, thin=int(idata.posterior.attrs.get("thin", 1))),
                    run_dir / "trace.png")
    few = idata.posterior[["z"]].isel(chain=slice(0, 8))
    axes = az.plot_rank(few, var_names=["z"])
    save_figure(np.atleast_1d(axes).flat[0].get_figure(), run_dir / "rank.png")
    plt.close("all")

    layout = ("populations as chains, their final particles as draws" if smc else "particles as chains, steps as draws")
    lines = [format_summary(summary), "", f"ArviZ summary of z ({idata.posterior.sizes['chain']} chains x "
             f"{idata.posterior.sizes['draw']} draws: {layout}):", table.to_string(), ""]
    if verdict.message != summary.get("burn_in"):
        lines.append(verdict.message)
    if smc:
        lines.append(smc_report(stages))
    if "warmup_sample_stats" in idata.groups():
        accept = float(idata.warmup_sample_stats["acceptance_rate"][:, -max(1, idata.warmup_sample_stats.sizes['draw'] // 10):].mean())
        lines.append(f"acceptance at the end of warm-up {accept:.3f} (the adaptation aims at 0.234 for rwmh)")
    lines.append(f"wrote {run_dir}/trace.png and {run_dir}/rank.png")
    return "\n".join(lines)


def format_summary(s: dict) -> str:
    """The few lines of ``summary.json`` a person reads first."""
    target = ", ".join(f"{c} {p:.3g}" for c, p in zip(s["classes"], s["target"]))
    mean = ", ".join(f"{c} {p:.3f}" for c, p in s["mean_prediction"].items())
    conf = s["confidence"]
    schedule = (f"{s['num_temperatures']} temperatures x {s['moves']} moves, {s['populations']} populations"
                if s["kernel"] == "smc" else f"{s['warmup']} warm-up + {s['steps']} steps")
    lines = [
        f"{s['world']}: target {s['target_spec']} ({target}), alpha {s['alpha']:g}, {s['kernel']}, "
        f"{s['num_particles']} particles, {schedule}, {s['elapsed_s']:.1f} s",
        f"Delta {s['delta']:.4f} over {s['keep']} resampled states; mean prediction {mean}",
        f"confidence in the target's top class: mean {conf['mean']:.3f}, min {conf['min']:.3f}, max {conf['max']:.3f}",
        f"hits (total variation < 0.1): {s['hits_tv_0.1']} of {s['num_particles']} particles; "
        f"distinct among kept: {s['distinct_samples']}",
    ]
    if "acceptance_rate" in s:
        rhat = "n/a" if s.get("rhat_max") is None else f"{s['rhat_max']:.3f}"
        ess = "n/a" if s.get("ess_bulk_min") is None else f"{s['ess_bulk_min']:.0f}"
        lines.append(f"acceptance {s['acceptance_rate']:.3f}, R-hat max {rhat}, ESS bulk min {ess}")
        lines.append(s["burn_in"])
        lines.extend(f"warning: {text}" for text in s.get("warnings", []))
    if "log_evidence" in s:
        lines.append(f"log evidence log p(target) = {s['log_evidence']:.4f} "
                     f"(populations: {', '.join(f'{v:.3f}' for v in s['log_evidence_per_population'])})")
    return "\n".join(lines)
