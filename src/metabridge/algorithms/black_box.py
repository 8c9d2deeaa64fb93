"""What the black-box learners (MANN, SNAIL, the in-context transformer) share.

Black-box adaptation (CS330 lecture 2; Santoro et al. 2016, Mishra et al. 2018) trains
one network to read a task's training set and predict its test points directly,

    y_ts = f_theta(D_i^tr, x_ts),

end to end over tasks: ``min_theta sum_i L(f_theta(D_i^tr, x_ts), y_ts)``. Here the
episode is the sequence (or set) and the tasks are the batch: ``adapt`` reads the support
pairs ``(embed(x), code(y))`` of every task at once into a task state, and the predictor
maps each query, on its own, from that state to class logits or a regression value. No
query sees another query, so a prediction depends on the support set and that query only
(exactly in eval mode, and in training mode too for a backbone without batch norm; a
batch-norm backbone in training mode normalises each forward with its batch's statistics,
as it does for ProtoNet, so there the queries share those statistics).

:class:`BlackBoxLearner` holds the parts every one of them needs:

* the embedding of inputs by any registered backbone (``body``, with running statistics,
  as ProtoNet's: :func:`~metabridge.algorithms.embedding.embed_tasks`);
* the label code of a support example, :meth:`BlackBoxLearner.label_code`: the one-hot label
  (N-way classification) or the target value (regression), followed by a 1 marking the
  example as labelled; a query gets the all-zero code (no label, not labelled);
* the per-episode randomness of training, drawn from a ``torch.Generator`` the module owns
  (seeded by the ``seed`` hyperparameter, saved in ``state_dict`` so an exact resume
  continues it; the global RNG is never touched): the order in which a sequence model
  reads the support (a fresh permutation per task and step) and, with
  ``permute_labels=True``, a fresh relabelling of the classes per task. The
  :class:`~metabridge.tasks.episodes.EpisodeSampler` already assigns the N drawn classes to
  the labels 0..N-1 in a random order per episode (its classes are drawn by random keys),
  so the relabelling is off by default; turn it on for a task source with a fixed labelling;
* at test time (``adapt``) a sequence model reads the support in one fixed order, drawn
  once from ``seed`` for the support size S and the same for every task, so predictions
  are a function of the episode alone, whatever the batch it is evaluated in;
* the checks: N (``n_way``) and the kind of task (classification or regression, d_y) are
  fixed when the learner is built, and a batch of another N, d_y or kind, labels out of
  range, or queries that do not fit the support get a ``ValueError`` naming what the model
  accepts and what was given. K is free (none of the three has a fixed sequence length).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks.batch import TaskBatch
from .base import MetaAlgorithm, Predictor, task_loss
from .embedding import embed_tasks

TASKS = ("classification", "regression")


class BlackBoxLearner(MetaAlgorithm):
    """Base class of the black-box learners (module docstring); not registered itself.

    Subclasses implement :meth:`read_support` (support embeddings and labels -> a task
    state) and :meth:`read_queries` (task state and query embeddings -> outputs, each query
    on its own), and set :attr:`reads_in_order` when the support order matters to them.

    Args:
        body: embedding network ``[B, *x] -> [B, D]``.
        feature_dim: D.
        task: ``"classification"`` (N-way, N = ``out_dim``) or ``"regression"`` (d_y = ``out_dim``).
        out_dim: N or d_y.
        seed: seed of the module's generator (training order / relabelling) and of the
            fixed test-time support order.
        permute_labels: relabel the classes of every training episode at random (the
            episode sampler already does; see the module docstring).
    """

    #: whether the learner reads the support as a sequence (then training shuffles its order)
    reads_in_order: ClassVar[bool] = True

    def __init__(
        self, body: nn.Module, feature_dim: int, task: str, out_dim: int, *, seed: int = 0, permute_labels: bool = False
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"{type(self).__name__}: task must be 'classification' or 'regression' (got {task!r}).")
        if int(out_dim) < 1 or int(feature_dim) < 1:
            raise ValueError(
                f"{type(self).__name__}: out_dim and feature_dim must be >= 1 (got {out_dim}, {feature_dim})."
            )
        if task == "classification" and int(out_dim) < 2:
            raise ValueError(f"{type(self).__name__}: N-way classification needs n_way >= 2 (got {out_dim}).")
        self.body = body
        self.feature_dim = int(feature_dim)
        self.task = task
        self.out_dim = int(out_dim)
        self.seed = int(seed)
        self.permute_labels = bool(permute_labels)
        self._generator = torch.Generator().manual_seed(self.seed)

    # --- properties ---------------------------------------------------------------------
    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def code_dim(self) -> int:
        """Size of a label code: N one-hot entries (or d_y targets) and the labelled flag."""
        return self.out_dim + 1

    @property
    def generator(self) -> torch.Generator:
        """The module's own generator (training order and relabelling)."""
        return self._generator

    # --- the generator travels with the weights --------------------------------------------
    def get_extra_state(self) -> Tensor:
        return self._generator.get_state()

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, Tensor):
            raise ValueError(
                f"{type(self).__name__}: the saved generator state must be a tensor (got {type(state).__name__})."
            )
        self._generator.set_state(state.detach().to("cpu", torch.uint8).contiguous())

    # --- codes ------------------------------------------------------------------------------
    def label_code(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        """``[T, S, code_dim]`` codes of support labels ``[T, S]`` (int64) or targets ``[T, S, d_y]``."""
        value = F.one_hot(y, self.out_dim).to(dtype) if self.is_classification else y.to(dtype)
        return torch.cat([value, value.new_ones(*value.shape[:-1], 1)], dim=-1)

    def query_code(self, like: Tensor) -> Tensor:
        """The all-zero code of queries: ``like [T, Q, D] -> [T, Q, code_dim]``."""
        return like.new_zeros(*like.shape[:-1], self.code_dim)

    # --- checks -----------------------------------------------------------------------------
    def _kind(self) -> str:
        return (
            f"{self.out_dim}-way classification" if self.is_classification else f"regression with d_y = {self.out_dim}"
        )

    def _check_targets(self, y: Tensor, what: str, num_tasks: int) -> None:
        name = type(self).__name__
        if self.is_classification:
            if y.dtype != torch.long:
                raise ValueError(
                    f"{name} was built for {self._kind()} (int64 labels); {what} has dtype {y.dtype} "
                    "(regression targets?). Build it on regression data (num_train_classes=None) "
                    "for regression tasks."
                )
            if y.dim() != 2 or y.shape[0] != num_tasks:
                raise ValueError(
                    f"{what} has shape {tuple(y.shape)}; {name} takes labels [T, S] (T = {num_tasks} tasks)."
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.out_dim):
                raise ValueError(
                    f"{what} holds labels {int(y.min())}..{int(y.max())}; {name} was built for "
                    f"{self.out_dim}-way tasks and takes labels 0..{self.out_dim - 1}."
                )
        else:
            if not y.is_floating_point():
                raise ValueError(
                    f"{name} was built for {self._kind()} (float targets [T, S, d_y]); {what} has "
                    f"dtype {y.dtype} (class labels?). Build it with n_way and num_train_classes "
                    "for classification."
                )
            if y.dim() != 3 or y.shape[0] != num_tasks or y.shape[-1] != self.out_dim:
                raise ValueError(
                    f"{what} has shape {tuple(y.shape)}; {name} was built for {self._kind()} and "
                    f"takes targets [T, S, {self.out_dim}] (T = {num_tasks} tasks)."
                )

    def check_batch(self, batch: TaskBatch, *, with_queries: bool = False) -> None:
        """Refuse a batch this learner was not built for (module docstring), with the fix."""
        name = type(self).__name__
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"{name} takes a TaskBatch (got {type(batch).__name__}).")
        if self.is_classification and not batch.is_classification:
            raise ValueError(
                f"{name} was built for {self._kind()}; this batch is a regression batch "
                "(n_way None). Build it on regression data for regression tasks."
            )
        if not self.is_classification and batch.is_classification:
            raise ValueError(
                f"{name} was built for {self._kind()}; this batch is {batch.n_way}-way "
                "classification. Build it with n_way and num_train_classes for classification."
            )
        if self.is_classification and batch.n_way != self.out_dim:
            raise ValueError(
                f"{name} was built for {self.out_dim}-way tasks (its label code and output have "
                f"{self.out_dim} classes) and accepts only N = {self.out_dim}; this batch is "
                f"{batch.n_way}-way. Build (and train) it with n_way={batch.n_way} for such tasks."
            )
        if not batch.support_x.is_floating_point():
            raise ValueError(
                f"support_x has dtype {batch.support_x.dtype}; {name} takes floating-point inputs "
                "(uint8 images as x.float() / 255)."
            )
        if batch.support_x.dim() < 3:
            raise ValueError(
                f"support_x has shape {tuple(batch.support_x.shape)}; {name} takes inputs "
                "[T, S, *x_shape] (a feature dimension included, e.g. [T, S, 1] for scalars)."
            )
        if batch.support_x.shape[1] == 0:
            raise ValueError(f"{name}: the support set is empty; give at least one example per task.")
        self._check_targets(batch.support_y, "support_y", batch.num_tasks)
        if with_queries:
            self._check_targets(batch.query_y, "query_y", batch.num_tasks)

    # --- the training episode -----------------------------------------------------------------
    def training_episode(self, batch: TaskBatch) -> tuple[TaskBatch, Tensor | None]:
        """The batch with relabelled classes (``permute_labels``), and the order ``[T, S]`` in
        which each task's support is read (``None`` for a set model), drawn from the module's
        generator."""
        t, s = batch.support_y.shape[:2]
        if self.permute_labels and self.is_classification:
            perm = torch.rand(t, self.out_dim, generator=self._generator).argsort(dim=1).to(batch.support_y.device)
            class_ids = batch.class_ids
            if class_ids is not None:  # new label perm[j] names the class old label j named
                class_ids = torch.empty_like(class_ids).scatter_(1, perm.to(class_ids.device), class_ids)
            batch = TaskBatch(
                batch.support_x,
                perm.gather(1, batch.support_y),
                batch.query_x,
                perm.gather(1, batch.query_y),
                class_ids=class_ids,
                task_ids=batch.task_ids,
                n_way=batch.n_way,
            )
        order = None
        if self.reads_in_order:
            order = torch.rand(t, s, generator=self._generator).argsort(dim=1)
        return batch, order

    def fixed_order(self, num_support: int) -> Tensor | None:
        """The fixed order ``[S]`` a sequence model reads a support set of size S in at test time."""
        if not self.reads_in_order:
            return None
        return torch.randperm(num_support, generator=torch.Generator().manual_seed(self.seed))

    # --- the contract -------------------------------------------------------------------------
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Query loss (cross-entropy or MSE) of ``f_theta(D^tr, x_ts)`` over the batch, the
        support read in a fresh random order per task (sequence models)."""
        self.check_batch(batch, with_queries=True)
        episode, order = self.training_episode(batch)
        return task_loss(self._adapt(episode, order)(episode.query_x), episode.query_y)

    def adapt(self, batch: TaskBatch) -> Predictor:
        self.check_batch(batch)
        return self._adapt(batch, self.fixed_order(batch.support_x.shape[1]))

    def _adapt(self, batch: TaskBatch, order: Tensor | None) -> Predictor:
        feats = embed_tasks(self.body, batch.support_x)
        labels = batch.support_y
        if order is not None:
            order = order.to(feats.device)
            if order.dim() == 1:
                feats, labels = feats[:, order], labels[:, order]
            else:
                rows = torch.arange(feats.shape[0], device=feats.device)[:, None]
                feats, labels = feats[rows, order], labels[rows, order]
        state = self.read_support(feats, labels)
        num_tasks, x_shape = batch.num_tasks, tuple(batch.support_x.shape[2:])
        name = type(self).__name__

        def predictor(query_x: Tensor) -> Tensor:
            if not isinstance(query_x, Tensor):
                raise TypeError(f"query inputs must be a tensor (got {type(query_x).__name__}).")
            if (
                query_x.dim() != len(x_shape) + 2
                or query_x.shape[0] != num_tasks
                or tuple(query_x.shape[2:]) != x_shape
            ):
                raise ValueError(
                    f"query inputs have shape {tuple(query_x.shape)}; {name} was adapted on "
                    f"{num_tasks} tasks with inputs {x_shape} and takes "
                    f"[{num_tasks}, Q, {', '.join(map(str, x_shape))}]."
                )
            if query_x.shape[1] == 0:
                return feats.new_zeros(num_tasks, 0, self.out_dim)
            return self.read_queries(state, embed_tasks(self.body, query_x))

        return predictor

    @abstractmethod
    def read_support(self, feats: Tensor, labels: Tensor) -> Any:
        """Task state from the support embeddings ``[T, S, D]`` and labels ``[T, S]`` /
        targets ``[T, S, d_y]``, in reading order."""

    @abstractmethod
    def read_queries(self, state: Any, feats: Tensor) -> Tensor:
        """Outputs ``[T, Q, out_dim]`` of query embeddings ``[T, Q, D]``, each query on its own."""
