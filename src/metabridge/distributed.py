"""Data parallelism over processes with PyTorch's own engine (``torch.distributed``).

One training step of a data-parallel run (``torchrun --nproc-per-node W -m metabridge
train ...``): every rank draws its own ``B / W`` tasks of the meta-batch ``B`` from its
own task stream, computes ``meta_loss`` on them and back-propagates; then one
all-reduce averages the ranks' gradients, so every rank holds

    g = (1 / W) * sum_r grad L_r(theta),   L_r = (W / B) * sum_{i in shard r} L_i(theta),

which is ``grad (1 / B) sum_i L_i(theta)``: the meta-gradient of the whole meta-batch, the
same as one process computing it on the union of the shards (Li et al. 2020, "PyTorch
Distributed: experiences on accelerating data parallel training", the gradient-averaging
contract of ``DistributedDataParallel``). Every rank then takes the same optimizer step
from the same parameters, so the replicas never drift.

Why an explicit all-reduce rather than wrapping the algorithm in ``DistributedDataParallel``:
a meta-learner's loss is not one forward call (MAML's inner loop differentiates through
``torch.func`` functional calls; chunked meta-losses take their own gradients), and DDP's
hooks assume ``forward`` then ``backward`` once per step. Averaging after
``backward`` works for any :class:`~metabridge.algorithms.base.MetaAlgorithm`, costs one
collective per step (gradients, the loss, floating-point buffers such as batch-norm running
statistics and the step's training seconds travel in one flat tensor), and makes the
non-finite checks and the time budget identical on all ranks, so ranks never disagree
about stopping (a disagreement would hang the others in the next collective).

Task streams: rank 0 draws from ``seed`` itself (a 1-process run is today's run exactly),
rank ``r > 0`` from :func:`rank_seed` ``(seed, r)``; each stream is reproducible and the
streams differ. A checkpoint stores every rank's generator state and the world size.

This module never initialises a process group on import or inside a library call;
:func:`init_from_environment` does so explicitly (and destroys the group it made when the
process exits), and the command line calls it when it finds torchrun's environment
(``WORLD_SIZE > 1``).
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistributedContext",
    "GradientAverager",
    "average_gradients",
    "init_from_environment",
    "rank_seed",
    "shard_size",
    "torchrun_world_size",
]


def torchrun_world_size() -> int:
    """The ``WORLD_SIZE`` torchrun set for this process (1 outside torchrun)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


