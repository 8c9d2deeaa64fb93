"""Loss-weighting methods for multi-task learning, one per file, on one contract
(:mod:`.base`). Importing this package registers every built-in method."""

from .base import Needs, StepRecord, Weighting, weighted_backward
from .registry import WEIGHTINGS, available_weightings, build_weighting, register_weighting, unregister_weighting

# Loss-only methods (Needs.LOSSES): imported for their registration.
from . import dwa, equal, famo, fixed, minmax, rlw, scale_invariant, uncertainty  # noqa: F401

# Gradient methods (Needs.PARAM_GRADS / FEATURE_GRADS; IMTL-L is loss-only): imported for their registration.
from . import aligned_mtl, cagrad, gradnorm, imtl, mgda, nash_mtl, pcgrad  # noqa: F401

__all__ = ["Needs", "StepRecord", "WEIGHTINGS", "Weighting", "available_weightings", "build_weighting",
           "register_weighting", "unregister_weighting", "weighted_backward"]
