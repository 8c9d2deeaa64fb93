"""ExecutionOptions (one options object for the MAML family), chunked meta-losses that
leave the caller's thread settings and no threads behind, and the opt-in allocator tuning."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from metabridge.algorithms import ANIL, DRS, FOMAML, MAML, MetaSGD, Reptile
from metabridge.algorithms.batched_inner_loop import chunked_meta_loss
from metabridge.algorithms.execution import ExecutionOptions
from metabridge.models import MLP, Conv4
from metabridge.tasks.batch import TaskBatch

FAMILY = [MAML, FOMAML, ANIL, MetaSGD, Reptile, DRS]
KNOBS = {
    "task_batching",
    "conv_backend",
    "channels_last",
    "batch_norm",
    "checkpoint_inner",
    "task_chunk",
    "task_threads",
}


def _conv4(seed: int = 0) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(5, hidden=4, image_size=16).double()


def _batch(tasks: int = 4) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(5).expand(tasks, -1).clone()
    return TaskBatch(
        torch.rand(tasks, 5, 1, 16, 16, generator=g, dtype=torch.float64),
        labels,
        torch.rand(tasks, 5, 1, 16, 16, generator=g, dtype=torch.float64),
        labels.clone(),
        n_way=5,
    )


# ----------------------------------------------------------------- the options object
def test_defaults_and_validation():
    opts = ExecutionOptions()
    assert (
        opts.task_batching,
        opts.conv_backend,
        opts.channels_last,
        opts.batch_norm,
        opts.checkpoint_inner,
        opts.task_chunk,
        opts.task_threads,
    ) == ("auto", "grouped", False, "auto", False, "auto", "auto")
    assert {f.name for f in dataclasses.fields(ExecutionOptions)} == KNOBS
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.task_chunk = 2  # type: ignore[misc]
    bad = [
        ("task_batching", "threads"),
        ("conv_backend", "cudnn"),
        ("channels_last", 1),
        ("batch_norm", "fused"),
        ("checkpoint_inner", "yes"),
        ("task_chunk", 0),
        ("task_chunk", 1.5),
        ("task_chunk", True),
        ("task_threads", 0),
        ("task_threads", None),
    ]
    for field, value in bad:
        with pytest.raises(ValueError, match=field):
            ExecutionOptions(**{field: value})
    for chunk in (None, "auto", 3):
        assert ExecutionOptions(task_chunk=chunk).task_chunk == chunk


def test_coerce_takes_a_dict_and_names_the_valid_keys():
    assert ExecutionOptions.coerce({"task_chunk": 2}) == ExecutionOptions(task_chunk=2)
    assert ExecutionOptions.coerce(None) == ExecutionOptions()
    opts = ExecutionOptions(task_threads=1)
    assert ExecutionOptions.coerce(opts) is opts
    assert ExecutionOptions.coerce(opts.to_dict()) == opts
    with pytest.raises(ValueError, match="task_chunks.*valid keys: task_batching"):
        ExecutionOptions.coerce({"task_chunks": 2})
    with pytest.raises(TypeError, match="ExecutionOptions"):
        ExecutionOptions.coerce("vmap")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.name)
def test_every_inner_loop_algorithm_takes_one_execution_argument(cls):
    params = inspect.signature(cls.__init__).parameters
    assert not KNOBS & set(params), f"{cls.__name__} still declares execution knobs itself"
    assert params["execution"].default is None and params["execution"].kind is inspect.Parameter.KEYWORD_ONLY
    assert cls(MLP()).execution == ExecutionOptions()  # one default ("auto") everywhere
    alg = cls(MLP(), execution={"task_batching": "loop", "task_threads": 1})
    assert alg.execution == ExecutionOptions(task_batching="loop", task_threads=1)
    assert not alg.batched


def test_the_options_reach_the_inner_loop():
    """A dict and an object give the same algorithm; the options really pick the path."""
    batched = MAML(_conv4(), execution={"task_chunk": None})
    looped = MAML(_conv4(), execution=ExecutionOptions(task_batching="loop"))
    assert batched.batched and not looped.batched
    batch = _batch(2)
    torch.testing.assert_close(batched.meta_loss(batch), looped.meta_loss(batch), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------ threads of chunked losses
def test_chunked_meta_loss_leaves_thread_settings_and_no_threads(monkeypatch):
    alg = MAML(_conv4(), inner_lr=0.3, execution=ExecutionOptions(task_chunk=1, task_threads=2))
    batch = _batch(4)
    before = torch.get_num_threads()
    set_from_main: list[int] = []
    real_set = torch.set_num_threads

    def spy(n: int) -> None:
        if threading.current_thread() is threading.main_thread():
            set_from_main.append(n)
        real_set(n)

    monkeypatch.setattr(torch, "set_num_threads", spy)
    seen: list[tuple[str, int]] = []

    def loss_fn(sub: TaskBatch) -> torch.Tensor:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return alg._batched_meta_loss(sub)

    params = [p for p in alg.parameters() if p.requires_grad]
    loss = chunked_meta_loss(loss_fn, batch, 1, params, threads=2)
    loss.backward()
    assert torch.get_num_threads() == before
    assert set_from_main == [], "the caller's thread count was changed during the call"
    assert len(seen) == 4 and all(name != "MainThread" and n == 1 for name, n in seen)
    assert not _workers()  # a pool started for the call is shut down before it returns
    # the algorithm's own path: same settings afterwards, same gradient as all tasks at once
    alg.zero_grad()
    alg.meta_loss(batch).backward()
    assert torch.get_num_threads() == before and set_from_main == []
    whole = MAML(_conv4(), inner_lr=0.3, execution=ExecutionOptions(task_chunk=None))
    whole.meta_loss(batch).backward()
    for p, q in zip(alg.parameters(), whole.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
    alg.close()
    assert not _workers()


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("metabridge-task")]


def test_the_algorithm_owns_its_worker_threads():
    """Reused across meta-iterations, ended by close() or garbage collection; copies start without."""
    import copy
    import gc
    import time

    alg = MAML(_conv4(), inner_lr=0.3, execution=ExecutionOptions(task_chunk=1, task_threads=2))
    batch = _batch(4)
    alg.meta_loss(batch).backward()
    first = {t.ident for t in _workers()}
    assert len(first) == 2
    alg.meta_loss(batch).backward()
    assert {t.ident for t in _workers()} == first  # the same threads, not a new pool per call
    twin = copy.deepcopy(alg)
    assert {t.ident for t in _workers()} == first
    twin.meta_loss(batch).backward()
    assert len(_workers()) == 4
    twin.close()
    assert {t.ident for t in _workers()} == first
    alg.close()
    assert not _workers()
    alg.meta_loss(batch).backward()  # still usable: the pool restarts
    assert len(_workers()) == 2
    del alg
    gc.collect()
    deadline = time.monotonic() + 10
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _workers()


def test_chunked_meta_loss_runs_on_a_given_executor():
    from concurrent.futures import ThreadPoolExecutor

    alg = MAML(_conv4(), inner_lr=0.3, execution={"task_chunk": None})
    batch = _batch(4)
    params = [p for p in alg.parameters() if p.requires_grad]
    ref = torch.autograd.grad(alg.meta_loss(batch), params)
    with ThreadPoolExecutor(2, thread_name_prefix="mine") as pool:
        got = torch.autograd.grad(chunked_meta_loss(alg._batched_meta_loss, batch, 1, params, 2, executor=pool), params)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- the allocator
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_cpu_allocator_tuning_is_scoped():
    """In a fresh process: a freed 64 MiB block goes back to the OS before the block, stays
    resident inside it (nested blocks too), and goes back again after it."""
    script = textwrap.dedent("""
        import ctypes, os
        from metabridge.device import cpu_allocator_tuning, tune_cpu_allocator
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        page = os.sysconf("SC_PAGE_SIZE")
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * page
        def kept(n=64 << 20):
            p = libc.malloc(n)
            ctypes.memset(p, 1, n)
            before = rss()
            libc.free(p)
            return before - rss() < n // 2
        out = [kept()]
        with cpu_allocator_tuning() as on:
            out += [on, kept()]
            with cpu_allocator_tuning() as inner:
                out.append(inner)
            out.append(kept())
        out.append(kept())
        os.environ["METABRIDGE_MALLOC_TUNING"] = "0"
        with cpu_allocator_tuning() as off:
            out += [off, kept()]
        print(" ".join(map(str, out)))
    """)
    env = {**os.environ}
    env.pop("METABRIDGE_MALLOC_TUNING", None)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True", "True", "True", "True", "False", "False", "False"]
