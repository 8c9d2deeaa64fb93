"""The one contract every algorithm in metabridge follows.

Wang, Zhao & Li (ICML 2021, Sec. 3) write MTL and gradient-based meta-learning as
one problem: shared parameters theta, per-task parameters phi_i, and

    min_theta  sum_i  L_i(theta, phi_i(theta);  D_i)

where the methods differ only in how phi_i is obtained (a free head row for MTL, k
SGD steps for MAML, a closed-form solver for MetaOptNet, class means for ProtoNet).
So an algorithm here does two things:

* ``meta_loss(batch)``: a batch of training tasks -> the scalar whose gradient is the
  outer update (for Reptile, a surrogate whose gradient is theta - phi);
* ``adapt(batch)``: the support sets of a batch of tasks -> a predictor for their
  queries (``predict(batch)`` applies it to ``batch.query_x``).

Training, evaluation, benchmarks and the CLI only ever call these. On top of them every
algorithm has ``adapt_support(support_x, support_y)`` (adaptation without queries, for
one task or a batch), a ``backbone`` property (the embedding network), and a classmethod
``build(make_model, data, **hparams)`` through which the registry constructs built-in and
user-registered algorithms alike (:data:`SUPPLIED_ARGS` is the rule).
"""

from __future__ import annotations

import functools
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks.batch import TaskBatch

#: A per-batch predictor: query inputs ``[T, Q, *x_shape]`` -> outputs ``[T, Q, out]``.
Predictor = Callable[[Tensor], Tensor]


def task_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for int64 labels, mean squared error for float targets.

    ``pred`` is ``[..., n_way]`` logits or ``[..., d_y]`` regressions; the mean runs
    over every leading dimension (examples, and tasks when batched).
    """
    if target.dtype == torch.long:
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))
    if pred.shape != target.shape:
        raise ValueError(f"regression prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}.")
    return F.mse_loss(pred, target)


def per_task_score(pred: Tensor, target: Tensor) -> Tensor:
    """``[T]`` per-task accuracy (classification) or mean squared error (regression)."""
    if target.dtype == torch.long:
        return (pred.argmax(-1) == target).double().mean(dim=1)
    return ((pred - target) ** 2).double().flatten(1).mean(dim=1)


@dataclass(frozen=True)
class DataInfo:
    """What building an algorithm needs to know about the data.

    Attributes:
        out_dim: output size of one task's predictor: N for N-way classification
            (``n_way``), d_y for regression.
        in_channels: image channels (input dimension for an MLP).
        image_size: image side in pixels (ignored by an MLP).
        num_train_classes: classes of the training split (classification); ``None``
            means regression.
        num_train_tasks: size of a finite training task pool (regression), or ``None``.
    """

    out_dim: int
    in_channels: int = 1
    image_size: int = 28
    num_train_classes: int | None = None
    num_train_tasks: int | None = None

    @property
    def is_classification(self) -> bool:
        return self.num_train_classes is not None

    @property
    def n_way(self) -> int | None:
        """N of the N-way tasks (classification), ``None`` for regression."""
        return self.out_dim if self.is_classification else None


class ModelMaker(Protocol):
    """Builds the backbone+head network an algorithm is constructed on.

    ``make_model(out_dim, running_stats=..., channels_last=...)`` returns an
    ``nn.Module`` with ``.body`` (embedding ``[B, *x] -> [B, D]``), ``.head`` (linear
    ``D -> out_dim``) and ``.feature_dim`` (D). ``running_stats=False`` gives batch norm
    without running statistics (every forward normalizes with its own batch: MAML's
    per-task, transductive convention); ``True`` keeps running statistics (embedding
    methods, joint training). ``channels_last`` converts the weights to channels-last
    memory format (faster for one large batch through a convolutional body).
    """

    def __call__(self, out_dim: int, *, running_stats: bool, channels_last: bool = False) -> nn.Module: ...


#: Constructor arguments :meth:`MetaAlgorithm.build` fills in itself, by name (the rest
#: are the user's hyperparameters):
#:
#: * ``model``: the full network, batch norm without running statistics (per task);
#: * ``body``: the network's embedding part, with running statistics, channels-last;
#: * ``feature_dim``: the embedding size D;
#: * ``num_train_heads``: training classes (classification) or training tasks (regression);
#: * ``task``: ``"classification"`` or ``"regression"``;
#: * ``out_dim``: :attr:`DataInfo.out_dim`.
SUPPLIED_ARGS: frozenset[str] = frozenset({"model", "body", "feature_dim", "num_train_heads", "task", "out_dim"})

A = TypeVar("A", bound="MetaAlgorithm")


def _constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    params.pop("self", None)
    return params


_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels")
_CLASSES = re.compile(r"Target (-?\d+) is out of bounds")


def explain_input_error(algorithm: str, exc: Exception) -> Exception | None:
    """A one-line error naming the fix for the two ways a batch commonly misfits a network:
    images with other channels than the first convolution takes, and labels beyond the
    predictor's N outputs; ``None`` for any other error (re-raised as it is)."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and (m := _CHANNELS.search(text)):
        want, got = m.groups()
        return ValueError(
            f"{algorithm}'s network takes {want}-channel images but the batch has {got} channels: "
            f"build it with in_channels={got} (build_algorithm(..., in_channels={got}))."
        )
    if isinstance(exc, IndexError) and (m := _CLASSES.search(text)):
        return ValueError(
            f"{algorithm} predicts fewer classes than the episodes' labels (label {m.group(1)} is out "
            "of range): build it with n_way equal to the episodes' n_way."
        )
    return None


