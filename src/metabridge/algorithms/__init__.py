"""One file per method, all behind :class:`MetaAlgorithm` (``meta_loss`` / ``adapt``)."""

from .anil import ANIL
from .base import DataInfo, MetaAlgorithm, ModelMaker, Predictor, per_task_score, task_loss
from .black_box import BlackBoxLearner
from .drs import DRS, JointTraining
from .execution import ExecutionOptions
from .fomaml import FOMAML
from .in_context_transformer import InContextTransformer
from .maml import MAML
from .mann import MANN
from .meta_sgd import MetaSGD
from .metaoptnet import MetaOptNet
from .mtl import MTL
from .protonet import ProtoNet
from .registry import ALGORITHMS, algorithm_hparams, build_algorithm, register_algorithm, unregister_algorithm
from .reptile import Reptile
from .snail import SNAIL

__all__ = [
    "ALGORITHMS",
    "ANIL",
    "BlackBoxLearner",
    "DRS",
    "DataInfo",
    "ExecutionOptions",
    "FOMAML",
    "InContextTransformer",
    "JointTraining",
    "MAML",
    "MANN",
    "MTL",
    "MetaAlgorithm",
    "MetaOptNet",
    "MetaSGD",
    "ModelMaker",
    "Predictor",
    "ProtoNet",
    "Reptile",
    "SNAIL",
    "algorithm_hparams",
    "build_algorithm",
    "per_task_score",
    "register_algorithm",
    "task_loss",
    "unregister_algorithm",
]
