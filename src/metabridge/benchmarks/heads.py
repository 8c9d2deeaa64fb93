"""Time the batched task heads on one meta-batch.

Setting (defaults): T=32 tasks, 5-way 5-shot, 15 queries per class (Q=75), feature dims
D=64 and D=640 (Conv-4 / ResNet-12 widths), float32 inputs, CPU. For each head: median wall time
of the forward pass and, for the differentiable heads, forward + backward of a query
cross-entropy. Baselines measured alongside: scikit-learn per task (the loop Wang et
al.'s MTL test-time protocol runs), LinearSVC(crammer_singer) per task, and a batched
torch.optim.LBFGS for the logistic fit (the solver alternative to batched Newton).

    metabridge bench heads [--threads 2] [--repeats 7]

Writes heads.json and config.json into ``--out``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from ..config import CommandConfig
from ..heads import logistic_fit, logistic_logits, metaoptnet_svm_logits, prototype_logits, r2d2_logits
from ..heads import svm as svm_mod
from ..machine_info import machine


def timeit(fn: Any, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_batch(
    t: int, n: int, k: int, q: int, d: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``t`` tasks of ``n``-way ``k``-shot ``q``-query Gaussian features of dimension ``d``."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(t, n, d, generator=g)
    ys = torch.arange(n).repeat(k).expand(t, -1).contiguous()
    yq = torch.arange(n).repeat(q).expand(t, -1).contiguous()
    xs = means.gather(1, ys.unsqueeze(-1).expand(-1, -1, d)) + 1.5 * torch.randn(t, n * k, d, generator=g)
    xq = means.gather(1, yq.unsqueeze(-1).expand(-1, -1, d)) + 1.5 * torch.randn(t, n * q, d, generator=g)
    return xs, ys, xq, yq


def lbfgs_logistic(xs: torch.Tensor, ys: torch.Tensor, n: int, c: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched L-BFGS on the summed (separable) objective in the full D-dim space."""
    x = F.normalize(xs.double(), dim=-1)
    t, s, d = x.shape
    w = torch.zeros(t, d, n, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(t, n, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=1000,
        tolerance_grad=1e-9,
        tolerance_change=0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.bmm(x, w) + b.unsqueeze(1)
        loss = 0.5 * (w * w).sum() + c * F.cross_entropy(logits.reshape(-1, n), ys.reshape(-1), reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


class HeadsConfig(CommandConfig):
    """Settings of ``metabridge bench heads``: median seconds of every batched head on one
    meta-batch, beside per-task scikit-learn loops."""

    out: Path = Field(Path("runs/bench/heads"), description="Folder of heads.json and config.json.")
    threads: int = Field(2, ge=1, description="Torch CPU threads while the heads are timed (restored after).")
    repeats: int = Field(
        7, ge=1, description=("Timed calls per head (the median is reported); the slow baselines run a third as many.")
    )
    tasks: int = Field(32, ge=1, description="Tasks T in the meta-batch (5-way 5-shot, 15 queries per class).")
    dims: list[int] = Field([64, 640], min_length=1, description=("Feature dimensions D (64: Conv-4, 640: ResNet-12)."))

    @field_validator("dims")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values


CONFIG = HeadsConfig
N_WAY, SHOTS, QUERIES = 5, 5, 15


def _closures(ys: torch.Tensor, n: int) -> dict[str, Any]:
    """The differentiable heads as ``head(support, query) -> logits``."""
    return {
        "prototypes": lambda a, b: prototype_logits(a, ys, b, n),
        "r2d2_ridge": lambda a, b: r2d2_logits(a, ys, b, n, 1.0),
        "svm_cs": lambda a, b: metaoptnet_svm_logits(a, ys, b, n, 0.1),
        "svm_cs_ridge1": lambda a, b: metaoptnet_svm_logits(a, ys, b, n, 0.1, dual_ridge=1.0),
    }


def _time_dim(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of every head and baseline on one meta-batch."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    t, n = xs.shape[0], N_WAY
    r: dict[str, float] = {}

    def fwd_bwd(head: Any) -> None:
        a = xs.clone().requires_grad_(True)
        b = xq.clone().requires_grad_(True)
        loss = F.cross_entropy(head(a, b).reshape(-1, n), yq.reshape(-1))
        loss.backward()

    for name, head in _closures(ys, n).items():
        r[f"{name}_forward"] = timeit(lambda: head(xs, xq), repeats)
        r[f"{name}_forward_backward"] = timeit(lambda: fwd_bwd(head), repeats)
    r["logistic_newton_forward"] = timeit(lambda: logistic_logits(xs, ys, xq, n, C=3.0, normalize=True), repeats)

    # Baselines and solver alternatives (fewer repeats: they are slow).
    reps = max(1, repeats // 3)

    def sk_logistic() -> None:
        for i in range(t):
            LogisticRegression(C=3.0, max_iter=1000).fit(F.normalize(xs[i], dim=-1).numpy(), ys[i].numpy())

    def sk_svm() -> None:
        for i in range(t):
            LinearSVC(C=0.1, multi_class="crammer_singer", fit_intercept=False, tol=1e-4).fit(
                xs[i].numpy(), ys[i].numpy()
            )

    r["baseline_sklearn_logistic_lbfgs_loop"] = timeit(sk_logistic, reps)
    r["baseline_torch_lbfgs_batched_logistic"] = timeit(lambda: lbfgs_logistic(xs, ys, n), reps)
    r["baseline_liblinear_crammer_singer_loop"] = timeit(sk_svm, reps)
    return r


def _quality(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor) -> dict[str, Any]:
    """Solution quality and solver iterations on one meta-batch."""
    n = N_WAY
    w_newton, _ = logistic_fit(xs, ys, n, C=3.0, normalize=True)
    w_lb, _ = lbfgs_logistic(xs, ys, n)
    gram = torch.bmm(xs.double(), xs.double().transpose(1, 2))
    _, _, _, iters, conv = svm_mod._ipm_cs_dual(gram, F.one_hot(ys, n).double(), 0.1, 0.0, 1e-9, 100)
    heads = _closures(ys, n)
    acc = {
        name: float((heads[name](xs, xq).argmax(-1) == yq).float().mean())
        for name in ("prototypes", "r2d2_ridge", "svm_cs")
    }
    acc["logistic"] = float((logistic_logits(xs, ys, xq, n, C=3.0, normalize=True).argmax(-1) == yq).float().mean())
    return {
        "svm_ipm_iterations": iters,
        "svm_ipm_converged": conv,
        "logistic_newton_vs_torch_lbfgs_max_abs_W_diff": float((w_newton.double() - w_lb).abs().max()),
        "query_accuracy_on_synthetic_batch": acc,
    }


def run(config: HeadsConfig) -> dict[str, Any]:
    """Median seconds of every batched head on one meta-batch, beside per-task scikit-learn
    loops; writes ``heads.json`` into ``config.out``."""
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "the heads benchmark times scikit-learn baselines; install them with pip install -e .[dev] (scikit-learn)."
        ) from exc
    config.write_resolved()
    results: dict[str, Any] = {
        "setting": {
            "tasks": config.tasks,
            "n_way": N_WAY,
            "shots": SHOTS,
            "queries_per_class": QUERIES,
            "dtype": "float32",
            "device": "cpu",
            "threads": config.threads,
            "repeats": config.repeats,
        },
        "seconds_per_meta_batch": {},
        "notes": {},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        results["machine"] = machine("cpu")
        for d in config.dims:
            xs, ys, xq, yq = make_batch(config.tasks, N_WAY, SHOTS, QUERIES, d)
            r = _time_dim(xs, ys, xq, yq, config.repeats)
            results["seconds_per_meta_batch"][f"D={d}"] = r
            results["notes"][f"D={d}"] = _quality(xs, ys, xq, yq)
            print(f"D={d}:", json.dumps(r, indent=1), json.dumps(results["notes"][f"D={d}"]), flush=True)
    finally:
        torch.set_num_threads(threads)
    out = Path(config.out) / "heads.json"
    out.write_text(json.dumps(results, indent=2))
    print("wrote", out)
    return results
