"""Run directories: written atomically, never replacing what was not checked, resumable.

A run directory holds ``summary.json``, ``posterior.nc`` (ArviZ), ``samples.png``, ``trace.png``
and the marker ``.pplevelset-run``. A run works in a visible staging folder ``<out>.partial`` next
to ``<out>``, created exclusively (``mkdir``) and locked (``flock``) before anything is computed, so
an unwritable location, a second run on the same ``--out`` and a left-over interrupted run are all
one-line errors before work starts. The staging folder holds the run's settings (``job.json``),
its checkpoints (:mod:`pplevelset.infer.resume`) and finally the result, which is published with
one ``rename`` that never replaces anything unchecked: without ``overwrite`` a target that exists
at publish time is an error and the result moves to ``<out>.unpublished-<time>``; with
``overwrite`` only a previous run directory (one with the marker, or the files of a run and nothing
else) is replaced, atomically exchanged with the new one where Linux allows (``renameat2``).
The staging folder is removed on every exit path, except after an interrupt of a resumable run,
when it is the checkpoint ``pplevelset sample --resume`` continues from.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pplevelset.diagnostics import BurnInVerdict, az, burn_in_check, convergence, pooled_convergence
from pplevelset.errors import UserInputError
from pplevelset.files import umask, write_json
from pplevelset.infer.resume import describe_signal
from pplevelset.version import __version__

MARKER = ".pplevelset-run"
RUN_FILES = {"summary.json", "posterior.nc", "samples.png", "trace.png", "rank.png", MARKER}
PARTIAL = ".partial"
JOB = "job.json"
LOCK = "lock"
RESULT = "result"


# -- what may be replaced ---------------------------------------------------------------------
def is_run_directory(path: str | Path) -> bool:
    """A folder this package wrote: it has the marker, or (older runs and reports) holds only the
    files of a run (``summary.json`` and friends) or a report (``report.md`` beside figures)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / MARKER).is_file():
        return True
    names = {entry.name for entry in path.iterdir()}
    if "summary.json" in names and names <= RUN_FILES:
        return True
    return "report.md" in names and all((path / name).is_file() for name in names)


def _name_of(out: Path) -> Path:
    """``out`` made absolute (``.`` and ``..`` resolved, so it has a name), refused if it has none."""
    absolute = Path(os.path.abspath(out))
    if not absolute.name:
        raise UserInputError(f"--out {out} is not a folder name a run can be written to")
    return absolute


def check_writable(out: str | Path, overwrite: bool) -> Path:
    """Fail early (before any sampling) if ``out`` exists and may not be replaced."""
    out = Path(out)
    absolute = _name_of(out)
    if absolute.exists() or absolute.is_symlink():
        if not overwrite:
            raise UserInputError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
        if not absolute.is_dir() or absolute.is_symlink():
            raise UserInputError(f"{out} exists and is not a directory; it is not replaced")
        if not is_run_directory(absolute):
            raise UserInputError(
                f"{out} is not a pplevelset run directory (no {MARKER}); --overwrite replaces "
                "only previous runs, so choose another --out"
            )
    return out


# -- renames that never replace unchecked -----------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100
_renameat2: Any
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (OSError, AttributeError):  # not Linux, or glibc < 2.28
    _renameat2 = None


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2``; False where the system or file system does not offer it."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``; ``FileExistsError`` if ``dst`` exists (nothing replaced)."""
    if _rename2(src, dst, _RENAME_NOREPLACE):
        return
    os.mkdir(dst)  # FileExistsError if taken; then rename replaces only this empty folder of ours
    try:
        os.rename(src, dst)
    except OSError as exc:  # someone wrote into it meanwhile: leave theirs alone
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        with contextlib.suppress(OSError):
            os.rmdir(dst)
        raise


def _exchange(src: Path, dst: Path, holding: Path) -> None:
    """Swap ``src`` and ``dst`` (the old ``dst`` ends at ``src``), atomically where possible."""
    if _rename2(src, dst, _RENAME_EXCHANGE):
        return
    os.rename(dst, holding)
    try:
        rename_noreplace(src, dst)
    except OSError:
        os.rename(holding, dst)
        raise
    os.rename(holding, src)


