"""MAML (Finn, Abbeel & Levine, ICML 2017), second or first order, with any number
of inner steps and optional learned step sizes.

Meta-objective (their Eq. 1-2, with k inner steps):

    min_theta  (1/T) sum_i  L(phi_i^(k)(theta); D_i^ts),
    phi_i^(s+1) = phi_i^(s) - alpha_s grad L(phi_i^(s); D_i^tr),   phi_i^(0) = theta.

Second order differentiates through the unrolled steps (Hessian-vector products);
``first_order=True`` drops them (FOMAML). ``learn_inner_lr="per_step"`` learns one
alpha per step and parameter tensor (MAML++'s LSLR, Antoniou et al. 2019);
``"per_parameter"`` learns one alpha per weight, shared across steps (Meta-SGD).

Task batching: ``"batched"`` runs the whole meta-batch as one task-batched network
(``models/batched_conv4.py``: tasks folded into grouped convolutions) with one
``autograd.grad`` per inner step (``batched_inner_loop.py``); ``"vmap"`` and
``"loop"`` map a one-task inner loop over the tasks. ``"auto"`` (default) picks
``"batched"`` where the model supports it (Conv-4 without running statistics) and
``"vmap"`` otherwise; all modes give the same numbers (``tests/test_fast_paths.py``).
Measured on a 2-core CPU in ``bench/peers.py``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..tasks.batch import TaskBatch
from ..models.batched_conv4 import ConvBackend, batched_conv4, supports_batched_conv4
from .base import MetaAlgorithm, Predictor, task_loss
from .batched_inner_loop import batched_sgd_inner_loop, chunked_meta_loss, expand_to_tasks
from .inner_loop import Params, StepSize, TaskBatching, check_positive, map_tasks, sgd_inner_loop

LearnedLR = Literal["per_step", "per_parameter"] | None
MetaBatching = Literal["auto", "batched", "vmap", "loop"]


class MAML(MetaAlgorithm):
    """Model-agnostic meta-learning over a functional ``model``.

    Args:
        model: any ``nn.Module`` (its parameters are theta).
        inner_lr: alpha (initial value when learned).
        inner_steps: k steps during meta-training.
        first_order: FOMAML (drop second-order terms).
        learn_inner_lr: ``None``, ``"per_step"`` (MAML++ LSLR) or ``"per_parameter"`` (Meta-SGD).
        eval_steps: steps at test time (default ``inner_steps``); learned step sizes
            beyond the trained steps reuse the last one.
        task_batching: ``"auto"``, ``"batched"``, ``"vmap"`` or ``"loop"`` (module
            docstring; same numbers).
        conv_backend: how the batched path runs Conv-4 (``"grouped"``, ``"im2col"``,
            ``"loop"``; see ``models/batched_conv4.py``).
        channels_last: channels-last memory format in the grouped backend.
        checkpoint_inner: recompute each inner step's activations in the outer
            backward (``torch.utils.checkpoint``) instead of storing them: less memory
            for long horizons, at the cost of recomputing each inner step (batched path,
            second order; measured growth 26.8 -> 7.1 MiB per step, bench/memory_steps.py).
        task_chunk: batched path only: run the meta-batch this many tasks at a time,
            taking each chunk's gradient before the next (``chunked_meta_loss``), so
            peak memory is one chunk's; ``None`` runs all tasks at once; ``"auto"``
            (default) is 1 on CPU and ``None`` on GPU. Measured on a 2-core CPU
            (MAML, 1-shot): one task at a time used less memory than higher/TorchOpt and
            ran as fast; 2 at a time was ~10% faster with 1.5x their memory; all 32 at
            once was slower (large activations fall out of cache) and used T times the
            memory. A chunked ``meta_loss`` returns a scalar with the right value and
            first derivative (no double backward through it).
        task_threads: chunks run at once in threads with single-threaded operators
            (``chunked_meta_loss``); ``"auto"`` (default): ``torch.get_num_threads()`` on
            CPU (1.3x faster on 2 cores, with that many tasks' activations alive at
            once), 1 on GPU. Set 1 for the smallest memory.
    """

    name: ClassVar[str] = "maml"

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1,
                 first_order: bool = False, learn_inner_lr: LearnedLR = None,
                 eval_steps: int | None = None, task_batching: MetaBatching = "auto",
                 conv_backend: ConvBackend = "grouped", channels_last: bool = False,
                 checkpoint_inner: bool = False, task_chunk: int | Literal["auto"] | None = "auto",
                 task_threads: int | Literal["auto"] = "auto") -> None:
        super().__init__()
        check_positive(inner_lr=inner_lr, inner_steps=inner_steps)
        if eval_steps is not None:
            check_positive(eval_steps=eval_steps)
        self.model = model
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.eval_steps = eval_steps or inner_steps
        self.batched = self._resolve_batched(task_batching)
        #: the per-task mapping used where the batched path does not apply (subclasses)
        self.task_batching: TaskBatching = "vmap" if task_batching in ("auto", "batched") else task_batching
        self.conv_backend, self.channels_last, self.checkpoint_inner = conv_backend, channels_last, checkpoint_inner
        if task_chunk not in (None, "auto"):
            check_positive(task_chunk=task_chunk)
        self.task_chunk = task_chunk
        if task_threads != "auto":
            check_positive(task_threads=task_threads)
        self.task_threads = task_threads
        self.learn_inner_lr = learn_inner_lr
        names = self.adapted_names()
        ref = next(model.parameters())
        if learn_inner_lr == "per_step":
            self.inner_lrs = nn.Parameter(
                torch.full((inner_steps, len(names)), float(inner_lr), dtype=ref.dtype, device=ref.device))
        elif learn_inner_lr == "per_parameter":
            self.inner_lrs = nn.ParameterList(
                [nn.Parameter(torch.full_like(p, float(inner_lr))) for n, p in model.named_parameters() if n in names]
            )
        elif learn_inner_lr is not None:
            raise ValueError(f"learn_inner_lr must be None, 'per_step' or 'per_parameter' (got {learn_inner_lr!r}).")

    def supports_batched(self) -> bool:
        """Whether this algorithm's model has a task-batched forward."""
        return supports_batched_conv4(self.model)

    def _resolve_batched(self, mode: str) -> bool:
        if mode not in ("auto", "batched", "vmap", "loop"):
            raise ValueError(f"task_batching must be 'auto', 'batched', 'vmap' or 'loop' (got {mode!r}).")
        if mode == "batched" and not self.supports_batched():
            raise ValueError("task_batching='batched' needs a Conv4 model without running statistics "
                             "(track_running_stats=False); use 'vmap' or 'loop' for other models.")
        return mode == "batched" or (mode == "auto" and self.supports_batched())

    # --- what is adapted, and how far each step goes -------------------------------
    def adapted_names(self) -> list[str]:
        """Names (in ``self.model``) of the parameters the inner loop adapts."""
        return [n for n, _ in self.model.named_parameters()]

    def step_size(self, step: int) -> dict[str, Tensor | float]:
        """alpha_s for every adapted parameter tensor."""
        names = self.adapted_names()
        if self.learn_inner_lr == "per_step":
            row = self.inner_lrs[min(step, self.inner_lrs.shape[0] - 1)]
            return {n: row[i] for i, n in enumerate(names)}
        if self.learn_inner_lr == "per_parameter":
            return dict(zip(names, self.inner_lrs))
        return {n: self.inner_lr for n in names}

    # --- one task -------------------------------------------------------------------
    def _forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model, params, (x,))

    def _adapt_task(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        names = self.adapted_names()
        fixed = {k: v for k, v in params.items() if k not in names}
        fast = {k: params[k] for k in names}

        def forward(p: Params, x: Tensor) -> Tensor:
            return self._forward({**fixed, **p}, x)

        step: StepSize = self.step_size
        fast = sgd_inner_loop(forward, fast, xs, ys, steps, step, first_order)
        return {**fixed, **fast}

    def _task_query_loss(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        fast = self._adapt_task(params, xs, ys, self.inner_steps, self.first_order)
        return task_loss(self._forward(fast, xq), yq)

    def _params(self) -> Params:
        return dict(self.model.named_parameters()) | dict(self.model.named_buffers())

    # --- all tasks at once (task_batching="batched") -------------------------------
    def _batched_forward(self, params: Params, x: Tensor) -> Tensor:
        """``[T, B, ...] -> [T, B, out]`` with per-task (or shared) ``params``."""
        return batched_conv4(params, x, self.conv_backend, self.channels_last)

    def _batched_adapt(self, params: Params, xs: Tensor, ys: Tensor, steps: int, first_order: bool) -> Params:
        """phi_i^(k) of every task, stacked: the adapted tensors get a leading task dimension."""
        names = self.adapted_names()
        fixed = {k: v for k, v in params.items() if k not in names}

        def forward(p: Params, x: Tensor) -> Tensor:
            return self._batched_forward({**fixed, **p}, x)

        fast = batched_sgd_inner_loop(forward, expand_to_tasks(params, names, xs.shape[0]), xs, ys, steps,
                                      self.step_size, first_order, self.checkpoint_inner)
        return {**fixed, **fast}

    def _batched_meta_loss(self, batch: TaskBatch) -> Tensor:
        fast = self._batched_adapt(self._params(), batch.support_x, batch.support_y, self.inner_steps,
                                   self.first_order)
        return task_loss(self._batched_forward(fast, batch.query_x), batch.query_y)

    # --- the contract ----------------------------------------------------------------
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        if self.batched:
            on_cpu = next(self.model.parameters()).device.type == "cpu"
            chunk = (1 if on_cpu else None) if self.task_chunk == "auto" else self.task_chunk
            if chunk is None or chunk >= batch.num_tasks or not torch.is_grad_enabled():
                return self._batched_meta_loss(batch)
            threads = self.task_threads
            if threads == "auto":
                threads = torch.get_num_threads() if on_cpu else 1
            params = [p for p in self.parameters() if p.requires_grad]
            return chunked_meta_loss(self._batched_meta_loss, batch, chunk, params, threads)
        losses = map_tasks(self._task_query_loss, self._params(), batch.support_x, batch.support_y,
                           batch.query_x, batch.query_y, mode=self.task_batching)
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
            fast = map_tasks(adapt_one, params, batch.support_x, batch.support_y, mode=self.task_batching)
        fast = {k: v.detach() for k, v in fast.items()}

        def predictor(xq: Tensor) -> Tensor:
            return map_tasks(lambda _, p, x: self._forward(p, x), None, fast, xq, mode=self.task_batching)

        return predictor
