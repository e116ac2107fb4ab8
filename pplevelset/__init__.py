"""pplevelset: sample prediction level sets of classifiers with probabilistic programming.

Example::

    import pplevelset as pls
    post = pls.sample("toy", target="ambiguous", alpha=10.0, num_particles=1000)
    post.delta(), post.resample(64).z, post.to_arviz()
"""

__version__ = "0.1.0"

import warnings

# ArviZ 0.2x announces its 1.0 refactor on every import; our users did not ask for that notice.
warnings.filterwarnings("ignore", message="ArviZ is undergoing", category=FutureWarning)

from pplevelset import worlds
from pplevelset.errors import CheckpointError, UserInputError
from pplevelset.infer.run import sample
from pplevelset.infer.rwmh import BatchedRandomWalk
from pplevelset.model import level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.targets import parse_target
from pplevelset.worlds.base import World
from pplevelset.worlds import load_world, register

__all__ = ["BatchedRandomWalk", "CheckpointError", "LevelSetPosterior", "UserInputError", "World",
           "level_set_model", "load_world", "parse_target", "register", "sample", "worlds", "__version__"]
