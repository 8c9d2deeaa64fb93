"""Loss-weighting methods for multi-task learning, one per file, on one contract
(:mod:`.base`). Importing this package registers every built-in method."""

# Loss-only methods (Needs.LOSSES): imported for their registration.
# Gradient methods (Needs.PARAM_GRADS / FEATURE_GRADS; IMTL-L is loss-only): imported for their registration.
from . import (  # noqa: F401  # noqa: F401
    aligned_mtl,
    cagrad,
    dwa,
    equal,
    famo,
    fixed,
    gradnorm,
    imtl,
    mgda,
    minmax,
    nash_mtl,
    pcgrad,
    rlw,
    scale_invariant,
    uncertainty,
)
from .base import Needs, StepRecord, Weighting, weighted_backward
from .registry import WEIGHTINGS, available_weightings, build_weighting, register_weighting, unregister_weighting

__all__ = [
    "Needs",
    "StepRecord",
    "WEIGHTINGS",
    "Weighting",
    "available_weightings",
    "build_weighting",
    "register_weighting",
    "unregister_weighting",
    "weighted_backward",
]
