"""One file per method, all behind :class:`MetaAlgorithm` (``meta_loss`` / ``adapt``)."""

from .anil import ANIL
from .base import MetaAlgorithm, Predictor, per_task_score, task_loss
from .drs import DRS
from .fomaml import FOMAML
from .maml import MAML
from .meta_sgd import MetaSGD
from .metaoptnet import MetaOptNet
from .mtl import MTL
from .protonet import ProtoNet
from .registry import ALGORITHMS, build_algorithm
from .reptile import Reptile

__all__ = ["ANIL", "DRS", "FOMAML", "MAML", "MTL", "MetaAlgorithm", "MetaSGD", "MetaOptNet", "Predictor", "ProtoNet",
           "Reptile", "ALGORITHMS", "build_algorithm", "per_task_score", "task_loss"]
