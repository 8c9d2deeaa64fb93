"""One meta-iteration (forward + backward of the meta-loss over a meta-batch) of MAML,
first-order MAML and ANIL, written the way each library's documentation writes it.

* metabridge: ``alg.meta_loss(batch).backward()`` with its defaults; the variants in
  :data:`VARIANTS` (``metabridge:loop``, ``:vmap``, ``:im2col``, ``:cl``, ``:all``, ``:c2``,
  ``:ckpt`` ...) select the other task-batching modes, chunk sizes and checkpointing.
* higher (Grefenstette et al. 2019): ``higher.innerloop_ctx`` per task, a
  differentiable SGD (``track_higher_grads=False`` for first order, whose meta-gradient
  is then the query gradient at the adapted weights, accumulated by hand).
* TorchOpt (Ren et al. 2023): ``torchopt.MetaSGD`` with ``extract_state_dict`` /
  ``recover_state_dict`` per task (their MAML example) for second order; the
  functional ``torchopt.sgd`` + ``apply_updates`` without ``create_graph`` for first order.
* learn2learn (Arnold et al. 2020): ``l2l.algorithms.MAML(model, lr=alpha, first_order=...)``,
  ``clone()`` + ``adapt(loss)`` per task, the query loss's ``backward()`` per task and
  the accumulated gradient scaled by 1 / meta-batch (its MAML examples); ANIL wraps the
  head only and adapts it on features of the shared body (its ANIL example).

The peers are optional: :func:`available` imports one, first from this interpreter and
then, if it is absent here, from the peer venv that ``scripts/install_peers.sh``
builds (:func:`use_peer_site` appends that venv's ``site-packages`` to ``sys.path``, so
torch and numpy still come from this interpreter; learn2learn 0.2.0 has to be built
from its source on Python 3.11, which that script does).

Every builder takes the same model (deep-copied), the same :class:`TaskBatch` (both from
:func:`make_problem`), and returns ``(step, params)``: ``step()`` zeroes and fills ``p.grad`` for ``p in params``,
which are the meta-parameters in ``Conv4.named_parameters()`` order.

Peak memory of one meta-iteration (:func:`measure_peak_memory`) is read in a fresh child,
``python -m metabridge.benchmarks._peer_impls LIB METHOD SHOTS META_BATCH STEPS DEVICE``:
it builds the model and the tasks, resets the peak (:mod:`metabridge.peak_memory`), runs one
meta-iteration and reports the memory that iteration needed; a fresh process keeps one
library's cached memory from hiding another's peak.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..algorithms import ANIL, MAML
from ..models import Conv4
from ..peak_memory import peak_memory_mib, reset_peak_memory, status_kb
from ..tasks.batch import TaskBatch
from ..tasks.episodes import EpisodeSampler
from ._common import PEER_VENV, synthetic_dataset

Step = Callable[[], None]
INNER_LR = 0.4
METHODS = ("maml", "fomaml", "anil")
PEERS = ("higher", "torchopt", "learn2learn")
INSTALL_SCRIPT = "scripts/install_peers.sh"
#: the ``site-packages`` of the peer venv that :data:`INSTALL_SCRIPT` builds
DEFAULT_PEER_SITE = PEER_VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
#: environment variable through which child processes (:func:`measure_peak_memory`) get the same peer site
PEER_SITE_ENV = "METABRIDGE_PEER_SITE"
VARIANTS: dict[str, dict[str, Any]] = {  # variant -> the ExecutionOptions fields it sets
    "metabridge": {},
    "metabridge:cl": {"channels_last": True},
    "metabridge:aten-bn": {"batch_norm": "aten"},
    "metabridge:closed-bn": {"batch_norm": "closed_form"},
    "metabridge:im2col": {"conv_backend": "im2col"},
    "metabridge:loop": {"task_batching": "loop"},
    "metabridge:vmap": {"task_batching": "vmap"},
    "metabridge:all": {"task_chunk": None},
    "metabridge:c1": {"task_chunk": 1},
    "metabridge:c2": {"task_chunk": 2},
    "metabridge:c4": {"task_chunk": 4},
    "metabridge:c8": {"task_chunk": 8},
    "metabridge:t1": {"task_threads": 1},
    "metabridge:ckpt": {"checkpoint_inner": True},
    "metabridge:all-ckpt": {"task_chunk": None, "checkpoint_inner": True},
    "metabridge:all-cl": {"task_chunk": None, "channels_last": True},
    "metabridge:all-im2col": {"task_chunk": None, "conv_backend": "im2col"},
}


def use_peer_site(peer_site: str = "auto") -> Path | None:
    """Append a peer venv's ``site-packages`` to ``sys.path`` (after this interpreter's own
    entries, so nothing installed here is shadowed) and record it in ``$METABRIDGE_PEER_SITE``
    for child processes.

    Args:
        peer_site: a directory; ``"auto"`` for :data:`DEFAULT_PEER_SITE` when it exists;
            ``"none"`` or ``""`` for no peer site.

    Returns:
        The directory appended (or already on the path), or ``None``.
    """
    if peer_site in ("", "none"):
        return None
    path = DEFAULT_PEER_SITE if peer_site == "auto" else Path(peer_site).expanduser()
    if not path.is_dir():
        if peer_site == "auto":
            return None
        raise ValueError(f"--peer-site {peer_site}: no such directory")
    if str(path) not in sys.path:
        sys.path.append(str(path))
        importlib.invalidate_caches()
    os.environ[PEER_SITE_ENV] = str(path)
    return path


def available(lib: str) -> str | None:
    """``None`` if peer library ``lib`` imports, else why not (with how to install it)."""
    try:
        importlib.import_module(lib)
    except Exception as exc:  # ImportError, or a broken install raising something else
        how = (
            f"build the peer venv with {INSTALL_SCRIPT} (it builds learn2learn 0.2.0 from source for "
            "Python 3.11) and pass --peer-site auto or its site-packages"
            if lib == "learn2learn"
            else f"pip install {lib}, or build the peer venv with {INSTALL_SCRIPT}"
        )
        return f"{lib} is not importable ({type(exc).__name__}: {exc}); {how}"
    return None


def make_problem(
    shots: int,
    meta_batch: int,
    queries: int = 15,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[Conv4, TaskBatch]:
    """The initial Conv-4 (5-way, no running statistics) and one batch of 5-way tasks."""
    torch.manual_seed(seed)
    model = Conv4(5).to(device, dtype)
    sampler = EpisodeSampler(synthetic_dataset(seed=seed), 5, shots, queries)
    batch = sampler.sample(meta_batch, torch.Generator().manual_seed(seed)).to(device, dtype)
    return model, batch


def _zero(params: list[Tensor]) -> None:
    for p in params:
        p.grad = None


def _accumulate(params: list[Tensor], grads: tuple[Tensor, ...]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.detach() if p.grad is None else p.grad + g.detach()


def _body_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The Conv-4's feature body and its linear head (ANIL adapts the head on the body's
    features); a model without them stands for both."""
    return getattr(model, "body", model), getattr(model, "head", model)


