"""How the MAML family runs its inner loops: one options object for every method.

These settings change speed and memory, never the numbers (up to float round-off;
``tests/test_fast_paths.py`` checks every mode against the per-task loop). They are
kept apart from the algorithms' hyperparameters (``inner_lr``, ``inner_steps``, ...) so
that one ``ExecutionOptions`` can be handed to MAML, FOMAML, ANIL, Meta-SGD, Reptile and
DRS alike, and so that a config file can give them as one mapping::

    MAML(model, inner_lr=0.4, execution=ExecutionOptions(task_chunk=2))
    MAML(model, inner_lr=0.4, execution={"task_chunk": 2})      # same, e.g. from YAML/TOML
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from ..models.batched_conv4 import BatchNormKernel, ConvBackend

TaskBatchingMode = Literal["auto", "batched", "vmap", "loop"]

_TASK_BATCHING = get_args(TaskBatchingMode)
_CONV_BACKENDS = get_args(ConvBackend)
_BATCH_NORMS = get_args(BatchNormKernel)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ExecutionOptions:
    """Execution settings shared by every inner-loop algorithm (validated on creation).

    Attributes:
        task_batching: how the tasks of a meta-batch are run. ``"batched"``: the whole
            meta-batch as one task-batched network (``models/batched_conv4.py``, tasks
            folded into grouped convolutions) with one ``autograd.grad`` per inner step;
            needs a Conv-4 without running statistics. ``"vmap"`` / ``"loop"``: a one-task
            inner loop mapped over the tasks with ``torch.func.vmap`` or a Python loop.
            ``"auto"`` (default): ``"batched"`` where the model supports it, else ``"vmap"``.
        conv_backend: how the batched path runs Conv-4: ``"grouped"`` (default),
            ``"im2col"`` or ``"loop"`` (see ``models/batched_conv4.py``).
        channels_last: channels-last memory format in the grouped backend.
        batch_norm: the grouped backend's batch norm: ``"closed_form"``
            (``models/batch_norm.py``: ATen's kernels forward and backward and a hand-derived
            double backward of five reductions and five multiply-adds), ``"aten"``
            (``F.batch_norm``, whose double backward is ~40 element-wise operators; cuDNN's
            kernels on CUDA) or ``"auto"`` (default): the closed form where batch norm is
            differentiated twice (second-order MAML, Meta-SGD) on CPU, where its double
            backward runs far fewer operators than ATen's; ATen on GPU (not measured
            there in a stored experiment; experiments/gpu_check re-times it) and for
            first-order methods and ANIL, which never run the double backward, so the
            closed form gains nothing there (experiments/speed_vs_peers, its closed-form
            batch-norm part).
        checkpoint_inner: batched path, second order: recompute each inner step's
            activations in the outer backward (``torch.utils.checkpoint``) instead of
            storing them; less memory for long horizons at about one extra inner step of
            compute per step: memory then grows more slowly with the number of inner steps
            (experiments/memory_by_inner_steps).
        task_chunk: batched path: run the meta-batch this many tasks at a time, taking each
            chunk's gradient before the next (``chunked_meta_loss``), so peak memory is one
            chunk's; ``None`` runs all tasks at once; ``"auto"`` (default) is, on CPU, about 20
            support images per chunk, 1 to 4 tasks (5-way 1-shot: 4, 5-shot: 1; fewer when the
            meta-batch has too few tasks per worker thread: ``maml.auto_task_chunk``) and
            ``None`` on GPU. On CPU, chunks of 4 are faster than one task at a time, because
            the per-operator overhead of a one-task network is shared by the chunk's tasks,
            at 4x the per-chunk activation memory; ``task_chunk=1`` keeps the smallest
            memory, and all tasks at once hold every task's activations
            (experiments/speed_vs_peers: four-task chunks against ``metabridge:c1`` and
            ``metabridge:all``). A chunked ``meta_loss`` has the right value and first
            derivative, but cannot be differentiated twice.
        task_threads: chunks run at once in worker threads with single-threaded operators
            (``chunked_meta_loss``); ``"auto"`` (default): ``torch.get_num_threads()`` on CPU
            (faster, as each core keeps its chunk's small memory-bound tensors in its cache,
            with that many chunks' activations alive at once; experiments/speed_vs_peers: the
            default against ``metabridge:t1``), 1 on GPU. 1 gives the smallest memory. The
            caller's thread settings are not changed; the worker threads belong to the
            algorithm (reused across meta-iterations, ended by its ``close()`` or when it is
            garbage collected).
    """

    task_batching: TaskBatchingMode = "auto"
    conv_backend: ConvBackend = "grouped"
    channels_last: bool = False
    batch_norm: BatchNormKernel = "auto"
    checkpoint_inner: bool = False
    task_chunk: int | Literal["auto"] | None = "auto"
    task_threads: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        if self.task_batching not in _TASK_BATCHING:
            raise ValueError(
                f"task_batching must be one of {', '.join(map(repr, _TASK_BATCHING))} (got {self.task_batching!r})."
            )
        if self.conv_backend not in _CONV_BACKENDS:
            raise ValueError(
                f"conv_backend must be one of {', '.join(map(repr, _CONV_BACKENDS))} (got {self.conv_backend!r})."
            )
        if self.batch_norm not in _BATCH_NORMS:
            raise ValueError(
                f"batch_norm must be one of {', '.join(map(repr, _BATCH_NORMS))} (got {self.batch_norm!r})."
            )
        for flag in ("channels_last", "checkpoint_inner"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False (got {getattr(self, flag)!r}).")
        if not (
            self.task_chunk is None or self.task_chunk == "auto" or (_is_int(self.task_chunk) and self.task_chunk > 0)
        ):
            raise ValueError(
                f"task_chunk must be a positive int, 'auto' or None for all tasks at once (got {self.task_chunk!r})."
            )
        if not (self.task_threads == "auto" or (_is_int(self.task_threads) and self.task_threads > 0)):
            raise ValueError(f"task_threads must be a positive int or 'auto' (got {self.task_threads!r}).")

    @classmethod
    def coerce(cls, value: ExecutionOptions | Mapping[str, Any] | None) -> ExecutionOptions:
        """``None`` -> the defaults; a mapping (from a config file) -> options; options as they are.

        Raises ``ValueError`` naming the valid keys for an unknown key, and ``TypeError``
        for anything else.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            valid = [f.name for f in fields(cls)]
            unknown = sorted(str(k) for k in value if k not in valid)
            if unknown:
                raise ValueError(
                    f"unknown execution option(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}."
                )
            return cls(**value)
        raise TypeError(
            f"execution must be an ExecutionOptions, a dict of its fields or None (got {type(value).__name__})."
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (JSON-serializable; ``coerce`` reads it back)."""
        return asdict(self)
