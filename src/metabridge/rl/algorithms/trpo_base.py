"""What MAML-TRPO and DRS-TRPO share: the TRPO settings and the update with Gauss-Newton curvature.

Both maximise a surrogate under a mean-KL trust region (:func:`metabridge.rl.trpo.trpo_step`);
they differ only in the policy whose KL and surrogate are taken (post-adaptation for
MAML, the shared policy for DRS), which each passes in as ``distribution``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..policy import GaussianMLPPolicy
from ..trpo import gaussian_fisher_vector_product, trpo_step
from .base import MetaRLAlgorithm


def fisher_rollouts(rollouts: int, fraction: float) -> int:
    """How many rollouts per task the Fisher-vector products use (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fisher_subsample must be in (0, 1] (got {fraction}).")
    return max(1, round(rollouts * fraction))


class TRPOMetaAlgorithm(MetaRLAlgorithm):
    """A :class:`MetaRLAlgorithm` updated by TRPO.

    Args (besides :class:`MetaRLAlgorithm`'s): max_kl (delta, 0.01), cg_iters (10),
    cg_damping (1e-5), backtrack_ratio (0.8), max_backtracks (15): the TRPO settings of
    Finn et al.'s code / pytorch-maml-rl; fisher_subsample (1.0): the fraction of each
    task's rollouts on which the Fisher-vector products are formed (TRPO's subsampled
    curvature, Schulman et al. 2015 Sec. 6; 1.0 = exact). The gradient, the surrogate and
    the KL of the line search always use every rollout."""

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        inner_lr: float = 0.1,
        max_kl: float = 0.01,
        cg_iters: int = 10,
        cg_damping: float = 1e-5,
        backtrack_ratio: float = 0.8,
        max_backtracks: int = 15,
        fisher_subsample: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, inner_lr, **kwargs)
        if max_kl <= 0 or cg_iters < 1 or not 0 < backtrack_ratio < 1 or max_backtracks < 1:
            raise ValueError(
                f"need max_kl > 0, cg_iters >= 1, 0 < backtrack_ratio < 1, max_backtracks >= 1 (got "
                f"{max_kl}, {cg_iters}, {backtrack_ratio}, {max_backtracks})."
            )
        fisher_rollouts(1, fisher_subsample)  # validates
        self.max_kl, self.cg_iters, self.cg_damping = float(max_kl), int(cg_iters), float(cg_damping)
        self.backtrack_ratio, self.max_backtracks = float(backtrack_ratio), int(max_backtracks)
        self.fisher_subsample = float(fisher_subsample)

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            "max_kl": self.max_kl,
            "cg_iters": self.cg_iters,
            "cg_damping": self.cg_damping,
            "backtrack_ratio": self.backtrack_ratio,
            "max_backtracks": self.max_backtracks,
            "fisher_subsample": self.fisher_subsample,
        }

    def trpo_update(
        self,
        objective: Callable[[], tuple[Tensor, Tensor]],
        distribution: Callable[..., tuple[Tensor, Tensor]],
        mask: Tensor,
    ) -> dict[str, float]:
        """One TRPO step of the policy's parameters; ``distribution(*params)`` gives the means and
        log-stds whose KL the trust region bounds, on the steps ``mask`` marks.

        Data-parallel (:meth:`distribute`): ``objective`` and ``distribution`` cover this rank's
        tasks; the gradient, every Fisher-vector product and every line-search (loss, KL) are
        averaged over the ranks (:func:`~metabridge.rl.trpo.trpo_step`'s ``mean_over_ranks``), so the
        step is the single-process step on all ranks' tasks."""
        params = list(self.policy.parameters())
        stats = trpo_step(
            params,
            objective,
            self.max_kl,
            self.cg_damping,
            self.cg_iters,
            self.backtrack_ratio,
            self.max_backtracks,
            fisher=lambda: gaussian_fisher_vector_product(distribution, params, mask, self.cg_damping),
            mean_over_ranks=self.ranks.mean if self.ranks is not None else None,
        )
        return {
            "surrogate": -stats.surrogate_after,
            "kl": stats.kl,
            "step_fraction": stats.step_fraction,
            "accepted": float(stats.accepted),
        }


def with_success(out: dict[str, float], rate: torch.Tensor | None, key: str) -> dict[str, float]:
    """``out`` plus the mean success rate under ``key`` when the family reports success."""
    if rate is not None:
        out[key] = float(rate.mean())
    return out
