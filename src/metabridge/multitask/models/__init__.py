"""Multi-task architectures: hard sharing, task-conditioned networks, a hypernetwork head,
and soft sharing (MMoE, cross-stitch). Each maps x to every task's prediction (:mod:`.base`).

Build one by name with :func:`build_mtl_model` (``available_mtl_models()`` lists the names)."""

from .base import MultiTaskModel, TaskOutputs
from .conditioned import TaskConditioned
from .cross_stitch import CrossStitch
from .encoders import ConvEncoder, MLPEncoder, StackedLinear
from .hard_sharing import HardSharing
from .hypernetwork import HypernetworkHead
from .mmoe import MMoE
from .registry import (
    MTL_MODELS,
    available_mtl_models,
    build_default_encoder,
    build_mtl_model,
    register_mtl_model,
    unregister_mtl_model,
)

__all__ = [
    "MTL_MODELS",
    "ConvEncoder",
    "CrossStitch",
    "HardSharing",
    "HypernetworkHead",
    "MLPEncoder",
    "MMoE",
    "MultiTaskModel",
    "StackedLinear",
    "TaskConditioned",
    "TaskOutputs",
    "available_mtl_models",
    "build_default_encoder",
    "build_mtl_model",
    "register_mtl_model",
    "unregister_mtl_model",
]