def metabridge_step(
    model: nn.Module, batch: TaskBatch, method: str, inner_lr: float, steps: int, variant: str = "metabridge"
) -> tuple[Step, list[Tensor]]:
    """metabridge's MAML / FOMAML / ANIL (``variant`` picks a task-batching mode)."""
    execution = VARIANTS[variant]  # the ExecutionOptions fields this variant sets
    if method == "anil":
        alg: MAML = ANIL(model, inner_lr=inner_lr, inner_steps=steps, execution=execution)
    else:
        alg = MAML(model, inner_lr=inner_lr, inner_steps=steps, first_order=method == "fomaml", execution=execution)
    params: list[Tensor] = list(model.parameters())

    def step() -> None:
        _zero(params)
        alg.meta_loss(batch).backward()

    return step, params


def higher_step(
    model: nn.Module, batch: TaskBatch, method: str, inner_lr: float, steps: int
) -> tuple[Step, list[Tensor]]:
    """higher's ``innerloop_ctx`` over the whole model (MAML) or the head (ANIL)."""
    import higher

    first_order = method == "fomaml"
    body, head = _body_head(model)
    adapted = head if method == "anil" else model
    inner_opt = torch.optim.SGD(adapted.parameters(), lr=inner_lr)
    params: list[Tensor] = list(model.parameters())
    t = batch.num_tasks

    def step() -> None:
        _zero(params)
        for i in range(t):
            xs, ys, xq, yq = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
            if method == "anil":
                xs, xq = body(xs), body(xq)
            with higher.innerloop_ctx(
                adapted, inner_opt, copy_initial_weights=False, track_higher_grads=not first_order
            ) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fmodel(xs), ys))
                loss = F.cross_entropy(fmodel(xq), yq) / t
                if first_order:  # the adapted weights are detached: d phi / d theta = I by hand
                    _accumulate(params, torch.autograd.grad(loss, list(fmodel.parameters())))
                else:
                    loss.backward()

    return step, params


