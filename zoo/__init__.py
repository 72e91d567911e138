"""alignzoo: a PyTorch-Lightning model zoo of reward-alignment algorithms.

The import root of the whole distribution: ``zoo.algorithms`` (the LightningModules), ``zoo.diffusion``,
``zoo.splat`` and ``zoo.vlm`` (the machinery they share), ``zoo.tasks`` (what models are aligned for and how they
are judged) and ``zoo.callbacks`` (Lightning callbacks).
"""

__version__ = "0.1.0"

from zoo.configurable import Configurable, instantiate, to_config  # noqa: E402
from zoo.hub import from_pretrained  # noqa: E402

__all__ = ["Configurable", "from_pretrained", "instantiate", "to_config", "__version__"]
