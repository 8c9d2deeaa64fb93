"""Meta-RL training algorithms, one per file, on the :class:`MetaRLAlgorithm` contract, by name
through :data:`RL_ALGORITHMS` (:mod:`.registry`)."""

from .base import MetaRLAlgorithm
from .drs_ppo import DRSPPO
from .drs_trpo import DRSTRPO
from .maml_trpo import MAMLTRPO, FirstOrderMAMLTRPO
from .registry import RL_ALGORITHMS, register_rl_algorithm, unregister_rl_algorithm
from .trpo_base import TRPOMetaAlgorithm

__all__ = [
    "DRSPPO",
    "DRSTRPO",
    "MAMLTRPO",
    "RL_ALGORITHMS",
    "FirstOrderMAMLTRPO",
    "MetaRLAlgorithm",
    "TRPOMetaAlgorithm",
    "register_rl_algorithm",
    "unregister_rl_algorithm",
]
