"""ANIL, "almost no inner loop" (Raghu, Raghu, Bengio & Vinyals, ICLR 2020).

MAML's bilevel problem with the inner loop restricted to the head:

    phi_i^(s+1) = phi_i^(s) - alpha grad_phi L(h_phi(f_theta(x)); D_i^tr),  phi^(0) = phi_0,

while the body f_theta is shared and only learned in the outer loop (through
the adapted head, second order unless ``first_order``). The body runs once per
task on the support set; the inner steps touch only the small head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

from torch import Tensor, nn
from torch.func import functional_call

from ..models.batched_conv4 import BatchNormKernel, batched_conv4_body, batched_head
from .base import task_loss
from .batched_inner_loop import batched_sgd_inner_loop, expand_to_tasks
from .execution import ExecutionOptions
from .inner_loop import LossFn, Params, sgd_inner_loop
from .maml import MAML, LearnedLR


def sub_params(params: Params, prefix: str) -> Params:
    """The entries of ``params`` under ``prefix`` (e.g. ``"head."``), with it stripped."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class ANIL(MAML):
    """ANIL over a model with ``body`` and ``head`` submodules.

    Args:
        model: an ``nn.Module`` with ``body`` (shared, outer loop only) and ``head``
            (adapted in the inner loop) submodules.
        inner_lr: alpha (initial value when learned); > 0.
        inner_steps: k head steps during meta-training; >= 1.
        first_order: drop the second-order terms.
        learn_inner_lr: ``None``, ``"per_step"`` (MAML++ LSLR) or ``"per_parameter"`` (Meta-SGD),
            over the head's tensors.
        eval_steps: steps at test time (default ``inner_steps``).
        inner_loss: the inner (support) loss for one task; default :func:`task_loss` (see :class:`MAML`).
        outer_loss: the outer (query) loss for one task; default :func:`task_loss`.
        execution: :class:`ExecutionOptions` (or a dict of its fields); default ``ExecutionOptions()``.
    """

    name: ClassVar[str] = "anil"

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        learn_inner_lr: LearnedLR = None,
        eval_steps: int | None = None,
        *,
        inner_loss: LossFn | None = None,
        outer_loss: LossFn | None = None,
        execution: ExecutionOptions | Mapping[str, Any] | None = None,
    ) -> None:
        if not (
            isinstance(getattr(model, "body", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module)
        ):
            raise ValueError("ANIL needs a model with `body` and `head` submodules (every metabridge model has them).")
        super().__init__(
            model,
            inner_lr,
            inner_steps,
            first_order,
            learn_inner_lr,
            eval_steps,
            inner_loss=inner_loss,
            outer_loss=outer_loss,
            execution=execution,
        )

    def adapted_names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters() if n.startswith("head.")]

    def _adapt_task(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        hidden = self._hidden_stats
        body, head_module = cast(nn.Module, self.model.body), cast(nn.Module, self.model.head)
        feats = functional_call(body, sub_params({**params, **hidden}, "body."), (xs,))
        head = {k: v for k, v in params.items() if k.startswith("head.")}

        def head_forward(p: Params, f: Tensor) -> Tensor:
            return functional_call(head_module, sub_params({**p, **hidden}, "head."), (f,))

        fast = sgd_inner_loop(
            head_forward, head, feats, ys, steps, self.step_size, first_order, self.inner_loss or task_loss
        )
        return {**params, **fast}

    def _batch_norm_kernel(self) -> BatchNormKernel:
        """ANIL's body is differentiated once (only the head adapts): ATen's batch norm under "auto"."""
        choice = self.execution.batch_norm
        return "aten" if choice == "auto" else choice

    def _batched_adapt(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        """Body features of every task's support set in one call (shared weights, per-task
        batch norm), then the head's inner loop for all tasks at once."""
        body = {k: v for k, v in params.items() if not k.startswith("head.")}
        ex = self.execution
        feats = batched_conv4_body(body, xs, ex.conv_backend, ex.channels_last, self._batch_norm_kernel())
        names = self.adapted_names()
        fast = batched_sgd_inner_loop(
            batched_head,
            expand_to_tasks(params, names, xs.shape[0]),
            feats,
            ys,
            steps,
            self.step_size,
            first_order,
            self.execution.checkpoint_inner,
            self.inner_loss,
        )
        return {**body, **fast}
