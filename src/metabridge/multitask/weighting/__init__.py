"""Loss-weighting methods for multi-task learning, one per file, on one contract
(:mod:`.base`). Importing this package registers every built-in method."""

from .base import Needs, StepRecord, Weighting, weighted_backward
from .registry import WEIGHTINGS, available_weightings, build_weighting, register_weighting, unregister_weighting

__all__ = ["Needs", "StepRecord", "WEIGHTINGS", "Weighting", "available_weightings", "build_weighting",
           "register_weighting", "unregister_weighting", "weighted_backward"]
