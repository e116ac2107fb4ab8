"""Run a sweep plan on a backend, write its directory, resume it, index it.

Workers (:func:`run_chunk`) run one batch and return plain data: per item its ``summary.json`` and
its run directory's files as bytes, made by :func:`pplevelset.rundir.save_run`, exactly as
``sample`` writes them. The driver (:func:`execute`) writes each item's directory atomically as
results arrive, so an interrupted sweep keeps every finished item and a rerun of the same plan
skips them (resume). A batch that fails (after Ray's retries) is reported in the index, item by
item, with its error; the other items are kept.

Sweep directory: ``plan.json`` (what runs; a rerun must match it), one sub-directory per item,
``sweep.json`` and ``sweep.csv`` (one row per item), and the figures (:mod:`pplevelset.audit.figures`).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pplevelset.audit.plan import Chunk, Item, SweepPlan
from pplevelset.errors import UserInputError
from pplevelset.files import atomic_write, write_json
from pplevelset.rundir import atomic_directory

BACKENDS = ("local", "ray")
RUN_FILES = ("summary.json", "posterior.nc")  # present in every finished item (with its figures)
INDEX_COLUMNS = (
    "world",
    "target",
    "target_spec",
    "family",
    "kernel",
    "seed",
    "delta",
    "mean_prediction",
    "confidence",
    "hits_tv_0.1",
    "num_particles",
    "rhat_max",
    "log_evidence",
    "elapsed_s",
    "status",
    "run_dir",
    "error",
)


def run_chunk(chunk: Chunk, progress: bool = False) -> dict[str, Any]:
    """Worker side: one batched run of the chunk's targets; per item its summary and run files.

    Returns ``{"items": [{"name", "summary", "files": {name: bytes}}], "elapsed_s", "bytes"}``.
    """
    import torch

    from pplevelset.audit.batched import run_batch
    from pplevelset.rundir import write_run
    from pplevelset.targets import NamedTarget, parse_target

    start = time.perf_counter()
    settings = chunk.settings
    config = settings.run_config(chunk.world, chunk.seed, progress=progress)
    targets = [
        NamedTarget(item.target, parse_target(item.target, config.world.classes), item.family, item.params)
        for item in chunk.items
    ]
    result = run_batch(config, targets)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pplevelset-sweep-") as tmp:
        for item, posterior in zip(chunk.items, result.posteriors):
            folder = Path(tmp) / item.name
            folder.mkdir()
            summary = write_run(posterior, folder, keep=settings.keep, seed=item.seed)
            files = {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}
            out.append({"name": item.name, "summary": summary, "files": files})
    del result
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    size = sum(len(data) for entry in out for data in entry["files"].values())
    return {"items": out, "elapsed_s": time.perf_counter() - start, "bytes": size}


def prepare(out: Path, plan: SweepPlan, overwrite: bool) -> None:
    """Create ``out`` or check that it holds this plan (resume); ``overwrite`` starts it afresh."""
    plan_file = out / "plan.json"
    wanted = plan.to_dict()
    if out.exists():
        if not out.is_dir():
            raise UserInputError(f"{out} exists and is not a directory")
        is_sweep = plan_file.is_file()
        if overwrite and (is_sweep or any(out.iterdir())):
            if not is_sweep and not (out / "sweep.json").is_file():
                raise UserInputError(f"{out} is not a sweep directory; not replacing it even with --overwrite")
            shutil.rmtree(out)
        elif is_sweep:
            try:
                existing = json.loads(plan_file.read_text())
            except (OSError, json.JSONDecodeError):
                existing = None
            if existing != json.loads(json.dumps(wanted)):
                raise UserInputError(
                    f"{out} holds a different sweep; pass --overwrite to replace it or choose "
                    "another --out (an equal sweep resumes)"
                )
        elif any(out.iterdir()):
            raise UserInputError(f"{out} exists and is not a sweep directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(plan_file, wanted)


def is_done(out: Path, item: Item) -> bool:
    """An item's run directory is published atomically, complete, so its summary marks it done."""
    return all((out / item.name / name).is_file() for name in RUN_FILES)


def write_item(out: Path, entry: dict) -> None:
    """One item's run directory, written atomically from the bytes a worker returned (a previous
    run directory of the same item, or a left-over one, is replaced)."""
    with atomic_directory(out / entry["name"], overwrite=True) as tmp:
        for name, data in entry["files"].items():
            atomic_write(tmp / name, data)


