"""Worlds for the sweep tests, importable by name (``sweep_worlds:FlakyToy``) in Ray workers too."""

from __future__ import annotations

import os
from pathlib import Path

from pplevelset.worlds.base import PROBE_SIZE
from pplevelset.worlds.toy import ToyWorld

FLAKY_DIR = "PPLEVELSET_TEST_FLAKY_DIR"


class FlakyToy(ToyWorld):
    """The toy world, whose first batch fails: the first call of ``classify`` on more than
    ``PROBE_SIZE`` particles (the checks every run makes first pass) in any process raises unless a
    marker file exists in ``$PPLEVELSET_TEST_FLAKY_DIR``, and creates it (a retry succeeds)."""

    name = "flaky-toy"

    def classify(self, x):
        if x.shape[0] > PROBE_SIZE:
            marker = Path(os.environ[FLAKY_DIR]) / "failed-once"
            if not marker.exists():
                marker.touch()
                raise RuntimeError("injected failure (first attempt)")
        return super().classify(x)


class BrokenToy(ToyWorld):
    """The toy world whose classifier fails on every batch (one that still fails after its retries);
    it passes the checks on ``PROBE_SIZE`` particles every run makes first."""

    name = "broken-toy"

    def classify(self, x):
        if x.shape[0] > PROBE_SIZE:
            raise RuntimeError("injected failure (always)")
        return super().classify(x)
