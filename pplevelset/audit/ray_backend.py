"""The Ray backend: one Ray task per batch (world, chunk of targets), results back to the driver.

``ray.init()`` finds the cluster (``RAY_ADDRESS`` or ``address``; a local one is started when there
is none, unless Ray is already initialised in this process). A task asks for ``cpus_per_task`` CPUs
and, where the sweep runs on CUDA, one GPU. A task that raises or whose worker dies is retried
``max_retries`` times (``retry_exceptions=True``); if it still fails, its items are reported failed
and the other tasks go on. Results are written by the driver as they arrive (``ray.wait``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pplevelset.audit.plan import Chunk
from pplevelset.errors import UserInputError


def ray_module():
    try:
        import ray
    except ImportError:
        raise UserInputError("--backend ray needs Ray: pip install 'pplevelset[ray]'") from None
    return ray


def run_on_ray(
    chunks: Sequence[Chunk],
    finished: Callable,
    address: str | None = None,
    max_retries: int = 2,
    cpus_per_task: float = 1,
) -> None:
    ray = ray_module()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserInputError(
                f"cannot connect to a Ray cluster at {address or 'RAY_ADDRESS/local'}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
    from pplevelset.audit.execute import _one_line, run_chunk

    task = ray.remote(run_chunk)
    running = {}
    for chunk in chunks:
        gpus = 1 if chunk.settings.device.startswith("cuda") else 0
        ref = task.options(
            num_cpus=cpus_per_task, num_gpus=gpus, max_retries=max_retries, retry_exceptions=True
        ).remote(chunk)
        running[ref] = chunk
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            chunk = running.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # RayTaskError (after retries), WorkerCrashedError, ...
                cause = getattr(exc, "cause", None)
                finished(chunk, None, _one_line(cause if isinstance(cause, BaseException) else exc))
            else:
                finished(chunk, result, None)