def torchopt_step(
    model: nn.Module, batch: TaskBatch, method: str, inner_lr: float, steps: int
) -> tuple[Step, list[Tensor]]:
    """TorchOpt: ``MetaSGD`` + state dict recovery (second order), functional SGD (first order)."""
    import torchopt

    body, head = _body_head(model)
    adapted = head if method == "anil" else model
    params: list[Tensor] = list(model.parameters())
    t = batch.num_tasks

    if method != "fomaml":
        inner_opt = torchopt.MetaSGD(adapted, lr=inner_lr)

        def step() -> None:
            _zero(params)
            net_state = torchopt.extract_state_dict(adapted, by="reference", detach_buffers=True)
            opt_state = torchopt.extract_state_dict(inner_opt, by="reference")
            for i in range(t):
                xs, ys, xq, yq = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
                if method == "anil":
                    xs, xq = body(xs), body(xq)
                for _ in range(steps):
                    inner_opt.step(F.cross_entropy(adapted(xs), ys))
                (F.cross_entropy(adapted(xq), yq) / t).backward()
                torchopt.recover_state_dict(adapted, net_state)
                torchopt.recover_state_dict(inner_opt, opt_state)

        return step, params

    names = [n for n, _ in model.named_parameters()]
    sgd = torchopt.sgd(lr=inner_lr)

    def fo_step() -> None:
        _zero(params)
        for i in range(t):
            fast: tuple[Tensor, ...] = tuple(params)
            state = sgd.init(fast)
            for _ in range(steps):
                loss = F.cross_entropy(
                    functional_call(model, dict(zip(names, fast)), (batch.support_x[i],)), batch.support_y[i]
                )
                grads = torch.autograd.grad(loss, fast)
                updates, state = sgd.update(grads, state, inplace=False)
                fast = tuple(torchopt.apply_updates(fast, updates, inplace=False))
            out = functional_call(model, dict(zip(names, fast)), (batch.query_x[i],))
            (F.cross_entropy(out, batch.query_y[i]) / t).backward()

    return fo_step, params


def learn2learn_step(
    model: nn.Module, batch: TaskBatch, method: str, inner_lr: float, steps: int
) -> tuple[Step, list[Tensor]]:
    """learn2learn: ``MAML`` wrapper, ``clone()`` + ``adapt()`` per task over the whole model
    (MAML, first-order MAML) or over the head on the body's features (ANIL)."""
    import learn2learn as l2l

    params: list[Tensor] = list(model.parameters())
    t = batch.num_tasks
    body, model_head = _body_head(model)
    features: nn.Module | None = body if method == "anil" else None
    if method == "anil":
        head = l2l.algorithms.MAML(model_head, lr=inner_lr)
    else:
        head = l2l.algorithms.MAML(model, lr=inner_lr, first_order=method == "fomaml")

    def step() -> None:
        _zero(params)
        for i in range(t):
            xs, ys, xq, yq = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
            if features is not None:
                xs, xq = features(xs), features(xq)
            learner = head.clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(xs), ys))
            F.cross_entropy(learner(xq), yq).backward()
        for p in params:  # the mean over tasks, as learn2learn's examples take it
            if p.grad is not None:
                p.grad.mul_(1.0 / t)

    return step, params