def _explains_input_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with :func:`explain_input_error` applied to what it raises (no cost when nothing is raised)."""

    @functools.wraps(method)
    def wrapper(self: MetaAlgorithm, batch: TaskBatch, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, batch, *args, **kwargs)
        except (RuntimeError, IndexError) as exc:
            clear = explain_input_error(type(self).__name__, exc)
            if clear is None:
                raise
            raise clear from exc

    wrapper.__explains_input_errors__ = True  # type: ignore[attr-defined]
    return wrapper


class MetaAlgorithm(nn.Module, ABC):
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str] = "algorithm"
    #: constructor arguments :meth:`build` supplies (not user hyperparameters); a class
    #: that overrides :meth:`build` to supply others lists them here.
    build_supplies: ClassVar[frozenset[str]] = SUPPLIED_ARGS
    #: whether :meth:`meta_loss` may run under ``torch.autocast(device_type, dtype=torch.bfloat16)``:
    #: the body in bfloat16, with every precision-sensitive part (heads, solvers, inner
    #: loops) kept in float32/float64 by the algorithm itself. True for the first-order
    #: embedding methods (MTL, ProtoNet, MetaOptNet), whose heads do so
    #: (:func:`~metabridge.algorithms.embedding.autocast_off`); an algorithm that does not
    #: (second-order inner loops, black-box learners) keeps the default False.
    supports_autocast: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's ``meta_loss`` and ``adapt`` turn a batch that misfits the network
        (channels, number of classes) into one clear error instead of torch's."""
        super().__init_subclass__(**kwargs)
        for name in ("meta_loss", "adapt"):
            method = cls.__dict__.get(name)
            if (
                callable(method)
                and not getattr(method, "__explains_input_errors__", False)
                and not getattr(method, "__isabstractmethod__", False)
            ):
                setattr(cls, name, _explains_input_errors(method))

    @abstractmethod
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Scalar training loss of a batch of tasks; its gradient is the outer update."""

    @abstractmethod
    def adapt(self, batch: TaskBatch) -> Predictor:
        """Adapt to each task's support set; return a predictor for that task's inputs."""

    def predict(self, batch: TaskBatch) -> Tensor:
        """Query predictions ``[T, Q, out]`` after adapting on the support sets."""
        return self.adapt(batch)(batch.query_x)

    def close(self) -> None:
        """Release what the algorithm holds besides its tensors (worker threads); a no-op
        here. The algorithm stays usable afterwards."""

    # --- construction by the registry ---------------------------------------------------
    @classmethod
    def build(cls: type[A], make_model: ModelMaker, data: DataInfo, **hparams: Any) -> A:
        """Construct ``cls`` for ``data`` over the network ``make_model`` builds.

        The default rule fills in every constructor argument named in
        :data:`SUPPLIED_ARGS` that the constructor declares and passes ``hparams`` as the
        rest: a constructor taking ``model`` gets the whole network with per-task batch
        norm (the MAML family), one taking ``body`` gets its embedding part with running
        statistics (ProtoNet, MetaOptNet, MTL, which also take ``feature_dim``, and MTL
        ``num_train_heads``, ``task`` and ``out_dim``). A class needing anything else overrides
        this classmethod (DRS does: its head spans the training classes).
        """
        params = _constructor_params(cls)
        if "model" not in params and "body" not in params:
            raise TypeError(
                f"{cls.__name__}.__init__ takes neither `model` nor `body`, so the registry cannot "
                "give it a network; take one of them, or override the classmethod "
                "build(cls, make_model, data, **hparams)."
            )
        net = make_model(data.out_dim, running_stats="model" not in params, channels_last="model" not in params)
        supplied: dict[str, Any] = {}
        if "model" in params:
            supplied["model"] = net
        if "body" in params:
            supplied["body"] = net.body
        if "feature_dim" in params:
            supplied["feature_dim"] = int(net.feature_dim)  # type: ignore[arg-type]  # an int attribute of the net
        if "num_train_heads" in params:
            heads = data.num_train_classes if data.is_classification else data.num_train_tasks
            if heads is None:
                raise ValueError(
                    f"{cls.__name__} needs num_train_classes (classification) or num_train_tasks "
                    "(regression: a finite training task pool) to size its heads."
                )
            supplied["num_train_heads"] = int(heads)
        if "task" in params:
            supplied["task"] = "classification" if data.is_classification else "regression"
        if "out_dim" in params:
            supplied["out_dim"] = data.out_dim
        return cls(**supplied, **hparams)

    # --- the embedding network ------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The embedding network f_theta (``self.body`` here; the MAML family: ``self.model.body``)."""
        body = self.__dict__.get("_modules", {}).get("body")
        if isinstance(body, nn.Module):
            return body
        raise NotImplementedError(
            f"{type(self).__name__} has no `body` submodule; override the `backbone` "
            "property to return its embedding network."
        )

    # --- adaptation without queries ---------------------------------------------------------
    def adapt_support(self, support_x: Tensor, support_y: Tensor) -> Predictor:
        """Adapt to labelled support examples alone; return a predictor for new inputs.

        One task: ``support_x [S, *x_shape]`` with ``support_y [S]`` int64 labels
        ``0..N-1`` (every class present) or ``[S, d_y]`` float targets; the predictor maps
        ``[Q, *x_shape] -> [Q, out]``. A batch of tasks: ``[T, S, *x_shape]`` with
        ``[T, S]`` / ``[T, S, d_y]``; the predictor maps ``[T, Q, *x_shape] -> [T, Q, out]``.
        The rank of ``support_y`` tells the two apart. Equivalent to :meth:`adapt` on a
        :class:`TaskBatch` with no queries; like ``adapt``, it runs in the module's current
        mode (call ``.eval()`` first for test-time behaviour, as evaluation does).
        """
        batch, single = support_batch(support_x, support_y)
        predictor = self.adapt(batch)
        x_shape = tuple(batch.support_x.shape[2:])
        num_tasks = batch.num_tasks

        def predict(query_x: Tensor) -> Tensor:
            if not isinstance(query_x, Tensor):
                raise TypeError(f"query inputs must be a tensor (got {type(query_x).__name__}).")
            if single:
                if tuple(query_x.shape[1:]) != x_shape:
                    raise ValueError(
                        f"query inputs have shape {tuple(query_x.shape)}; this predictor was adapted "
                        f"on one task and takes [Q, {', '.join(map(str, x_shape))}]."
                    )
                return predictor(query_x.unsqueeze(0)).squeeze(0)
            if (
                query_x.dim() != len(x_shape) + 2
                or query_x.shape[0] != num_tasks
                or tuple(query_x.shape[2:]) != x_shape
            ):
                raise ValueError(
                    f"query inputs have shape {tuple(query_x.shape)}; this predictor was adapted on "
                    f"{num_tasks} tasks and takes [{num_tasks}, Q, {', '.join(map(str, x_shape))}]."
                )
            return predictor(query_x)

        return predict


