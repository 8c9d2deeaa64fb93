"""The contract every loss-weighting method of metabridge's multi-task half implements.

The multi-task objective is min_theta sum_i w_i L_i(theta) (CS330 lecture 2); a weighting
method decides the update of the shared parameters theta from the K per-task losses, and
declares what it reads, so that its cost is known before it runs (:class:`Needs`):

* ``Needs.LOSSES``: the loss values only. One backward pass of a scalar objective
  (:meth:`Weighting.objective`), the cost of equal weighting.
* ``Needs.PARAM_GRADS``: the [K, P] matrix of per-task gradients w.r.t. the shared
  parameters (one batched backward, or K backwards), then :meth:`Weighting.combine`.
* ``Needs.FEATURE_GRADS``: the [K, B*D] per-task gradients w.r.t. the shared features
  (the "upper bound" trick of Sener & Koltun 2018: a backward through the heads only),
  then :meth:`Weighting.combine`; the shared parameters get the combined feature
  gradient back-propagated through the encoder.

For a gradient method, the task-specific parameters (the heads) get the gradient of
sum_i w_i L_i with the weights ``combine`` returns; the shared parameters get the
returned direction. :func:`weighted_backward` does all of this and returns the weights
used (for logging the weight trajectories). The optimiser step stays the caller's.

Methods are ``nn.Module``s: a method with learnable weights (uncertainty weighting,
IMTL-L) registers them as parameters, and the caller adds ``weighting.parameters()`` to
its optimiser. Methods whose weights depend on training history get two hooks:
:meth:`Weighting.after_step` (FAMO reads the losses after the step) and
:meth:`Weighting.end_epoch` (DWA's loss ratios over epochs).

Data parallelism (``weighted_backward(..., ranks=RankMean(context))``): each of W ranks
holds B/W examples of the step's minibatch of B, so each per-task loss, a mean over the
batch, is the mean over ranks of the shard losses, L_k = (1/W) sum_r L_{k,r}, and so is
its gradient. What every method then does is exact, i.e. the single-process update on
the whole minibatch (up to rounding), and equal on every rank:

* loss-only methods (``Needs.LOSSES``: equal, mean, fixed, DWA, RLW, uncertainty, IMTL-L,
  scale-invariant, min-max, FAMO, Nash-MTL between its updates): the K losses are
  all-reduced first and the method reads the whole batch's values L_k (its weights and its
  state — DWA's history, FAMO's logits — are those of one process); the objective
  f(L; phi) is back-propagated through this rank's losses with those values
  (:class:`~metabridge.collectives.WithValue`), which gives sum_k df/dL_k(L) grad L_{k,r},
  and the mean over ranks of that is sum_k df/dL_k(L) grad L_k, the single-process gradient
  (chain rule). The method's own parameters' gradients depend on the values only and are
  already equal on every rank.
* parameter-gradient methods (``Needs.PARAM_GRADS``: MGDA, PCGrad, CAGrad, GradNorm, IMTL(-G),
  Nash-MTL, Aligned-MTL): the [K, P] per-task gradient matrix is linear in the losses, so
  its mean over ranks (one all-reduce, with the losses) is the whole batch's G; ``combine``
  runs on the same G and L on every rank (methods with randomness, PCGrad and RLW, draw it
  from their own identically seeded generators), the shared parameters get its direction,
  and the heads' gradients of sum_k w_k L_{k,r} are averaged (a second all-reduce).
* feature-gradient methods (``Needs.FEATURE_GRADS``: MGDA-UB): the whole batch's feature
  matrix is the rank-ordered concatenation of the shards' features, and dL_k/dZ_r =
  (1/W) dL_{k,r}/dZ_r, so the per-task feature gradients are all-gathered and divided by W
  (the single-process [K, B*D] matrix, shards contiguous in rank order); ``combine`` gives
  the direction d for all B examples, each rank back-propagates W times its own block d_r
  and the mean over ranks of those parameter gradients is sum_r J_r' d_r = J' d.

Exact means: the same arithmetic up to the order of floating-point sums. A model with
batch normalisation in training mode normalises each shard by its own statistics, which
no method can undo (as with DistributedDataParallel without SyncBatchNorm); the built-in
multi-task models have none.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from ..gradients import GradientMode, per_task_gradients, unflatten_into

if TYPE_CHECKING:
    from ...collectives import RankMean

__all__ = ["Needs", "StepRecord", "Weighting", "weighted_backward"]


class Needs(enum.Flag):
    """What a weighting method reads to compute its update."""

    LOSSES = 1
    PARAM_GRADS = 2
    FEATURE_GRADS = 4


@dataclass
class StepRecord:
    """What :func:`weighted_backward` did: the weights on the K losses (detached, [K]) and
    what the method read at this step."""

    weights: Tensor
    needs: Needs
    #: the K losses the method read (detached; the whole minibatch's when data-parallel)
    losses: Tensor | None = None


class Weighting(nn.Module):
    """Base class of the loss-weighting methods (one per file in ``metabridge.multitask.weighting``).

    Subclasses set the class attribute ``needs`` and implement :meth:`objective` (loss-only
    methods) or :meth:`combine` (gradient methods). ``name`` is the registry name.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"{type(self).__name__}: num_tasks must be a positive integer (got {num_tasks!r}).")
        self.num_tasks = num_tasks

    def needs_at(self, step: int) -> Needs:
        """What this method reads at training step ``step`` (Nash-MTL reads gradients only every
        ``update_every`` steps; default: :attr:`needs` at every step)."""
        return self.needs

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Loss-only methods: ``(scalar objective with a graph, weights [K] detached)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement objective()")

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Gradient methods: from per-task gradients ``grads`` [K, P] and the loss values ``losses``
        [K] (detached), return ``(direction [P], weights [K])``: the update direction of the
        shared tensors (a descent direction: it is applied as the gradient) and the weights
        whose weighted loss trains the task-specific parameters."""
        raise NotImplementedError(f"{type(self).__name__} does not implement combine()")

    def after_step(self, recompute_losses: Callable[[], Tensor]) -> None:
        """Called after the optimiser step with a closure that recomputes the K losses on the same
        batch (under no_grad). Default: nothing (the closure is never called, so it costs nothing)."""

    def end_epoch(self) -> None:
        """Called at the end of every epoch (pass over the training split). Default: nothing."""

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, needs={self.needs}"


def _check_losses(losses: Tensor, num_tasks: int) -> None:
    if losses.dim() != 1 or losses.shape[0] != num_tasks:
        raise ValueError(
            f"expected the {num_tasks} per-task losses as a [{num_tasks}] tensor (got shape {tuple(losses.shape)})."
        )
    if not bool(torch.isfinite(losses.detach()).all()):
        bad = [i for i, v in enumerate(losses.detach().tolist()) if not torch.isfinite(torch.tensor(v))]
        raise FloatingPointError(
            f"non-finite loss for task(s) {bad}: {losses.detach().tolist()}; lower the learning "
            "rate or check the targets (regression targets must be finite)."
        )


def weighted_backward(
    weighting: Weighting,
    losses: Tensor,
    shared_params: Sequence[Tensor],
    task_params: Sequence[Tensor] = (),
    features: Tensor | None = None,
    step: int = 0,
    gradient_mode: GradientMode = "auto",
    ranks: RankMean | None = None,
) -> StepRecord:
    """Fill ``.grad`` of the shared and task-specific parameters with ``weighting``'s update.

    Args:
        weighting: the method.
        losses: the K per-task losses [K], with a graph.
        shared_params: the parameters every task uses (the encoder).
        task_params: the task-specific parameters (the heads); they get d(sum_i w_i L_i)/d phi.
        features: the shared representation (output of the encoder, with a graph), required by
            methods that read feature gradients.
        step: the training step (methods that update periodically read it).
        gradient_mode: how per-task gradients are computed (:func:`per_task_gradients`).
        ranks: data-parallel ranks, each holding an equal shard of the minibatch (see the
            module docstring for what is averaged and why the update is exact); every
            trainable parameter's gradient is then the whole minibatch's on every rank.
    """
    if ranks is not None and ranks.enabled:
        return _weighted_backward_distributed(
            weighting, losses, shared_params, task_params, features, step, gradient_mode, ranks
        )
    _check_losses(losses, weighting.num_tasks)
    needs = weighting.needs_at(step)
    shared_params = [p for p in shared_params if p.requires_grad]
    task_params = [p for p in task_params if p.requires_grad]
    if Needs.PARAM_GRADS in needs:
        grads = per_task_gradients(losses, shared_params, mode=gradient_mode)
        direction, weights = weighting.combine(grads, losses.detach())
        weights = weights.detach()
        if task_params:
            torch.autograd.backward((weights.to(losses.dtype) * losses).sum(), inputs=task_params)
        unflatten_into(direction, shared_params)
        return StepRecord(weights, needs)
    if Needs.FEATURE_GRADS in needs:
        if features is None:
            raise ValueError(
                f"{type(weighting).__name__} reads the gradients w.r.t. the shared features: the model "
                "must return its shared features (use a hard-sharing or soft-sharing model, or another "
                "weighting method for a task-conditioned network)."
            )
        grads = per_task_gradients(losses, [features], mode=gradient_mode)
        direction, weights = weighting.combine(grads, losses.detach())
        weights = weights.detach()
        if task_params:
            torch.autograd.backward((weights.to(losses.dtype) * losses).sum(), inputs=task_params, retain_graph=True)
        torch.autograd.backward(
            features, grad_tensors=direction.view_as(features).to(features.dtype), inputs=shared_params
        )
        missed = [p for p in shared_params if p.grad is None]  # not upstream of the features
        if missed:
            raise ValueError(
                f"{type(weighting).__name__} updates the shared parameters through the shared features, "
                f"but {len(missed)} shared parameter tensor(s) lie downstream of them (e.g. a shared "
                "hypernetwork generator) and would get no update: count them as task-specific (e.g. "
                "HypernetworkHead(share_generator=False)) or use a parameter-gradient method (mgda)."
            )
        return StepRecord(weights, needs)
    total, weights = weighting.objective(losses)
    total.backward()
    return StepRecord(weights.detach(), needs)


def _missed_through_features(weighting: Weighting, shared_params: Sequence[Tensor]) -> None:
    missed = [p for p in shared_params if p.grad is None]
    if missed:
        raise ValueError(
            f"{type(weighting).__name__} updates the shared parameters through the shared features, "
            f"but {len(missed)} shared parameter tensor(s) lie downstream of them (e.g. a shared "
            "hypernetwork generator) and would get no update: count them as task-specific (e.g. "
            "HypernetworkHead(share_generator=False)) or use a parameter-gradient method (mgda)."
        )


def _weighted_backward_distributed(
    weighting: Weighting,
    losses: Tensor,
    shared_params: Sequence[Tensor],
    task_params: Sequence[Tensor],
    features: Tensor | None,
    step: int,
    gradient_mode: GradientMode,
    ranks: RankMean,
) -> StepRecord:
    """:func:`weighted_backward` over the ranks' shards (the three cases of the module docstring)."""
    from ...collectives import WithValue

    needs = weighting.needs_at(step)
    shared_params = [p for p in shared_params if p.requires_grad]
    task_params = [p for p in task_params if p.requires_grad]
    model_params = shared_params + task_params
    if Needs.PARAM_GRADS in needs:
        local = per_task_gradients(losses, shared_params, mode=gradient_mode)
        grads, whole = ranks.mean_many([local, losses.detach()])  # one all-reduce: G and L
        _check_losses(whole, weighting.num_tasks)  # the same verdict on every rank
        direction, weights = weighting.combine(grads, whole)
        weights = weights.detach()
        if task_params:
            torch.autograd.backward((weights.to(losses.dtype) * losses).sum(), inputs=task_params)
            ranks.average_grads(task_params)
        unflatten_into(direction, shared_params)
        return StepRecord(weights, needs, whole)
    if Needs.FEATURE_GRADS in needs:
        if features is None:
            raise ValueError(
                f"{type(weighting).__name__} reads the gradients w.r.t. the shared features: the model "
                "must return its shared features (use a hard-sharing or soft-sharing model, or another "
                "weighting method for a task-conditioned network)."
            )
        k, w = weighting.num_tasks, ranks.world_size
        local = per_task_gradients(losses, [features], mode=gradient_mode).reshape(k, features.shape[0], -1)
        whole = ranks.mean(losses.detach())
        _check_losses(whole, k)
        grads = ranks.gather_cat(local, dim=1).reshape(k, -1) / w  # [K, B*D], shards in rank order
        direction, weights = weighting.combine(grads, whole)
        weights = weights.detach()
        mine = direction.view(w, -1)[ranks.context.rank]
        if task_params:
            torch.autograd.backward((weights.to(losses.dtype) * losses).sum(), inputs=task_params, retain_graph=True)
        torch.autograd.backward(
            features, grad_tensors=(w * mine).view_as(features).to(features.dtype), inputs=shared_params
        )
        _missed_through_features(weighting, shared_params)
        ranks.average_grads(model_params)
        return StepRecord(weights, needs, whole)
    whole = ranks.mean(losses.detach())
    _check_losses(whole, weighting.num_tasks)
    total, weights = weighting.objective(WithValue.apply(losses, whole))
    total.backward()
    ranks.average_grads(model_params)
    return StepRecord(weights.detach(), needs, whole)
