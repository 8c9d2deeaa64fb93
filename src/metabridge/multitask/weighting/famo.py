"""FAMO: Liu, Liu, Jin, Stone & Liu 2023, "FAMO: Fast Adaptive Multitask Optimization"
(NeurIPS), Algorithm 1. Loss-only: one backward pass per step, like equal weighting.

Task logits xi [K] (initialised to 0) give the task weights z = softmax(xi). With the shifted
losses D_i = L_i - min_loss_i + eps (min_loss_i a lower bound of L_i, 0 by default), the
objective minimised by the model is

    c^{-1} sum_i z_i log D_i,    c = sum_i z_i / D_i   (treated as a constant: detached),

whose gradient is sum_i (z_i / (c D_i)) grad L_i: the gradient of sum_i log D_i re-weighted by
z, normalised so that the effective weights z_i / (c D_i) sum to 1. Those effective weights on
the loss gradients are the weights this method reports (z itself is :attr:`FAMO.task_weights`).

After the model's optimiser step, the rate of improvement of each task,

    delta_i = log D_i(t) - log D_i(t+1),

updates the logits so that the tasks that improved least get more weight:

    xi <- xi - beta * ( (dz/dxi)^T delta + gamma * xi ),   (dz/dxi)^T delta = z * (delta - z . delta),

with the step taken by Adam (learning rate ``w_lr`` = beta, weight decay ``gamma`` added to the
gradient, betas (0.9, 0.999), eps 1e-8), as in the authors' code (``torch.optim.Adam([xi],
lr=w_lr, weight_decay=gamma)``). The Adam is owned by the method and kept in buffers (``xi``,
``adam_exp_avg``, ``adam_exp_avg_sq``, ``adam_step``), so it moves with ``.to(device)``, is saved
in ``state_dict()``, and is never in ``parameters()``: the model's optimiser must not train xi.

Which losses stand for L(t+1) (``lookahead``):

* ``"same_batch"`` (the paper): :meth:`FAMO.after_step` calls the closure it is given to
  recompute the losses on the same batch after the step (one extra forward pass, no backward).
* ``"next_batch"``: no extra forward; the losses of the next call to :meth:`FAMO.objective`
  (the next batch, before its step) stand for L(t+1), and xi is updated at the start of that
  call. A cheaper approximation, not the paper's algorithm: delta then also contains the
  difference between the two batches.

The paper's gradient-norm clipping of the model update (``max_norm``) is the training loop's
business, not this method's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["FAMO"]

Lookahead = Literal["same_batch", "next_batch"]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@register_weighting("famo")
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization (loss-only, learned task logits updated after each step)."""

    xi: Tensor
    min_losses: Tensor
    adam_exp_avg: Tensor
    adam_exp_avg_sq: Tensor
    adam_step: Tensor

    name: ClassVar[str] = "famo"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(
        self,
        num_tasks: int,
        w_lr: float = 0.025,
        gamma: float = 0.001,
        eps: float = 1e-8,
        min_losses: Sequence[float] | None = None,
        lookahead: Lookahead = "same_batch",
    ) -> None:
        super().__init__(num_tasks)
        if not (_finite_number(w_lr) and w_lr > 0):
            raise ValueError(
                f"FAMO: w_lr (the logits' Adam learning rate) must be a finite number > 0; the paper "
                f"uses 0.025 (got {w_lr!r})."
            )
        if not (_finite_number(gamma) and gamma >= 0):
            raise ValueError(
                f"FAMO: gamma (the logits' weight decay) must be a finite number >= 0; the paper uses "
                f"0.001 (got {gamma!r})."
            )
        if not (_finite_number(eps) and eps >= 0):
            raise ValueError(f"FAMO: eps must be a finite number >= 0 (default 1e-8; got {eps!r}).")
        if lookahead not in ("same_batch", "next_batch"):
            raise ValueError(
                f"FAMO: lookahead must be 'same_batch' (the paper: recompute the losses on the same "
                f"batch after the step) or 'next_batch' (got {lookahead!r})."
            )
        if min_losses is None:
            mins = [0.0] * num_tasks
        else:
            try:
                mins = [float(v) for v in min_losses]
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"FAMO: min_losses must be {num_tasks} numbers, a lower bound of each task's loss "
                    f"(got {min_losses!r})."
                ) from err
            if len(mins) != num_tasks or not all(math.isfinite(v) for v in mins):
                raise ValueError(
                    f"FAMO: min_losses must be {num_tasks} finite numbers, one lower bound per task (got {mins})."
                )
        self.w_lr = float(w_lr)
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.lookahead: Lookahead = lookahead
        self.register_buffer("xi", torch.zeros(num_tasks))
        self.register_buffer("min_losses", torch.tensor(mins, dtype=torch.float32))
        self.register_buffer("adam_exp_avg", torch.zeros(num_tasks))
        self.register_buffer("adam_exp_avg_sq", torch.zeros(num_tasks))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.long))
        self._previous: Tensor | None = None  # D(t), detached, waiting for D(t+1)

    @property
    def task_weights(self) -> Tensor:
        """z = softmax(xi), the current task weights ([K])."""
        return torch.softmax(self.xi, dim=0)

    def _shifted(self, losses: Tensor, when: str) -> Tensor:
        shifted = losses - self.min_losses.to(device=losses.device, dtype=losses.dtype) + self.eps
        if not bool((shifted.detach() > 0).all()):
            raise ValueError(
                f"FAMO takes log(L_i - min_loss_i + eps) and needs every loss above its min_loss ({when}: "
                f"losses {losses.detach().tolist()}, min_losses {self.min_losses.tolist()}, eps={self.eps}); "
                "pass min_losses below the losses' infimum (0 for cross-entropy and MSE) or a larger eps."
            )
        return shifted

    def _update_logits(self, before: Tensor, after: Tensor) -> None:
        """One Adam step on xi with the gradient (dz/dxi)^T delta, delta = log D(t) - log D(t+1)."""
        xi = self.xi
        delta = before.to(xi).log() - after.detach().to(xi).log()
        z = torch.softmax(xi, dim=0)
        grad = z * (delta - (z * delta).sum())  # softmax Jacobian (symmetric) times delta
        grad = grad + self.gamma * xi  # Adam's (L2) weight decay
        beta1, beta2 = _ADAM_BETAS
        self.adam_step += 1
        self.adam_exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.adam_exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = self.adam_step.to(xi.dtype)
        # 1 - beta^t as -expm1(t log beta): no cancellation in float32 (1 - 0.999 loses 4 digits there)
        bias1 = -torch.expm1(step * math.log(beta1))
        bias2 = -torch.expm1(step * math.log(beta2))
        denom = self.adam_exp_avg_sq.sqrt() / bias2.sqrt() + _ADAM_EPS
        xi.sub_(self.w_lr * self.adam_exp_avg / (bias1 * denom))

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        shifted = self._shifted(losses, "objective")
        if self.lookahead == "next_batch" and self._previous is not None:
            self._update_logits(self._previous, shifted.detach())
        z = self.task_weights.to(device=losses.device, dtype=losses.dtype)
        d = shifted.detach()
        c = (z / d).sum()
        total = (z * shifted.log()).sum() / c
        self._previous = d
        return total, z / (c * d)

    def after_step(self, recompute_losses: Callable[[], Tensor]) -> None:
        if self.lookahead != "same_batch" or self._previous is None:
            return
        with torch.no_grad():
            after = recompute_losses()
        if after.dim() != 1 or after.shape[0] != self.num_tasks:
            raise ValueError(
                f"FAMO.after_step: the closure must return the {self.num_tasks} losses as a "
                f"[{self.num_tasks}] tensor (got shape {tuple(after.shape)})."
            )
        self._update_logits(self._previous, self._shifted(after.detach(), "after the step"))
        self._previous = None

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, w_lr={self.w_lr}, gamma={self.gamma}, eps={self.eps}, "
            f"lookahead={self.lookahead!r}"
        )


# no extra forward (an approximation)
register_weighting("famo_next_batch", functools.partial(FAMO, lookahead="next_batch"))