@dataclass(frozen=True)
class DistributedContext:
    """Which process this is among how many (``world_size = 1``: no distribution).

    Build it with :func:`init_from_environment` under torchrun, or by hand after your own
    ``torch.distributed.init_process_group``: ``DistributedContext(dist.get_rank(),
    dist.get_world_size())``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} does not fit world size {self.world_size}.")
        if self.world_size > 1 and not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"a DistributedContext of world size {self.world_size} needs an initialised process group; "
                "launch with torchrun and call metabridge.distributed.init_from_environment() (or "
                "torch.distributed.init_process_group) first."
            )

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes metrics, checkpoints and results."""
        return self.rank == 0

    # ------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled; for small control messages)."""
        if not self.enabled:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (pickled; small objects only)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=src)

    def raise_together(self, error: BaseException | None) -> None:
        """Collective error check: if any rank passes an error, every rank raises (the lowest
        failing rank's message), so no rank is left waiting in a later collective."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        errors = self.gather_objects(None if error is None else (type(error).__name__, str(error)))
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if not failed:
            return
        if error is not None:
            raise error
        rank, (kind, message) = failed[0]
        raise RuntimeError(f"rank {rank} failed ({kind}): {message}")


def init_from_environment(device: torch.device | str | None = None, backend: str | None = None) -> DistributedContext:
    """The :class:`DistributedContext` of this process; under torchrun (``WORLD_SIZE > 1``)
    initialise the default process group first if nobody did (and destroy it at exit).

    This changes process-wide state (the default process group, and for CUDA the current
    device is set to ``cuda:LOCAL_RANK``): it is what the command line calls, never a
    library function on its own. ``backend`` defaults to NCCL for CUDA devices and gloo
    otherwise.
    """
    world = torchrun_world_size()
    if world == 1:
        return DistributedContext()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run a single process (no torchrun).")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(_destroy_process_group)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank)


def _destroy_process_group() -> None:
    """Destroy the default process group that :func:`init_from_environment` created, at exit.

    PyTorch asks every process to call ``destroy_process_group`` before it exits; a group left
    to the interpreter's finalisation tears down its backend threads in no fixed order, and a
    2-process gloo test rank was seen to abort that way ("terminate called without an active
    exception", exit status non-zero after all its work was done)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The task-stream seed of ``rank``: ``seed`` itself for rank 0 (a 1-process run is unchanged),
    an independent 63-bit seed derived from ``(seed, rank)`` by NumPy's ``SeedSequence``
    otherwise (distinct streams, the same every run)."""
    if rank == 0:
        return int(seed)
    state = np.random.SeedSequence([int(seed) % 2**63, int(rank)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def shard_size(meta_batch_size: int, world_size: int) -> int:
    """Tasks per rank; the meta-batch must split evenly (else the average is not the whole batch's)."""
    if meta_batch_size % world_size:
        raise ValueError(
            f"--meta-batch-size {meta_batch_size} does not split over {world_size} processes; use a multiple "
            f"of {world_size} (e.g. {max(world_size, meta_batch_size // world_size * world_size)}) or another "
            "--nproc-per-node."
        )
    return meta_batch_size // world_size


class GradientAverager:
    """Averages gradients (and keeps replicas equal) over the ranks with one all-reduce per step.

    Args:
        module: the algorithm whose parameters' ``.grad`` are averaged and whose
            floating-point buffers (e.g. batch-norm running statistics) are averaged too.
        context: the ranks.

    After :meth:`average`, every rank holds the mean gradient; a parameter that had no
    gradient on any rank keeps ``grad = None`` (an optimizer then skips it, as it would
    in one process), one that had a gradient on some ranks gets the mean with zeros for
    the others. :attr:`comm_seconds` is the wall time of the last all-reduce (host time,
    including waiting for the slowest rank).
    """

    def __init__(self, module: nn.Module, context: DistributedContext) -> None:
        self.context = context
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.buffers = [b for b in module.buffers() if b.is_floating_point()]
        self.comm_seconds = 0.0

    def average(self, scalars: Sequence[Tensor | float]) -> list[Tensor]:
        """All-reduce: mean gradients, mean buffers, and the means of ``scalars`` (returned as
        0-d tensors, identical on every rank); see :func:`average_gradients`."""
        if not self.params:
            raise ValueError("nothing to average: the module has no trainable parameters.")
        means, self.comm_seconds = average_gradients(self.params, self.context, scalars, self.buffers)
        return means


def timed_all_reduce(flat: Tensor) -> float:
    """Sum ``flat`` over the ranks in place; return the collective's wall time in seconds (host
    time, including the wait for the slowest rank; on CUDA after synchronising the device)."""
    t0 = time.perf_counter()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    if flat.device.type == "cuda":
        torch.cuda.synchronize(flat.device)
    return time.perf_counter() - t0


def average_gradients(
    params: Sequence[Tensor],
    context: DistributedContext,
    scalars: Sequence[Tensor | float] = (),
    buffers: Sequence[Tensor] = (),
) -> tuple[list[Tensor], float]:
    """One all-reduce: each ``p.grad`` becomes its mean over the ranks (``None`` counts as zeros;
    a parameter with no gradient on any rank keeps ``None``), each of ``buffers`` its mean (in
    place), and the means of ``scalars`` are returned as 0-d tensors, with the collective's wall
    time (host time, including the wait for the slowest rank). The flat tensor has the widest
    dtype of the parameters and buffers (at least float32): float64 models reduce in float64.
    One process: nothing is touched, ``scalars`` come back as 0-d tensors and the time is 0."""
    params, buffers = list(params), list(buffers)
    if not context.enabled:
        return [torch.as_tensor(s) for s in scalars], 0.0
    device = params[0].device if params else torch.device("cpu")
    dtype = torch.float32
    for t in params + buffers:
        dtype = torch.promote_types(dtype, t.dtype)
    pieces = [
        torch.tensor([0.0 if p.grad is None else 1.0 for p in params], dtype=dtype, device=device),
        torch.stack([torch.as_tensor(s, device=device).detach().to(dtype).reshape(()) for s in scalars])
        if len(scalars)
        else torch.zeros(0, dtype=dtype, device=device),
    ]
    pieces += [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).to(dtype) for p in params]
    pieces += [b.detach().reshape(-1).to(dtype) for b in buffers]
    flat = torch.cat(pieces)
    seconds = timed_all_reduce(flat)
    flat = flat / context.world_size
    had = flat[: len(params)].tolist()  # one host read (after the collective the step waits anyway)
    offset = len(params)
    means = [flat[offset + i] for i in range(len(scalars))]
    offset += len(scalars)
    for flag, p in zip(had, params):
        n = p.numel()
        chunk = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
        if flag == 0.0:  # no rank had a gradient
            p.grad = None
        elif p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_(flat[offset : offset + n].view_as(b).to(b.dtype))
            offset += n
    return means, seconds


def interleaved(items: Iterable[Any], context: DistributedContext) -> list[Any]:
    """This rank's share of ``items`` (every ``world_size``-th, from its rank)."""
    return [x for i, x in enumerate(items) if i % context.world_size == context.rank]