def support_batch(support_x: Tensor, support_y: Tensor) -> tuple[TaskBatch, bool]:
    """Check support examples and stack them as a :class:`TaskBatch` with no queries.

    Returns the batch and whether the input was one task (see
    :meth:`MetaAlgorithm.adapt_support` for the accepted shapes). Raises ``ValueError``
    with the fix for labels that are not int64 ``0..N-1`` with every class present in
    every task, for regression targets without an output dimension, and for inputs and
    targets that do not pair up.
    """
    if not isinstance(support_x, Tensor) or not isinstance(support_y, Tensor):
        raise TypeError("support_x and support_y must be tensors.")
    if support_y.dtype == torch.long:
        classification, ranks = True, (1, 2)
    elif support_y.is_floating_point():
        classification, ranks = False, (2, 3)
    else:
        raise ValueError(
            f"support_y has dtype {support_y.dtype}: give int64 class labels (support_y.long()) "
            "or float regression targets."
        )
    if support_y.dim() not in ranks:
        if not classification and support_y.dim() == 1:
            raise ValueError(
                f"regression targets need an output dimension: support_y has shape "
                f"{tuple(support_y.shape)}; pass support_y.unsqueeze(-1) ([S, d_y])."
            )
        kind = "labels [S] (one task) or [T, S]" if classification else "targets [S, d_y] (one task) or [T, S, d_y]"
        raise ValueError(f"support_y has shape {tuple(support_y.shape)}; expected {kind}.")
    single = support_y.dim() == ranks[0]
    x, y = (support_x.unsqueeze(0), support_y.unsqueeze(0)) if single else (support_x, support_y)
    if x.dim() < 3 or x.shape[:2] != y.shape[:2]:
        lead = "S" if single else "T, S"
        raise ValueError(
            f"support_x has shape {tuple(support_x.shape)} but support_y {tuple(support_y.shape)}; "
            f"inputs must be [{lead}, *x_shape] with the same leading size(s) as the targets "
            "(a feature dimension included, e.g. [S, 1] for scalar inputs)."
        )
    if not x.is_floating_point():
        raise ValueError(
            f"support_x has dtype {x.dtype}; give floating-point inputs (e.g. uint8 images as "
            "x.float() / 255, normalized as in training)."
        )
    if x.shape[1] == 0:
        raise ValueError("the support set is empty; give at least one example per task.")
    n_way = None
    if classification:
        if int(y.min()) < 0:
            raise ValueError(
                f"support labels must be 0..N-1 (got {int(y.min())}); relabel each task with "
                "torch.unique(y, return_inverse=True)[1]."
            )
        n_way = int(y.max()) + 1
        counts = torch.stack([torch.bincount(t, minlength=n_way) for t in y])
        missing = (counts == 0).nonzero()
        if len(missing):
            task, cls = (int(v) for v in missing[0])
            raise ValueError(
                f"task {task} has no support example of class {cls} although its labels go up to "
                f"{n_way - 1}: labels must be 0..N-1 with every class present in every task "
                "(relabel with torch.unique(y, return_inverse=True)[1])."
            )
    batch = TaskBatch(x, y, x[:, :0], y[:, :0], n_way=n_way)
    return batch, single
