"""GradNorm: Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018 (Sec. 3).

Learnable task weights w_i (init 1) balance the tasks' gradient norms according to their
training rates. At step t, with g_i = dL_i/dW:

    G_i = || d(w_i L_i)/dW || = w_i ||g_i||,           Gbar = mean_i G_i,
    Ltilde_i = L_i(t) / L_i(0),                       r_i = Ltilde_i / mean_j Ltilde_j,
    L_grad = sum_i | G_i - [Gbar r_i^alpha] |,

the bracket treated as a constant (paper, Sec. 3.2). The shared update is the weighted
gradient d = sum_i w_i g_i and the heads get sum_i w_i L_i (weights w); then one step of the
method's own optimiser (Adam by default, learning rate ``lr``) on dL_grad/dw, after which w is
renormalised to sum_i w_i = K (paper) — weights below ``min_weight`` are first raised to it, so
they stay positive. L_i(0) is the loss at the first call. A task whose loss trains more slowly
(larger r_i) gets a larger target, hence a larger weight.

W: the paper takes the last shared layer; here ||g_i|| is over every shared parameter
``combine`` receives (the gradients w.r.t. all shared parameters, as LibMTL does). To use the
last layer only, pass only it as the shared parameters' gradients.

w is a buffer (``task_weights``, in the state_dict), not an ``nn.Parameter``: the caller's
optimiser must not step it (the method's own does). The own optimiser's moments are not in the
state_dict (a resumed run restarts them).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads
from .registry import register_weighting

__all__ = ["GradNorm"]


@register_weighting("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen et al. 2018).

    Args:
        num_tasks: K.
        alpha: the restoring-force asymmetry (default 1.5; >= 0; 0 equalises the gradient norms).
        lr: learning rate of the weights' optimiser (default 0.025).
        optimizer: ``"adam"`` (default) or ``"sgd"``.
        min_weight: floor of the weights before the renormalisation (default 1e-4, > 0).
    """

    task_weights: Tensor
    initial_losses: Tensor

    name: ClassVar[str] = "gradnorm"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(
        self,
        num_tasks: int,
        alpha: float = 1.5,
        lr: float = 0.025,
        optimizer: Literal["adam", "sgd"] = "adam",
        min_weight: float = 1e-4,
    ) -> None:
        super().__init__(num_tasks)
        for label, value, positive in (("alpha", alpha, False), ("lr", lr, True), ("min_weight", min_weight, True)):
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and value == value
                and value != float("inf")
                and (value > 0 if positive else value >= 0)
            )
            if not ok:
                raise ValueError(
                    f"GradNorm: {label} must be a finite number {'>' if positive else '>='} 0 (got {value!r})."
                )
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"GradNorm: optimizer must be 'adam' or 'sgd' (got {optimizer!r}).")
        if min_weight >= 1:
            raise ValueError(f"GradNorm: min_weight must be below 1 (got {min_weight!r}).")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.optimizer_name = optimizer
        self.min_weight = float(min_weight)
        self.register_buffer("task_weights", torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.full((num_tasks,), float("nan")))
        self._leaf: Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.last_gradnorm_loss: Tensor | None = None

    def _weights_leaf(self, like: Tensor) -> Tensor:
        """The optimiser's leaf tensor, on ``like``'s device and dtype, holding ``task_weights``."""
        leaf = self._leaf
        if leaf is None or leaf.device != like.device or leaf.dtype != like.dtype:
            leaf = torch.zeros(self.num_tasks, dtype=like.dtype, device=like.device, requires_grad=True)
            opt_cls = torch.optim.Adam if self.optimizer_name == "adam" else torch.optim.SGD
            self._optimizer = opt_cls([leaf], lr=self.lr)
            self._leaf = leaf
        with torch.no_grad():
            leaf.copy_(self.task_weights)  # the buffer is the truth (load_state_dict, .to())
        return leaf

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, "GradNorm")
        k = self.num_tasks
        losses = losses.detach().to(device=grads.device, dtype=grads.dtype)
        if losses.shape != (k,):
            raise ValueError(f"GradNorm: expected the {k} losses as a [{k}] tensor (got shape {tuple(losses.shape)}).")
        if not bool((losses > 0).all()):
            raise ValueError(f"GradNorm: the loss ratios L_i(t)/L_i(0) need positive losses (got {losses.tolist()}).")
        if not bool(torch.isfinite(self.initial_losses).all()):
            with torch.no_grad():
                self.initial_losses.copy_(losses)
        w = self._weights_leaf(grads)
        weights = w.detach().clone()
        direction = weights @ grads

        norms = grads.norm(dim=1)
        ratio = losses / self.initial_losses.to(losses)
        rate = ratio / ratio.mean()
        with torch.enable_grad():
            g_w = w * norms
            target = (g_w.mean() * rate.pow(self.alpha)).detach()
            gradnorm_loss = (g_w - target).abs().sum()
            (grad_w,) = torch.autograd.grad(gradnorm_loss, [w])
        assert self._optimizer is not None
        self._optimizer.zero_grad(set_to_none=True)
        w.grad = grad_w
        self._optimizer.step()
        with torch.no_grad():
            w.clamp_(min=self.min_weight)
            w.mul_(k / w.sum())
            self.task_weights.copy_(w)
        self.last_gradnorm_loss = gradnorm_loss.detach()
        return direction, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, lr={self.lr}, optimizer={self.optimizer_name!r}"
