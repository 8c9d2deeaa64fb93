"""Random Loss Weighting: Lin, Ye, Xu, Shi & Zhang 2022, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning" (TMLR), the normal-softmax variant:

    z ~ N(0, I_K) drawn afresh at every step,   w = softmax(z),   L(theta) = sum_i w_i L_i(theta),

so the weights are positive and sum to 1 (the paper's Algorithm 1 with p(lambda) the softmax
of a standard normal, as in LibMTL's ``RLW``).

The draws come from a ``torch.Generator`` owned by the method (seeded with ``seed``, on the
losses' device), never from torch's global generator: building or running the method does not
change the process-wide random state, and the weight sequence depends only on ``seed`` and the
device. The generator's state is saved in ``state_dict()`` (``_extra_state``), so a resumed run
draws the weights it would have drawn.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["RandomLossWeighting"]


@register_weighting("rlw")
class RandomLossWeighting(Weighting):
    """``softmax(z)``, ``z ~ N(0, I)`` from the method's own generator at every step."""

    name: ClassVar[str] = "rlw"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"RandomLossWeighting: seed must be a non-negative integer (got {seed!r}).")
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _generator_for(self, device: torch.device) -> torch.Generator:
        gen = self._generator
        if gen is None or gen.device != device:
            # First use, or the losses moved to another device: a generator there, seeded the same.
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generator = gen
        return gen

    def sample_weights(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """Draw the next step's weights ``softmax(z)``, ``z ~ N(0, I_K)`` ([K])."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        z = torch.randn(self.num_tasks, generator=self._generator_for(device), device=device, dtype=dtype)
        return torch.softmax(z, dim=0)

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.sample_weights(losses.device, losses.dtype)
        return (weights * losses).sum(), weights

    def get_extra_state(self) -> Any:
        gen = self._generator
        return {
            "seed": self.seed,
            "device": None if gen is None else str(gen.device),
            "rng_state": None if gen is None else gen.get_state(),
        }

    def set_extra_state(self, state: Any) -> None:
        self.seed = int(state["seed"])
        self._generator = None
        if state.get("rng_state") is not None:
            gen = self._generator_for(torch.device(state["device"]))
            gen.set_state(state["rng_state"])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"