def execute(
    plan: SweepPlan,
    out: str | Path,
    backend: str = "local",
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_retries: int = 2,
    cpus_per_task: float = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run every unfinished item of ``plan`` and write the sweep directory; returns the index rows."""
    if backend not in BACKENDS:
        raise UserInputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out = Path(out)
    prepare(out, plan, overwrite)
    failures: dict[str, str] = {}
    cache: dict[str, dict] = {}  # index rows of finished items: each summary is read once
    pending = [chunk for chunk in plan.chunks() if not all(is_done(out, item) for item in chunk.items)]
    skipped = len(plan.items) - sum(len(chunk.items) for chunk in pending)
    if skipped:
        log(f"resuming {out}: {skipped} of {len(plan.items)} items already done")
    log(f"sweep: {len(plan.items)} items in {len(plan.chunks())} batches, {len(pending)} to run ({backend})")

    def finished(chunk: Chunk, result: dict | None, error: str | None) -> None:
        if error is not None or result is None:
            for item in chunk.items:
                failures[item.name] = error or "no result"
            log(f"  batch {chunk.world} seed {chunk.seed} ({len(chunk.items)} targets) FAILED: {error}")
        else:
            for entry in result["items"]:
                if not is_done(out, _item(plan, entry["name"])):
                    write_item(out, entry)
            log(f"  batch {chunk.world} seed {chunk.seed}: {len(chunk.items)} targets in {result['elapsed_s']:.1f} s")
        write_index(out, plan, failures, cache)

    if backend == "local":
        for chunk in pending:
            try:
                result = run_chunk(chunk, progress=progress)
            except Exception as exc:  # a failing batch is reported in the index; the others carry on
                finished(chunk, None, _one_line(exc))
            else:
                finished(chunk, result, None)
    else:
        from pplevelset.audit.ray_backend import run_on_ray

        run_on_ray(pending, finished, address=address, max_retries=max_retries, cpus_per_task=cpus_per_task)
    rows = write_index(out, plan, failures, cache)
    from pplevelset.audit.figures import write_figures

    for path in write_figures(out, rows):
        log(f"wrote {path}")
    return rows


def _item(plan: SweepPlan, name: str) -> Item:
    return next(item for item in plan.items if item.name == name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def index_row(out: Path, item: Item, error: str | None = None) -> dict[str, Any]:
    """One index row: the item's numbers from its ``summary.json``, or its status."""
    row: dict[str, Any] = {
        "world": item.world,
        "target": None,
        "target_spec": item.target,
        "family": item.family,
        "family_params": item.params,
        "kernel": item.kernel,
        "seed": item.seed,
        "run_dir": item.name,
    }
    if is_done(out, item):
        summary = json.loads((out / item.name / "summary.json").read_text())
        row.update(
            {
                "target": summary["target"],
                "classes": summary["classes"],
                "delta": summary["delta"],
                "mean_prediction": summary["mean_prediction"],
                "confidence": summary["confidence"]["mean"],
                "hits_tv_0.1": summary["hits_tv_0.1"],
                "num_particles": summary["num_particles"],
                "rhat_max": summary.get("rhat_max"),
                "elapsed_s": summary.get("elapsed_s"),
                "status": "done",
            }
        )
        if "log_evidence" in summary:
            row["log_evidence"] = summary["log_evidence"]
    else:
        row.update({"status": "failed" if error else "pending", "error": error})
    return row


def write_index(
    out: Path, plan: SweepPlan, failures: dict[str, str] | None = None, cache: dict[str, dict] | None = None
) -> list[dict]:
    """``sweep.json`` (``{"items": [...]}``) and ``sweep.csv`` (the same rows), atomically. ``cache``
    keeps the rows of finished items between calls (rewriting the index after every batch then
    costs O(items), not a re-read of every summary)."""
    failures, cache = failures or {}, {} if cache is None else cache
    rows = []
    for item in plan.items:
        row = cache.get(item.name) or index_row(out, item, failures.get(item.name))
        if row["status"] == "done":
            cache[item.name] = row
        rows.append(row)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("done", "failed", "pending")}
    write_json(out / "sweep.json", {"items": rows, "counts": counts, "settings": plan.to_dict()["settings"]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=INDEX_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in INDEX_COLUMNS})
    atomic_write(out / "sweep.csv", buffer.getvalue().encode())
    return rows


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else value
