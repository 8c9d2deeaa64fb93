"""MAML (Finn, Abbeel & Levine, ICML 2017), second or first order, with any number
of inner steps and optional learned step sizes.

Meta-objective (their Eq. 1-2, with k inner steps):

    min_theta  (1/T) sum_i  L(phi_i^(k)(theta); D_i^ts),
    phi_i^(s+1) = phi_i^(s) - alpha_s grad L(phi_i^(s); D_i^tr),   phi_i^(0) = theta.

Second order differentiates through the unrolled steps (Hessian-vector products);
``first_order=True`` drops them (FOMAML). ``learn_inner_lr="per_step"`` learns one
alpha per step and parameter tensor (MAML++'s LSLR, Antoniou et al. 2019);
``"per_parameter"`` learns one alpha per weight, shared across steps (Meta-SGD).

How the meta-batch is run (task-batched Conv-4, vmap, loop; chunking, threads,
checkpointing) is set by one :class:`~metabridge.algorithms.execution.ExecutionOptions`
shared by the whole MAML family; every mode gives the same numbers
(``tests/test_fast_paths.py``).

Batch norm: MAML normalizes every forward with the statistics of the batch at hand (one
task's support or query set: Finn et al.'s transductive convention, in training and at
test time). A model whose ``BatchNorm`` layers keep running statistics is accepted; those
buffers are neither read nor written by MAML's inner and outer loops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.batched_conv4 import BatchNormKernel, batched_conv4, supports_batched_conv4
from ..tasks.batch import TaskBatch
from .base import MetaAlgorithm, Predictor, task_loss
from .batched_inner_loop import WorkerPool, batched_sgd_inner_loop, chunked_meta_loss, expand_to_tasks, summed_task_loss
from .execution import ExecutionOptions
from .inner_loop import LossFn, Params, StepSize, TaskBatching, check_positive, map_tasks, sgd_inner_loop

LearnedLR = Literal["per_step", "per_parameter"] | None


def check_steps(allow_zero: bool = False, **values: Any) -> None:
    """Raise a ValueError naming every step count that is not a positive (or >= 0) int."""
    low = 0 if allow_zero else 1
    bad = {k: v for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v < low}
    if bad:
        names = ", ".join(f"{k}={v!r}" for k, v in bad.items())
        raise ValueError(f"{names}: must be an int >= {low}.")


def running_stat_buffers(model: nn.Module) -> dict[str, Any]:
    """``{name: None}`` for the running statistics of every batch-norm layer of ``model``.

    Passed to ``functional_call`` on top of the parameters, they make each such layer
    normalize with the batch's own statistics and skip its in-place buffer updates (which
    ``torch.func`` transforms refuse), so the buffers are never touched.
    """
    out: dict[str, None] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                if getattr(module, buf, None) is not None:
                    out[f"{prefix}.{buf}" if prefix else buf] = None
    return out


#: tasks per chunk of ``task_chunk="auto"`` on CPU at most (see :func:`auto_task_chunk`)
CPU_AUTO_TASK_CHUNK = 4
#: support images per chunk that ``task_chunk="auto"`` aims at on CPU (see :func:`auto_task_chunk`)
CPU_AUTO_CHUNK_SUPPORT = 20


def auto_task_chunk(num_tasks: int, threads: int, support_size: int = 5) -> int:
    """``task_chunk="auto"`` on CPU: enough tasks per chunk that the inner loop sees about
    :data:`CPU_AUTO_CHUNK_SUPPORT` support images (``support_size`` = N*K per task), at most
    :data:`CPU_AUTO_TASK_CHUNK`, at least 1, and fewer when the meta-batch would otherwise
    leave a worker thread without a chunk. 5-way 1-shot: 4 tasks; 5-way 5-shot: 1.

    Why: a one-task Conv-4 chunk runs ~3,400 small operators per task (per-op dispatch and
    autograd bookkeeping, not arithmetic), and tasks folded into one grouped network run the
    same operators once for all of them; that pays while the inner loop's convolutions are
    small. At 1-shot (5 support images per task) chunks of 4 are faster than one task per
    chunk; at 5-shot (25 support images) the convolutions are large enough that grouping
    gains nothing and only multiplies the peak memory, hence the support-image budget per
    chunk (experiments/speed_vs_peers: its runs with learn2learn time four-task chunks
    against ``metabridge:c1`` at 1-shot and 5-shot). The results do not change with the
    chunk (the grouped network computes each task exactly as alone:
    ``tests/algorithms/test_fast_paths.py``)."""
    by_size = max(1, min(CPU_AUTO_TASK_CHUNK, CPU_AUTO_CHUNK_SUPPORT // max(1, support_size)))
    return max(1, min(by_size, -(-num_tasks // max(1, threads))))


class MAML(MetaAlgorithm):
    """Model-agnostic meta-learning over a functional ``model``.

    Args:
        model: any ``nn.Module`` (its parameters are theta); ``.body`` / ``.head`` are
            only needed by ANIL and the ``backbone`` property.
        inner_lr: alpha (initial value when learned); > 0.
        inner_steps: k steps during meta-training; >= 1.
        first_order: FOMAML (drop second-order terms).
        learn_inner_lr: ``None``, ``"per_step"`` (MAML++ LSLR) or ``"per_parameter"`` (Meta-SGD).
        eval_steps: steps at test time (default ``inner_steps``); learned step sizes
            beyond the trained steps reuse the last one.
        inner_loss: the support loss of the inner loop, ``(pred [S, out], target [S] or
            [S, d_y]) -> scalar`` for one task; default cross-entropy for int64 labels and
            mean squared error for float targets (:func:`task_loss`). It is traced by
            ``torch.func`` (``grad``, and ``vmap`` with ``task_batching="vmap"``): use
            tensor operations only (no ``.item()``), or ``task_batching="loop"``.
        outer_loss: the query loss of the outer objective, same signature; default
            :func:`task_loss`. The meta-loss is its mean over the tasks.
        execution: how the meta-batch is run (:class:`ExecutionOptions`, or a dict of its
            fields, e.g. ``{"task_chunk": 2}``); default ``ExecutionOptions()``. Speed and
            memory only, never the numbers.
    """

    name: ClassVar[str] = "maml"

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
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (got {type(model).__name__}).")
        check_positive(inner_lr=inner_lr)
        check_steps(inner_steps=inner_steps)
        if eval_steps is not None:
            check_steps(eval_steps=eval_steps)
        for label, fn in (("inner_loss", inner_loss), ("outer_loss", outer_loss)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{label} must be a callable (pred, target) -> scalar loss, or None (got {fn!r}).")
        self.model = model
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.eval_steps = inner_steps if eval_steps is None else eval_steps
        self.inner_loss, self.outer_loss = inner_loss, outer_loss
        #: BN running statistics hidden from every functional forward (module docstring)
        self._hidden_stats = self._hidden_buffers()
        self.execution = ExecutionOptions.coerce(execution)
        self.batched = self._resolve_batched(self.execution.task_batching)
        #: the per-task mapping used where the batched path does not apply
        mode = self.execution.task_batching
        self._task_map: TaskBatching = "vmap" if mode in ("auto", "batched") else mode  # type: ignore[assignment]
        #: threads of chunked meta-losses (task_threads > 1), started on first use; close() ends them
        self._workers = WorkerPool()
        self.learn_inner_lr = learn_inner_lr
        names = self.adapted_names()
        ref = next(model.parameters())
        self.inner_lrs: nn.Parameter | nn.ParameterList
        if learn_inner_lr == "per_step":
            self.inner_lrs = nn.Parameter(
                torch.full((inner_steps, len(names)), float(inner_lr), dtype=ref.dtype, device=ref.device)
            )
        elif learn_inner_lr == "per_parameter":
            self.inner_lrs = nn.ParameterList(
                [nn.Parameter(torch.full_like(p, float(inner_lr))) for n, p in model.named_parameters() if n in names]
            )
        elif learn_inner_lr is not None:
            raise ValueError(f"learn_inner_lr must be None, 'per_step' or 'per_parameter' (got {learn_inner_lr!r}).")

    @property
    def backbone(self) -> nn.Module:
        """The embedding network ``self.model.body``."""
        body = getattr(self.model, "body", None)
        if not isinstance(body, nn.Module):
            raise NotImplementedError(
                f"this {type(self).__name__}'s model ({type(self.model).__name__}) has no "
                "`body` submodule, so it has no separate embedding network."
            )
        return body

    def close(self) -> None:
        """Shut down the worker threads of chunked meta-losses (``task_threads > 1``).

        They also end when the algorithm is garbage collected; the algorithm stays usable
        (a later chunked ``meta_loss`` starts them again).
        """
        self._workers.close()

    def _hidden_buffers(self) -> dict[str, Any]:
        """Buffers replaced by ``None`` in functional forwards: BN running statistics."""
        return running_stat_buffers(self.model)

    def supports_batched(self) -> bool:
        """Whether this algorithm's model has a task-batched forward."""
        return supports_batched_conv4(self.model)

    def _resolve_batched(self, mode: str) -> bool:
        if mode == "batched" and not self.supports_batched():
            raise ValueError(
                "task_batching='batched' needs a Conv4 model without running statistics "
                "(track_running_stats=False); use 'vmap' or 'loop' for other models."
            )
        return mode == "batched" or (mode == "auto" and self.supports_batched())

    # --- what is adapted, and how far each step goes -------------------------------
    def adapted_names(self) -> list[str]:
        """Names (in ``self.model``) of the parameters the inner loop adapts."""
        return [n for n, _ in self.model.named_parameters()]

    def step_size(self, step: int) -> dict[str, Tensor | float]:
        """alpha_s for every adapted parameter tensor."""
        names = self.adapted_names()
        if self.learn_inner_lr == "per_step":
            rates: Tensor = self.inner_lrs  # type: ignore[assignment]  # a [steps, tensors] Parameter here
            row = rates[min(step, rates.shape[0] - 1)]
            return {n: row[i] for i, n in enumerate(names)}
        if self.learn_inner_lr == "per_parameter":
            return dict(zip(names, self.inner_lrs))
        return {n: self.inner_lr for n in names}

    # --- one task -------------------------------------------------------------------
    def _forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model, {**params, **self._hidden_stats}, (x,))

    def _adapt_task(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        names = self.adapted_names()
        fixed = {k: v for k, v in params.items() if k not in names}
        fast = {k: params[k] for k in names}

        def forward(p: Params, x: Tensor) -> Tensor:
            return self._forward({**fixed, **p}, x)

        step: StepSize = self.step_size
        fast = sgd_inner_loop(forward, fast, xs, ys, steps, step, first_order, self.inner_loss or task_loss)
        return {**fixed, **fast}

    def _task_query_loss(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        fast = self._adapt_task(params, xs, ys, self.inner_steps, self.first_order)
        return (self.outer_loss or task_loss)(self._forward(fast, xq), yq)

    def _params(self) -> Params:
        """theta and the model's buffers (except the hidden batch-norm statistics)."""
        buffers = {k: v for k, v in self.model.named_buffers() if k not in self._hidden_stats}
        return dict(self.model.named_parameters()) | buffers

    # --- all tasks at once (task_batching="batched") -------------------------------
    def _batched_forward(self, params: Params, x: Tensor) -> Tensor:
        """``[T, B, ...] -> [T, B, out]`` with per-task (or shared) ``params``."""
        ex = self.execution
        return batched_conv4(params, x, ex.conv_backend, ex.channels_last, self._batch_norm_kernel())

    def _batch_norm_kernel(self) -> BatchNormKernel:
        """``ExecutionOptions.batch_norm`` resolved: ``"auto"`` takes the closed-form double
        backward only where batch norm is differentiated twice (second-order inner loop
        through the body; the device choice is then batched_conv4's), ATen's otherwise."""
        choice = self.execution.batch_norm
        return choice if choice != "auto" else ("aten" if self.first_order else "auto")

    def _batched_adapt(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        """phi_i^(k) of every task, stacked: the adapted tensors get a leading task dimension."""
        names = self.adapted_names()
        fixed = {k: v for k, v in params.items() if k not in names}

        def forward(p: Params, x: Tensor) -> Tensor:
            return self._batched_forward({**fixed, **p}, x)

        fast = batched_sgd_inner_loop(
            forward,
            expand_to_tasks(params, names, xs.shape[0]),
            xs,
            ys,
            steps,
            self.step_size,
            first_order,
            self.execution.checkpoint_inner,
            self.inner_loss,
        )
        return {**fixed, **fast}

    def _batched_meta_loss(self, batch: TaskBatch) -> Tensor:
        fast = self._batched_adapt(self._params(), batch.support_x, batch.support_y, self.inner_steps, self.first_order)
        pred = self._batched_forward(fast, batch.query_x)
        if self.outer_loss is None:
            return task_loss(pred, batch.query_y)
        return summed_task_loss(pred, batch.query_y, self.outer_loss) / batch.num_tasks

    # --- the contract ----------------------------------------------------------------
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        if self.batched:
            on_cpu = next(self.model.parameters()).device.type == "cpu"
            opts = self.execution
            threads = opts.task_threads
            if threads == "auto":
                threads = torch.get_num_threads() if on_cpu else 1
            chunk = opts.task_chunk
            if chunk == "auto":
                chunk = auto_task_chunk(batch.num_tasks, threads, batch.support_x.shape[1]) if on_cpu else None
            if chunk is None or chunk >= batch.num_tasks or not torch.is_grad_enabled():
                return self._batched_meta_loss(batch)
            params: list[Tensor] = [p for p in self.parameters() if p.requires_grad]
            pool = self._workers.get(threads) if threads > 1 else None
            return chunked_meta_loss(self._batched_meta_loss, batch, chunk, params, threads, executor=pool)
        losses = map_tasks(
            self._task_query_loss,
            self._params(),
            batch.support_x,
            batch.support_y,
            batch.query_x,
            batch.query_y,
            mode=self._task_map,
        )
        return losses.mean()

    def _test_init_params(self, batch: TaskBatch) -> Params:
        """phi^(0) at test time: theta itself (DRS overrides this to swap in a new head)."""
        return {k: v.detach() for k, v in self._params().items()}

    def adapt(self, batch: TaskBatch) -> Predictor:
        """``eval_steps`` inner steps per task (first order: no outer graph is kept)."""
        params = self._test_init_params(batch)
        steps = self.eval_steps
        if self.batched:
            with torch.enable_grad():
                adapted = self._batched_adapt(params, batch.support_x, batch.support_y, steps, True)
            adapted = {k: v.detach() for k, v in adapted.items()}
            return lambda xq: self._batched_forward(adapted, xq)

        def adapt_one(p: Params, xs: Tensor, ys: Tensor) -> Params:
            return self._adapt_task(p, xs, ys, steps, True)

        with torch.enable_grad():
            fast = map_tasks(adapt_one, params, batch.support_x, batch.support_y, mode=self._task_map)
        fast = {k: v.detach() for k, v in fast.items()}

        def predictor(xq: Tensor) -> Tensor:
            return map_tasks(lambda _, p, x: self._forward(p, x), None, fast, xq, mode=self._task_map)

        return predictor
