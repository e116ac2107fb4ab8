"""pplevelset: sample prediction level sets of classifiers with probabilistic programming.

Example::

    import pplevelset as pls
    post = pls.sample("toy", target="ambiguous", alpha=10.0, num_particles=1000)
    post.delta(), post.resample(64).z, post.to_arviz()
"""

from pplevelset import worlds
from pplevelset.audit.batched import SweepResult, sweep
from pplevelset.errors import CheckpointError, UserInputError
from pplevelset.infer.config import RunConfig
from pplevelset.infer.driver import run, sample
from pplevelset.infer.pyro_kernels import BatchedRandomWalk, EnsembleKernel, to_arviz
from pplevelset.memory import keep_freed_memory
from pplevelset.model import level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.targets import expand_targets, parse_target
from pplevelset.version import __version__
from pplevelset.worlds import load_world, register
from pplevelset.worlds.base import World

__all__ = [
    "BatchedRandomWalk",
    "CheckpointError",
    "EnsembleKernel",
    "LevelSetPosterior",
    "RunConfig",
    "UserInputError",
    "World",
    "level_set_model",
    "load_world",
    "parse_target",
    "register",
    "run",
    "sample",
    "worlds",
    "SweepResult",
    "expand_targets",
    "keep_freed_memory",
    "sweep",
    "to_arviz",
    "__version__",
]
