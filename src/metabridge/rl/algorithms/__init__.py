"""Meta-RL training algorithms, one per file, on the :class:`MetaRLAlgorithm` contract."""

from .base import MetaRLAlgorithm
from .drs_ppo import DRSPPO
from .drs_trpo import DRSTRPO
from .maml_trpo import MAMLTRPO
from .trpo_base import TRPOMetaAlgorithm

__all__ = ["DRSPPO", "DRSTRPO", "MAMLTRPO", "MetaRLAlgorithm", "TRPOMetaAlgorithm"]
