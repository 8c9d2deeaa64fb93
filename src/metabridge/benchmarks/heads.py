"""Time the batched task heads on one meta-batch.

Setting (defaults): T=32 tasks, 5-way 5-shot, 15 queries per class (Q=75), feature dims
D=64 and D=640 (Conv-4 / ResNet-12 widths), float32 inputs, CPU. For each head: median wall time
of the forward pass and, for the differentiable heads, forward + backward of a query
cross-entropy. Baselines measured alongside: scikit-learn per task (the loop Wang et
al.'s MTL test-time protocol runs), LinearSVC(crammer_singer) per task, and a batched
torch.optim.LBFGS for the logistic fit (the solver alternative to batched Newton).

    metabridge bench heads [--threads 2] [--repeats 7]

Writes heads.json into ``--results-dir`` (bench/results by default).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..csv_options import parse_csv
from ..heads import logistic_fit, logistic_logits, metaoptnet_svm_logits, prototype_logits, r2d2_logits
from ..heads import svm as svm_mod


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_batch(t: int, n: int, k: int, q: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(t, n, d, generator=g)
    ys = torch.arange(n).repeat(k).expand(t, -1).contiguous()
    yq = torch.arange(n).repeat(q).expand(t, -1).contiguous()
    xs = means.gather(1, ys.unsqueeze(-1).expand(-1, -1, d)) + 1.5 * torch.randn(t, n * k, d, generator=g)
    xq = means.gather(1, yq.unsqueeze(-1).expand(-1, -1, d)) + 1.5 * torch.randn(t, n * q, d, generator=g)
    return xs, ys, xq, yq


def lbfgs_logistic(xs, ys, n, c=3.0):
    """Batched L-BFGS on the summed (separable) objective in the full D-dim space."""
    x = F.normalize(xs.double(), dim=-1)
    t, s, d = x.shape
    w = torch.zeros(t, d, n, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(t, n, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=1000, tolerance_grad=1e-9, tolerance_change=0,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.bmm(x, w) + b.unsqueeze(1)
        loss = 0.5 * (w * w).sum() + c * F.cross_entropy(logits.reshape(-1, n), ys.reshape(-1), reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main(threads: int = 2, repeats: int = 7, tasks: int = 32, dims: str = "64,640",
         results_dir: str = "bench/results") -> dict:
    """Median seconds of every batched head on one meta-batch, beside per-task scikit-learn loops.

    Args:
        threads: torch CPU threads.
        repeats: timed calls per head (the median is reported); the slow baselines run a third as many.
        tasks: tasks T in the meta-batch (5-way 5-shot, 15 queries per class).
        dims: comma-separated feature dimensions D (64: Conv-4, 640: ResNet-12).
        results_dir: where heads.json is written.
    """
    dim_list = parse_csv(dims, "--dims", positive=True, example="64,640")
    if min(threads, repeats, tasks) < 1:
        raise ValueError(f"--threads, --repeats and --tasks must be >= 1 (got {threads}, {repeats}, {tasks}).")
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC
    except ImportError as exc:
        raise ValueError("the heads benchmark times scikit-learn baselines; install them with "
                         "pip install -e .[dev] (scikit-learn).") from exc
    torch.set_num_threads(threads)

    t, n, k, q = tasks, 5, 5, 15
    results: dict = {
        "setting": {"tasks": t, "n_way": n, "shots": k, "queries_per_class": q, "dtype": "float32",
                    "device": "cpu", "threads": threads, "repeats": repeats,
                    "cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "seconds_per_meta_batch": {},
        "notes": {},
    }
    for d in dim_list:
        xs, ys, xq, yq = make_batch(t, n, k, q, d)
        r: dict = {}

        def fwd_bwd(head):
            a = xs.clone().requires_grad_(True)
            b = xq.clone().requires_grad_(True)
            loss = F.cross_entropy(head(a, b).reshape(-1, n), yq.reshape(-1))
            loss.backward()

        proto = lambda a, b: prototype_logits(a, ys, b, n)  # noqa: E731
        r2d2 = lambda a, b: r2d2_logits(a, ys, b, n, 1.0)  # noqa: E731
        svm = lambda a, b: metaoptnet_svm_logits(a, ys, b, n, 0.1)  # noqa: E731
        svm_mo = lambda a, b: metaoptnet_svm_logits(a, ys, b, n, 0.1, dual_ridge=1.0)  # noqa: E731
        for name, head in (("prototypes", proto), ("r2d2_ridge", r2d2), ("svm_cs", svm), ("svm_cs_ridge1", svm_mo)):
            r[f"{name}_forward"] = timeit(lambda: head(xs, xq), repeats)
            r[f"{name}_forward_backward"] = timeit(lambda: fwd_bwd(head), repeats)
        r["logistic_newton_forward"] = timeit(lambda: logistic_logits(xs, ys, xq, n, C=3.0, normalize=True), repeats)

        # Baselines and solver alternatives (fewer repeats: they are slow).
        reps = max(1, repeats // 3)

        def sk_logistic():
            for i in range(t):
                LogisticRegression(C=3.0, max_iter=1000).fit(F.normalize(xs[i], dim=-1).numpy(), ys[i].numpy())

        def sk_svm():
            for i in range(t):
                LinearSVC(C=0.1, multi_class="crammer_singer", fit_intercept=False, tol=1e-4).fit(xs[i].numpy(), ys[i].numpy())

        r["baseline_sklearn_logistic_lbfgs_loop"] = timeit(sk_logistic, reps)
        r["baseline_torch_lbfgs_batched_logistic"] = timeit(lambda: lbfgs_logistic(xs, ys, n), reps)
        r["baseline_liblinear_crammer_singer_loop"] = timeit(sk_svm, reps)
        results["seconds_per_meta_batch"][f"D={d}"] = r

        # Solution quality and solver iterations.
        w_newton, b_newton = logistic_fit(xs, ys, n, C=3.0, normalize=True)
        w_lb, _ = lbfgs_logistic(xs, ys, n)
        gram = torch.bmm(xs.double(), xs.double().transpose(1, 2))
        _, _, _, iters, conv = svm_mod._ipm_cs_dual(gram, F.one_hot(ys, n).double(), 0.1, 0.0, 1e-9, 100)
        acc = {}
        for name, head in (("prototypes", proto), ("r2d2_ridge", r2d2), ("svm_cs", svm)):
            acc[name] = float((head(xs, xq).argmax(-1) == yq).float().mean())
        acc["logistic"] = float((logistic_logits(xs, ys, xq, n, C=3.0, normalize=True).argmax(-1) == yq).float().mean())
        results["notes"][f"D={d}"] = {
            "svm_ipm_iterations": iters,
            "svm_ipm_converged": conv,
            "logistic_newton_vs_torch_lbfgs_max_abs_W_diff": float((w_newton.double() - w_lb).abs().max()),
            "query_accuracy_on_synthetic_batch": acc,
        }
        print(f"D={d}:", json.dumps(r, indent=1), json.dumps(results["notes"][f"D={d}"]), flush=True)
    out = Path(results_dir) / "heads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("wrote", out)
    return results