# -- the staging folder -----------------------------------------------------------------------
class Staging:
    """``<out>.partial``: created exclusively and locked for the life of the process that runs."""

    def __init__(self, folder: Path, out: Path, shown: str):
        self.folder, self.out, self.shown = folder, out, shown
        self._lock: int | None = None

    @property
    def result(self) -> Path:
        return self.folder / RESULT

    @classmethod
    def create(cls, out: str | Path, overwrite: bool, job: dict | None = None) -> Staging:
        """Check ``out``, then make and lock its staging folder, before any work."""
        check_writable(out, overwrite)
        absolute = _name_of(Path(out))
        folder = absolute.parent / (absolute.name + PARTIAL)
        try:
            absolute.parent.mkdir(parents=True, exist_ok=True)
            if not absolute.parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        except OSError as exc:
            raise UserInputError(
                f"cannot write the run next to {out}: {exc.strerror or exc} ({absolute.parent})"
            ) from None
        try:
            os.mkdir(folder)
        except FileExistsError:
            raise UserInputError(cls._busy_or_left(folder, out)) from None
        except OSError as exc:
            raise UserInputError(
                f"cannot write the run next to {out}: {exc.strerror or exc} ({absolute.parent})"
            ) from None
        staging = cls(folder, absolute, str(out))
        try:
            os.chmod(folder, 0o777 & ~umask())
            if not staging._acquire():
                raise UserInputError(f"another pplevelset run took {folder} at the same moment; choose another --out")
            write_json(folder / JOB, dict(job or {}, out=str(absolute), shown=str(out), overwrite=bool(overwrite)))
        except BaseException:
            staging.remove()
            raise
        return staging

    @classmethod
    def open(cls, folder: str | Path) -> tuple[Staging, dict]:
        """The staging folder of an interrupted run (or its ``--out``), locked, and its job."""
        folder = Path(folder)
        if (
            not (folder / JOB).is_file()
            and Path(
                str(folder).rstrip("/") + PARTIAL,
            ).is_dir()
        ):
            folder = Path(str(folder).rstrip("/") + PARTIAL)
        try:
            job = json.loads((folder / JOB).read_text())
            out, shown = Path(job["out"]), str(job["shown"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(
                f"{folder} is not the folder of an interrupted pplevelset run ({JOB} is missing or unreadable)"
            ) from None
        staging = cls(folder, out, shown)
        if not staging._acquire():
            raise UserInputError(cls._busy_or_left(folder, shown))
        return staging, job

    @staticmethod
    def _busy_or_left(folder: Path, out) -> str:
        pid = _lock_holder(folder)
        if pid is not None:
            return f"another pplevelset run (pid {pid}) is writing {out}; wait for it or choose another --out"
        return (
            f"{folder} is left from an interrupted run; continue it with "
            f"`pplevelset sample --resume {folder}` or delete it"
        )

    def _acquire(self) -> bool:
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd
        return True

    def release(self) -> None:
        """Keep the folder (the checkpoint of an interrupted run), drop any half-written result."""
        shutil.rmtree(self.result, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def remove(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def publish(self, overwrite: bool) -> None:
        """Move the finished result to ``out``; never replaces anything that is not a run."""
        (self.result / MARKER).write_text(json.dumps({"pplevelset": __version__}) + "\n")
        try:
            rename_noreplace(self.result, self.out)
            return
        except FileExistsError:
            pass
        if overwrite and is_run_directory(self.out):
            _exchange(self.result, self.out, self.folder / "replaced")
            shutil.rmtree(self.result, ignore_errors=True)  # the previous run, swapped out
            return
        kept = self._set_aside()
        why = (
            "is not a pplevelset run directory, so --overwrite does not replace it"
            if overwrite
            else "appeared while this run was working and is not replaced without --overwrite"
        )
        raise UserInputError(f"{self.shown} {why}; the result is in {kept}/")

    def _set_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for attempt in range(100):
            kept = self.out.parent / f"{self.out.name}.unpublished-{stamp}{'' if not attempt else f'-{attempt}'}"
            try:
                rename_noreplace(self.result, kept)
                return kept
            except FileExistsError:
                continue
        raise UserInputError(f"could not set the result aside next to {self.shown}")


def _lock_holder(folder: Path) -> int | None:
    """The pid holding ``folder``'s lock, or None if no live process holds it."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            return int(os.pread(fd, 32, 0).decode() or 0) or -1
        except ValueError:
            return -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success it becomes ``out`` (see :meth:`Staging.publish`), on
    any error or interrupt it is removed."""
    from pplevelset.infer.resume import stop_on_signals

    with stop_on_signals() as stop:  # a signal while writing finishes the write, then stops
        staging = Staging.create(out, overwrite)
        try:
            staging.result.mkdir()
            yield staging.result
            staging.publish(overwrite)
        finally:
            staging.remove()
    if stop.requested:
        raise KeyboardInterrupt(f"interrupted while writing {out}; it was completed first")


def write_run(posterior, folder: Path, keep: int = 64, seed: int = 0) -> dict:
    """``summary.json``, ``posterior.nc``, ``samples.png`` and ``trace.png`` into ``folder``."""
    from pplevelset.plotting import diagnostics_figure, samples_figure, save_figure

    summary = posterior.summary(keep=keep, seed=seed)
    kept = posterior.resample(keep, seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "summary.json", summary)
    posterior.to_arviz().to_netcdf(str(folder / "posterior.nc"))
    save_figure(samples_figure(posterior, kept), folder / "samples.png")
    save_figure(diagnostics_figure(posterior), folder / "trace.png")
    return summary


def save_run(posterior, out: str | Path, keep: int = 64, seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``summary.json``, ``posterior.nc``, ``samples.png`` and ``trace.png`` into ``out``."""
    from pplevelset.infer.config import check_keep

    check_keep(keep)
    with atomic_directory(out, overwrite) as tmp:
        summary = write_run(posterior, tmp, keep, seed)
    return summary


# -- a whole run: staging, checkpoints, signals, publish ---------------------------------------
def sample_to_directory(
    config,
    out: str | Path,
    *,
    world_spec: str,
    overwrite: bool = False,
    keep: int = 64,
    every_steps: int | None = None,
    every_seconds: float | None = 60.0,
    staging: Staging | None = None,
) -> dict:
    """Run ``config`` into the run directory ``out``; see the module docstring for the guarantees.

    rwmh and ensemble runs save a checkpoint into the staging folder every ``every_steps`` steps
    (else every ``every_seconds`` seconds); SIGINT or SIGTERM stops them at the next step boundary
    with a checkpoint and :class:`~pplevelset.infer.resume.RunInterrupted`, whose message says how
    to resume. Other kernels stop at once and leave nothing behind. ``staging`` (from
    :func:`open_interrupted`) continues an interrupted run.
    """
    from pplevelset.infer.config import check_keep
    from pplevelset.infer.driver import make_checkpoints, run
    from pplevelset.infer.resume import CHECKPOINT, RESUMABLE_KERNELS, RunInterrupted, stop_on_signals

    check_keep(keep)
    resumable = config.kernel in RESUMABLE_KERNELS
    resuming = staging is not None
    job = {
        "world": world_spec,
        "target": config.target_spec,
        "keep": keep,
        "every_steps": every_steps,
        "every_seconds": every_seconds,
        "settings": {**config.settings(), "step_size": config.step_size},
    }
    with stop_on_signals(deferred=resumable) as stop:
        staging = staging or Staging.create(out, overwrite, job)
        keep_folder = False
        try:
            checkpoints = None
            if resumable:
                has_checkpoint = (staging.folder / CHECKPOINT).is_file()
                checkpoints = make_checkpoints(
                    config, staging.folder, every_steps, every_seconds, resume=resuming and has_checkpoint
                )
                checkpoints.stop = stop
            posterior = run(config, checkpoints)
            stop.deferred = True  # from here a signal lets the result finish writing first
            summary = write_run(posterior, staging.result, keep, config.seed)
            staging.publish(overwrite)
        except RunInterrupted as exc:
            if resumable and (staging.folder / CHECKPOINT).is_file():
                keep_folder = True
                done = f"stopped at step {exc.step} of {exc.total}" if exc.step is not None else "stopped"
                exc.message = (
                    f"{describe_signal(exc.signum)}: {done}; the checkpoint is in {staging.folder}/; "
                    f"continue with: pplevelset sample --resume {staging.folder}"
                )
            else:
                why = "" if resumable else f" (the {config.kernel} kernel cannot resume)"
                exc.message = f"{describe_signal(exc.signum)}: stopped{why}; nothing was written"
            raise
        finally:
            if keep_folder:
                staging.release()
            else:
                staging.remove()
    if stop.requested is not None:
        raise RunInterrupted(
            f"{describe_signal(stop.requested)} while writing the result; "
            f"it was completed first: wrote {staging.shown}/",
            stop.requested,
        )
    return summary


def open_interrupted(folder: str | Path):
    """``(staging, job, config)`` of the interrupted run in ``folder`` (its ``<out>.partial``, or
    its ``--out``), locked, with the configuration rebuilt and checked as a new run's would be."""
    from pplevelset.infer.config import RunConfig, SMCOptions
    from pplevelset.model import DEFAULT_SIGMA

    staging, job = Staging.open(folder)
    try:
        settings = job["settings"]
        smc = SMCOptions(settings.get("populations", 4), settings.get("moves", 10), settings.get("target_ess", 0.5))
        config = RunConfig.build(
            job["world"],
            job["target"],
            alpha=settings["alpha"],
            kernel=settings["kernel"],
            num_particles=settings["num_particles"],
            warmup=settings["warmup"] or 0,
            steps=settings["steps"] or 1,
            thin=settings["thin"],
            seed=settings["seed"],
            device=settings["device"],
            step_size=settings.get("step_size"),
            smc=smc,
            likelihood=settings.get("likelihood", "dirichlet"),
            sigma=settings.get("sigma", DEFAULT_SIGMA),
            rungs=settings.get("rungs", 1),
            start=settings.get("start", "prior"),
        )
        if job.get("overwrite") is not True:
            check_writable(staging.out, False)
    except (KeyError, TypeError):
        staging.release()
        raise UserInputError(f"{staging.folder}/{JOB} is malformed; delete the folder and start again") from None
    except BaseException:
        staging.release()
        raise
    return staging, job, config


def traces_from_arviz(idata: az.InferenceData) -> tuple[dict, dict]:
    """``(traces, warmup_traces)`` as arrays with particles first, from a run's InferenceData."""
    traces = {name: idata.posterior[name].values for name in ("z",) if name in idata.posterior}
    traces.update({name: idata.sample_stats[name].values for name in idata.sample_stats.data_vars})
    if "log_likelihood" in idata.groups():  # older runs kept it in sample_stats
        traces["log_likelihood"] = idata.log_likelihood["target"].values
    warmup = {}
    if "warmup_sample_stats" in idata.groups():
        warmup = {name: idata.warmup_sample_stats[name].values for name in idata.warmup_sample_stats.data_vars}
    return traces, warmup


def smc_report(stages: dict) -> str:
    """Per population: temperatures used, the ESS and acceptance at each, and log Z if recorded."""
    lines = ["SMC temperatures (beta: ESS before resampling, mean MH acceptance):"]
    for population in range(stages["beta"].shape[0]):
        beta = stages["beta"][population]
        used = int(np.argmax(beta >= 1.0)) + 1 if (beta >= 1.0).any() else beta.size
        cells = [
            f"{b:.3g}: {e:.0f}, {a:.2f}"
            for b, e, a in zip(
                beta[:used], stages["ess"][population][:used], stages["acceptance_rate"][population][:used]
            )
        ]
        lines.append(f"  population {population}: {used} temperatures | " + " | ".join(cells))
    return "\n".join(lines)


def read_run(run_dir) -> tuple[Any, az.InferenceData]:
    """A run directory's ``summary.json`` (as parsed) and ``posterior.nc``, or one
    :class:`UserInputError` line saying which is missing or unreadable."""
    run_dir = Path(run_dir)
    for name in ("summary.json", "posterior.nc"):
        if not (run_dir / name).is_file():
            raise UserInputError(f"{run_dir} is not a run directory: {name} is missing")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        idata = az.from_netcdf(str(run_dir / "posterior.nc"))
    except Exception as exc:
        raise UserInputError(
            f"cannot read the run in {run_dir}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        ) from None
    return summary, idata


def diagnose_run(run_dir, run: tuple[Any, az.InferenceData] | None = None) -> str:
    """Read a run directory (or take ``run``, what :func:`read_run` read from it), write
    ``rank.png`` and ``trace.png`` into it, return the report text.

    Everything is read and checked before anything is written: a malformed ``summary.json`` or
    ``posterior.nc`` is one :class:`UserInputError` line and leaves the folder as it was."""
    import matplotlib.pyplot as plt

    from pplevelset.plotting import save_figure, smc_figure, trace_figure

    run_dir = Path(run_dir)
    summary, idata = run if run is not None else read_run(run_dir)
    try:
        headline = format_summary(summary)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise UserInputError(
            f"{run_dir}/summary.json is not a run summary ({type(exc).__name__}: {exc}); it may be damaged"
        ) from None
    try:
        traces, warmup = traces_from_arviz(idata)
        table = az.summary(idata, var_names=["z"], kind="all", round_to=3)
        smc = "smc_stages" in idata.groups()
        if smc:
            stages = {name: idata.smc_stages[name].values for name in idata.smc_stages.data_vars}
            verdict = BurnInVerdict(True, math.nan, math.nan, "no burn-in to check: SMC tempers from the prior")
            trace = smc_figure(stages)
        else:
            verdict = burn_in_check(
                traces["log_likelihood"],
                int(idata.posterior.attrs.get("warmup") or 0),
                idata.posterior.attrs.get("kernel"),
                idata.posterior.attrs.get("start", "prior"),
            )
            trace = trace_figure(traces, warmup, verdict, thin=int(idata.posterior.attrs.get("thin", 1)))
        few = idata.posterior[["z"]].isel(chain=slice(0, 8))
        axes = az.plot_rank(few, var_names=["z"])
        rank = np.atleast_1d(axes).flat[0].get_figure()
        chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
        warmup_accept = None
        if "warmup_sample_stats" in idata.groups():
            stats = idata.warmup_sample_stats
            warmup_accept = float(stats["acceptance_rate"][:, -max(1, stats.sizes["draw"] // 10) :].mean())
    except Exception as exc:
        plt.close("all")
        raise UserInputError(
            f"{run_dir}/posterior.nc is not a run's InferenceData ({type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0]}); it may be damaged"
        ) from None
    save_figure(trace, run_dir / "trace.png")
    save_figure(rank, run_dir / "rank.png")
    plt.close("all")

    layout = "populations as chains, their final particles as draws" if smc else "particles as chains, steps as draws"
    lines = [headline, "", f"ArviZ summary of z ({chains} chains x {draws} draws: {layout}):", table.to_string(), ""]
    if verdict.message != summary.get("burn_in"):
        lines.append(verdict.message)
    if smc:
        lines.append(smc_report(stages))
    if warmup_accept is not None:
        lines.append(f"acceptance at the end of warm-up {warmup_accept:.3f} (the adaptation aims at 0.234 for rwmh)")
    lines.append(f"wrote {run_dir}/trace.png and {run_dir}/rank.png")
    return "\n".join(lines)


COMPARED = ("world", "target_spec", "alpha", "likelihood", "sigma")  # what runs pooled by diagnose must share
RHAT_AGREE = 1.05  # pooled R-hat at or below this: the runs describe the same distribution


def diagnose_runs(run_dirs) -> str:
    """:func:`diagnose_run` for each folder; for two or more, also R-hat pooled over all their
    particles (:func:`~pplevelset.diagnostics.pooled_convergence`), which catches runs that each
    look converged but sit in different parts of the level set. Every folder is read, and runs of
    different posteriors (world, target, alpha, likelihood) are refused in one line, before
    anything is written."""
    run_dirs = [Path(folder) for folder in run_dirs]
    runs = [read_run(folder) for folder in run_dirs]
    summaries = [summary for summary, _ in runs]
    first = summaries[0]
    for folder, summary in zip(run_dirs[1:], summaries[1:]):
        if not (isinstance(first, dict) and isinstance(summary, dict)):
            continue  # diagnose_run says, in one line, that it is not a run summary
        differ = [key for key in COMPARED if summary.get(key) != first.get(key)]
        if differ:
            raise UserInputError(
                f"{folder} samples another posterior than {run_dirs[0]} "
                f"({', '.join(f'{key} {summary.get(key)!r} vs {first.get(key)!r}' for key in differ)}); "
                "diagnose pools only runs of the same world, target, alpha and likelihood"
            )
    reports = [diagnose_run(folder, run) for folder, run in zip(run_dirs, runs)]
    if len(runs) == 1:
        return reports[0]
    return "\n\n".join([*reports, pooled_report(summaries, [idata for _, idata in runs])])


def pooled_report(summaries: list[dict], runs: list[az.InferenceData]) -> str:
    """R-hat and ESS over every run's particles, beside each run's own, and what it means."""
    names = ("z", "prediction_probs")  # the latents and what the user reads
    pooled = pooled_convergence(runs, names)
    own = [convergence(idata, names)["rhat_max"] for idata in runs]
    classes = list(summaries[0]["mean_prediction"])
    means = np.array(  # over every recorded draw (summary.json's is over the few resampled states)
        [idata.posterior["prediction_probs"].values.reshape(-1, len(classes)).mean(0) for idata in runs]
    )
    spread = means.max(0) - means.min(0)
    worst = int(spread.argmax())
    seeds = ", ".join(f"seed {summary.get('seed')}" for summary in summaries)
    own_text = ", ".join(f"{r:.3f}" for r in own)
    lines = [
        f"Pooled over {len(runs)} runs ({seeds}), z and predictions: R-hat {pooled['rhat_max']:.3f}, bulk ESS "
        f"{pooled['ess_bulk_min']:.0f} (each run's own R-hat: {own_text}); mean p({classes[worst]}) "
        f"ranges over {spread[worst]:.3f} between runs",
    ]
    if pooled["rhat_max"] > RHAT_AGREE and all(r <= RHAT_AGREE for r in own):
        lines.append(
            f"the runs disagree although each looks converged (R-hat <= {RHAT_AGREE}): each run's particles "
            "sat in a different part of the level set; use more rungs (--rungs 3 or 4) or particles and compare again"
        )
    elif pooled["rhat_max"] <= RHAT_AGREE:
        lines.append(f"the runs agree (pooled R-hat <= {RHAT_AGREE})")
    return "\n".join(lines)


def format_summary(s: dict) -> str:
    """The few lines of ``summary.json`` a person reads first."""
    if not isinstance(s, dict):
        raise TypeError(f"a JSON {type(s).__name__}, not an object")
    target = ", ".join(f"{c} {p:.3g}" for c, p in zip(s["classes"], s["target"]))
    mean = ", ".join(f"{c} {p:.3f}" for c, p in s["mean_prediction"].items())
    conf = s["confidence"]
    schedule = (
        f"{s['num_temperatures']} temperatures x {s['moves']} moves, {s['populations']} populations"
        if s["kernel"] == "smc"
        else f"{s['warmup']} warm-up + {s['steps']} steps"
    )
    noise = f"Normal likelihood, sigma {s['sigma']:g}" if s.get("likelihood") == "normal" else f"alpha {s['alpha']:g}"
    kernel = [s["kernel"]]
    if (s.get("rungs") or 1) > 1:
        kernel.append(f"{s['rungs']} rungs")
    if s.get("start") == "smc":
        kernel.append(f"started from SMC ({s.get('start_temperatures')} temperatures)")
    lines = [
        f"{s['world']}: target {s['target_spec']} ({target}), {noise}, {', '.join(kernel)}, "
        f"{s['num_particles']} particles, {schedule}, {s['elapsed_s']:.1f} s",
        f"Delta {s['delta']:.4f} over {s['keep']} resampled states; mean prediction {mean}",
        f"confidence in the target's top class: mean {conf['mean']:.3f}, min {conf['min']:.3f}, max {conf['max']:.3f}",
        f"hits (total variation < 0.1): {s['hits_tv_0.1']} of {s['num_particles']} particles; "
        f"distinct among kept: {s['distinct_samples']}",
    ]
    if "acceptance_rate" in s:
        rhat = "n/a" if s.get("rhat_max") is None else f"{s['rhat_max']:.3f}"
        ess = "n/a" if s.get("ess_bulk_min") is None else f"{s['ess_bulk_min']:.0f}"
        line = f"acceptance {s['acceptance_rate']:.3f}, R-hat max {rhat}, ESS bulk min {ess}"
        if s.get("ess_population_min") is not None and s.get("tau_population_max") is not None:
            line += (
                f"; the population's mean: ESS min {s['ess_population_min']:.0f}, "
                f"autocorrelation time max {s['tau_population_max']:.1f} draws"
            )
        lines.append(line)
        lines.append(s["burn_in"])
        lines.extend(f"warning: {text}" for text in s.get("warnings", []))
    if "log_evidence" in s:
        lines.append(
            f"log evidence log p(target) = {s['log_evidence']:.4f} "
            f"(populations: {', '.join(f'{v:.3f}' for v in s['log_evidence_per_population'])})"
        )
    return "\n".join(lines)