def build_step(
    lib: str, model: nn.Module, batch: TaskBatch, method: str, inner_lr: float, steps: int
) -> tuple[Step, list[Tensor]]:
    """The meta-iteration of ``lib`` (``metabridge[:variant]``, ``higher``, ``torchopt``,
    ``learn2learn``) on a private deep copy of ``model``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    own = copy.deepcopy(model)
    if lib in VARIANTS:
        return metabridge_step(own, batch, method, inner_lr, steps, lib)
    if lib == "higher":
        return higher_step(own, batch, method, inner_lr, steps)
    if lib == "torchopt":
        return torchopt_step(own, batch, method, inner_lr, steps)
    if lib == "learn2learn":
        return learn2learn_step(own, batch, method, inner_lr, steps)
    raise ValueError(f"unknown library {lib!r}; choose from {', '.join([*VARIANTS, *PEERS])}.")


def flat_grad(params: list[Tensor]) -> Tensor:
    """All ``p.grad`` concatenated (zeros for parameters that got none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])


def peak_memory_in_this_process(lib: str, method: str, shots: int, meta_batch: int, steps: int, device: str) -> dict:
    """Build the problem, reset the peak, run one meta-iteration, return its peak in MiB."""
    model, batch = make_problem(shots, meta_batch, device=device)
    step, _ = build_step(lib, model, batch, method, INNER_LR, steps)
    before = reset_peak_memory(device)
    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    peak = peak_memory_mib(device, before)
    if peak is None or before is None:
        raise RuntimeError("peak memory is not measurable here (no /proc/self/clear_refs)")
    if device.startswith("cuda"):
        return {"peak_mib": peak, "how": "cuda max_memory_allocated"}
    vmhwm = status_kb("VmHWM") or 0
    return {
        "peak_mib": peak,
        "rss_before_mib": before / 1024,
        "vmhwm_mib": vmhwm / 1024,
        "how": "VmHWM - VmRSS (clear_refs=5), fresh process",
    }


def measure_peak_memory(
    lib: str,
    method: str,
    shots: int,
    meta_batch: int,
    steps: int,
    device: str,
    timeout: float = 1800,
    tune_allocator: bool = False,
    peer_site: str | None = None,
) -> dict:
    """:func:`peak_memory_in_this_process` in a child process; ``{"error": ...}`` if it fails.

    ``tune_allocator``: apply :func:`metabridge.device.tune_cpu_allocator` in the child
    too, so that the peak is measured under the allocator settings the timings used.
    ``peer_site``: the peer ``site-packages`` the child appends to its path (default: the
    parent's ``$METABRIDGE_PEER_SITE``, if any).
    """
    cmd = [
        sys.executable,
        "-m",
        "metabridge.benchmarks._peer_impls",
        lib,
        method,
        str(shots),
        str(meta_batch),
        str(steps),
        device,
    ]
    env = {**os.environ, "METABRIDGE_MALLOC_TUNING": "1" if tune_allocator else "0"}
    if peer_site is not None:
        env[PEER_SITE_ENV] = peer_site
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    _a = sys.argv[1:]
    use_peer_site(os.environ.get(PEER_SITE_ENV, "none"))
    if _a[5] == "cpu":
        from ..device import tune_cpu_allocator

        tune_cpu_allocator()  # a no-op when METABRIDGE_MALLOC_TUNING=0 (the parent decides)
    print(json.dumps(peak_memory_in_this_process(_a[0], _a[1], int(_a[2]), int(_a[3]), int(_a[4]), _a[5])))
