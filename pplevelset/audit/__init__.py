"""Audit a classifier: many targets in one batched run (:func:`~pplevelset.audit.batched.sweep`),
and sweeps over worlds x targets x seeds written as a directory of runs with an index and figures,
on one machine or a Ray cluster (:func:`~pplevelset.audit.execute.execute`).

Modules: ``batched`` (the batched multi-target sampler), ``plan`` (items, chunks, TOML specs),
``execute`` (backends, resume, index), ``ray_backend``, ``figures``, ``command`` (``pplevelset sweep``).
Imported lazily, so the command line starts fast.
"""

_EXPORTS = {
    "sweep": "batched",
    "SweepResult": "batched",
    "run_batch": "batched",
    "execute": "execute",
    "build_plan": "plan",
    "read_spec": "plan",
    "SweepPlan": "plan",
    "SweepSettings": "plan",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"pplevelset.audit.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
