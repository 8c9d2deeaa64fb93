"""``metabridge compare``: MTL against gradient-based meta-learning under one budget.

The claim under test (Wang, Zhao & Li, ICML 2021, Sec. 5): multi-task learning
(one shared body, one head row per training class, first order, head refit at test
time) reaches the accuracy of gradient-based meta-learning (MAML, first-order MAML,
ANIL, MetaOptNet) on few-shot classification at a fraction of the training cost.

Every method trains on the same 5-way episodes of the same dataset for the same
budget of training wall-clock (validation and checkpoints are not counted), with
its validation accuracy recorded as training time passes; its best-validation
weights are then tested on identical fixed 5-way 1-shot and 5-shot test episodes.
Time-to-accuracy, as in the paper's speed comparison: the training time at which a
method's validation accuracy first reaches the target = (best final validation
accuracy among the GBML methods) - (its 95% CI half-width).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from .config import ExperimentConfig

#: The methods the seed paper compares, and which of them are gradient-based meta-learning.
DEFAULT_METHODS = ("mtl", "fomaml", "maml", "anil", "protonet", "metaoptnet")
GBML = ("maml", "fomaml", "anil", "metaoptnet", "metasgd", "reptile")
LABELS = {"mtl": "MTL (Wang et al.)", "fomaml": "first-order MAML", "maml": "MAML", "anil": "ANIL",
          "protonet": "ProtoNet", "metaoptnet": "MetaOptNet-SVM", "metasgd": "Meta-SGD", "reptile": "Reptile",
          "drs": "DRS (joint training)"}

#: Per-method settings from the papers: MAML's Omniglot protocol (one inner step of 0.4 in
#: training, three at test; Finn et al. 2017, Sec. 5.2), the same for ANIL (Raghu et al.
#: 2020); MTL with RAdam 1e-3 (Wang et al. 2021); MetaOptNet's SVM with C = 0.1.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "mtl": {"optimizer": "radam", "hparams": {}},
    "fomaml": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "maml": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "anil": {"hparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3}},
    "metasgd": {"hparams": {"inner_lr": 0.4, "inner_steps": 1}},
    "reptile": {"optimizer": "sgd", "lr": 1.0, "hparams": {"inner_lr": 0.01, "inner_steps": 5, "eval_steps": 10}},
    "protonet": {"hparams": {}},
    "metaoptnet": {"hparams": {"head": "svm", "C": 0.1}},
    "drs": {"hparams": {"finetune_lr": 0.01, "finetune_steps": 10, "finetune": "head"}},
}


@dataclass
class CompareSettings:
    """Everything one comparison needs (see :func:`compare` for the meaning of each)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    dataset: str = "glyphs"
    data_root: str = "data"
    model: str = "conv4"
    n_way: int = 5
    train_shot: int = 1
    train_query: int = 10
    shots: tuple[int, ...] = (1, 5)
    queries: tuple[int, ...] = (10, 6)
    budget_seconds: float = 75.0
    eval_every_seconds: float = 25.0
    val_episodes: int = 100
    test_episodes: int = 600
    meta_batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "runs/compare"
    results_dir: str = "bench/results"

    def method_config(self, method: str) -> ExperimentConfig:
        """The training run of ``method`` under this comparison's shared budget."""
        if method not in METHOD_SETTINGS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_SETTINGS)}.")
        s = METHOD_SETTINGS[method]
        return ExperimentConfig(
            task=self.dataset, data_root=self.data_root, n_way=self.n_way, k_shot=self.train_shot,
            q_query=self.train_query, algorithm=method, hparams=dict(s["hparams"]), model=self.model,
            optimizer=s.get("optimizer", "adam"), lr=s.get("lr", 1e-3), meta_batch_size=self.meta_batch_size,
            steps=10**9, max_train_seconds=self.budget_seconds, eval_every=0,
            eval_every_seconds=self.eval_every_seconds, val_episodes=self.val_episodes,
            test_episodes=self.test_episodes, eval_batch_size=50, checkpoint_every=0, log_every=10,
            seed=self.seed, device=self.device, out_dir=str(Path(self.out_dir) / method),
        ).validate()


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one method in a fresh Python process; return its result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "metabridge.compare_worker", str(spec_path), str(out_path)],
                              env=os.environ.copy())
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"method {spec['method']} failed (exit code {proc.returncode}); see the output above.")
        return json.loads(out_path.read_text())


def time_to_target(curve: list[dict[str, Any]], target: float) -> float | None:
    """First training time at which validation accuracy reached ``target`` (None: never)."""
    for point in curve:
        if point["val_mean"] >= target:
            return float(point["train_seconds"])
    return None


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The time-to-accuracy target and each method's time to reach it."""
    gbml = {m: r for m, r in results.items() if m in GBML and r["curve"]}
    summary: dict[str, Any] = {"target": None, "best_gbml": None, "time_to_target": {}, "speedup_vs_best_gbml": None}
    if not gbml:
        return summary
    best = max(gbml, key=lambda m: gbml[m]["curve"][-1]["val_mean"])
    final = gbml[best]["curve"][-1]
    target = final["val_mean"] - final["val_ci95"]
    summary.update(target=target, best_gbml=best)
    for m, r in results.items():
        summary["time_to_target"][m] = time_to_target(r["curve"], target)
    t_mtl, t_gbml = summary["time_to_target"].get("mtl"), summary["time_to_target"].get(best)
    if t_mtl and t_gbml:
        summary["speedup_vs_best_gbml"] = t_gbml / t_mtl
    return summary


def speedup_sentence(summary: dict[str, Any]) -> str:
    """One honest sentence on MTL's time-to-target against the best GBML method."""
    best = LABELS.get(summary["best_gbml"], summary["best_gbml"])
    speedup = summary["speedup_vs_best_gbml"]
    if "mtl" not in summary["time_to_target"]:
        return "MTL was not run."
    if summary["time_to_target"]["mtl"] is None:
        return f"MTL never reached the target within its budget ({best} did)."
    if speedup is None:
        return f"no time-to-target ratio: {best} reached the target at its first validation."
    if speedup >= 1:
        return f"MTL reached it {speedup:.1f}x sooner than {best}."
    return f"MTL reached it later: it took {1 / speedup:.1f}x as long as {best}."


def format_table(report: dict[str, Any]) -> str:
    """Plain-text results table."""
    shots = report["settings"]["shots"]
    cols = [f"{s}-shot acc %" for s in shots] + ["train s", "steps", "s/iter", "peak MB", "to target s"]
    head = f"{'method':20s} " + " ".join(f"{c:>15s}" if "acc" in c else f"{c:>11s}" for c in cols)
    lines = [head, "-" * len(head)]
    ttt = report["summary"]["time_to_target"]
    for m, r in report["methods"].items():
        accs = " ".join(f"{100 * r['test'][str(s)]['mean']:>7.2f} ± {100 * r['test'][str(s)]['ci95']:<5.2f}"
                        for s in shots)
        t = ttt.get(m)
        lines.append(
            f"{LABELS.get(m, m):20s} {accs} {r['train_seconds']:>11.0f} {r['steps']:>11d} "
            f"{r['seconds_per_iteration']:>11.3f} {r['peak_memory_mb'] or float('nan'):>11.0f} "
            f"{('%.0f' % t) if t is not None else 'never':>11s}"
        )
    s = report["summary"]
    if s["target"] is not None:
        lines.append(f"\ntarget = best GBML ({LABELS.get(s['best_gbml'], s['best_gbml'])}) final validation "
                     f"accuracy - CI = {100 * s['target']:.2f}% ({report['settings']['train_shot']}-shot validation)")
        lines.append(speedup_sentence(s))
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Validation accuracy against training wall-clock for every method, and each method's
    test accuracy (same shot as training) at the end of its training time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, r in report["methods"].items():
        xs = [p["train_seconds"] for p in r["curve"]]
        ys = [100 * p["val_mean"] for p in r["curve"]]
        line, = ax.plot(xs, ys, marker="o", ms=3, label=LABELS.get(m, m))
        test = r["test"].get(str(report["settings"]["train_shot"]))
        if test is not None:  # the test accuracy of the best-validation weights, at the end of training
            ax.errorbar([r["train_seconds"]], [100 * test["mean"]], yerr=[100 * test["ci95"]], marker="*", ms=10,
                        color=line.get_color(), capsize=3)
    if report["summary"]["target"] is not None:
        ax.axhline(100 * report["summary"]["target"], color="k", ls="--", lw=1, label="target (best GBML - CI)")
    st = report["settings"]
    ax.set_xlabel("training wall-clock (s, validation excluded)")
    ax.plot([], [], "k*", ms=8, ls="", label="test accuracy ± CI (best-val. weights)")
    ax.set_ylabel(f"accuracy %, {st['n_way']}-way {st['train_shot']}-shot (lines: validation)")
    ax.set_title(f"{st['dataset']} / {st['model']} on {report['machine']['device']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict[str, Any], results_dir: str) -> None:
    """Write ``compare.json`` and ``compare.png`` into ``results_dir``."""
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "compare.png")


def compare(settings: CompareSettings, progress: bool = True) -> dict[str, Any]:
    """Train and test every method; write ``compare.json`` and ``compare.png``."""
    if len(settings.shots) != len(settings.queries):
        raise ValueError("give one query count per test shot (--shots 1,5 --queries 10,6).")
    configs = {m: settings.method_config(m) for m in settings.methods}  # validate everything first
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for i, (m, cfg) in enumerate(configs.items(), 1):
        if progress:
            print(f"[{i}/{len(configs)}] {LABELS.get(m, m)}: training for {settings.budget_seconds:.0f} s, "
                  f"then testing on {settings.test_episodes} episodes per shot", flush=True)
        results[m] = run_worker({"method": m, "config": cfg.to_dict(), "shots": list(settings.shots),
                                 "queries": list(settings.queries), "test_episodes": settings.test_episodes,
                                 "progress": progress})
    import torch

    report = {
        "benchmark": "compare", "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in settings.__dict__.items()},
        "machine": {"device": settings.device if settings.device != "cpu" else f"CPU ({os.cpu_count()} cores)",
                    "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "total_seconds": time.perf_counter() - t0,
        "methods": results, "summary": summarize(results),
    }
    write_report(report, settings.results_dir)
    return report


#: Settings that may differ between runs merged into one comparison (everything else must match).
MERGE_FREE_SETTINGS = ("methods", "out_dir", "results_dir")


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One comparison from several ``compare.json`` reports of disjoint methods.

    A long comparison (``--full``: 20 min of training per method) need not run in one
    sitting: run ``--methods mtl,maml`` once and ``--methods fomaml,anil`` later, then merge.
    The runs must share every setting but the method list (same dataset, budget, episodes,
    seed) and the machine, or their times and accuracies are not comparable; the
    time-to-target is recomputed over the union of methods.
    """
    if not reports:
        raise ValueError("nothing to merge: give at least one compare.json.")
    first = reports[0]
    merged_methods: dict[str, dict[str, Any]] = {}
    for i, rep in enumerate(reports):
        for key in set(first["settings"]) | set(rep["settings"]):
            if key in MERGE_FREE_SETTINGS:
                continue
            a, b = first["settings"].get(key), rep["settings"].get(key)
            if a != b:
                raise ValueError(f"report {i + 1} was run with {key}={b!r}, report 1 with {key}={a!r}; "
                                 f"only runs that differ in --methods can be merged: re-run with the same {key}.")
        if rep["machine"].get("device") != first["machine"].get("device"):
            raise ValueError(f"report {i + 1} ran on {rep['machine'].get('device')!r}, report 1 on "
                             f"{first['machine'].get('device')!r}; wall-clock from different machines is not "
                             "comparable: re-run on one machine.")
        for m, r in rep["methods"].items():
            if m in merged_methods:
                raise ValueError(f"method {m!r} is in more than one report; merge runs of disjoint methods "
                                 "(drop one of the two runs).")
            merged_methods[m] = r
    settings = dict(first["settings"], methods=list(merged_methods))
    return {
        "benchmark": "compare", "settings": settings, "machine": first["machine"],
        "total_seconds": sum(r["total_seconds"] for r in reports),
        "merged_from": len(reports), "methods": merged_methods, "summary": summarize(merged_methods),
    }


def _merge_files(paths: tuple[str, ...], results_dir: str) -> dict[str, Any]:
    reports = []
    for p in paths:
        path = Path(p)
        path = path / "compare.json" if path.is_dir() else path
        if not path.exists():
            raise ValueError(f"{path} does not exist; give the --results-dir of an earlier compare run.")
        reports.append(json.loads(path.read_text()))
    report = merge_reports(reports)
    write_report(report, results_dir)
    return report


def _csv(text: str, cast: type = str) -> tuple:
    return tuple(cast(x.strip()) for x in text.split(",") if x.strip())


compare_app = typer.Typer(help="Compare MTL with gradient-based meta-learning under one training budget.")


@compare_app.callback(invoke_without_command=True)
def compare_command(
    methods: str = typer.Option(",".join(DEFAULT_METHODS), help="Comma-separated methods to train "
                                f"({', '.join(METHOD_SETTINGS)})."),
    dataset: str = typer.Option("glyphs", help="Dataset: glyphs (offline, rendered from fonts) or any downloaded "
                                "one (omniglot, mini_imagenet, tiered_imagenet, cifar_fs, fc100)."),
    data_root: str = typer.Option("data", help="Directory of downloaded datasets (not used by glyphs)."),
    model: str = typer.Option("conv4", help="Backbone: conv4 or resnet12."),
    shots: str = typer.Option("1,5", help="Comma-separated K of the test episodes."),
    queries: str = typer.Option("10,6", help="Queries per class of the test episodes, one per shot (glyph "
                                "classes have 11+ typefaces, so K+Q <= 11 by default)."),
    train_shot: int = typer.Option(1, help="K of the training episodes (MTL merges support and query)."),
    train_query: int = typer.Option(10, help="Queries per class of the training episodes."),
    budget: float = typer.Option(75.0, help="Training wall-clock per method in seconds (validation excluded)."),
    eval_every: float = typer.Option(25.0, help="Validate each time this many more training seconds have passed."),
    val_episodes: int = typer.Option(100, help="Fixed validation episodes per validation."),
    test_episodes: int = typer.Option(600, help="Fixed test episodes per shot (identical for every method)."),
    meta_batch: int = typer.Option(16, help="Tasks per training step, for every method."),
    full: bool = typer.Option(False, "--full", help="The long run: 20 minutes of training per method, validation "
                              "every 60 s on 300 episodes, 1000 test episodes (overrides budget/eval/episodes)."),
    seed: int = typer.Option(0, help="Training seed (test episodes use a fixed seed of their own)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    out_dir: str = typer.Option("runs/compare", help="Run directories (checkpoints, metrics.jsonl) per method."),
    results_dir: str = typer.Option("bench/results", help="Where compare.json and compare.png are written."),
    merge: str = typer.Option("", help="Train nothing: merge the compare.json files (or their directories) of "
                              "earlier runs of disjoint --methods with otherwise identical settings, comma-"
                              "separated, into one table, JSON and plot in --results-dir (split a --full run "
                              "over several sittings)."),
) -> None:
    """Train MTL, MAML, first-order MAML, ANIL, ProtoNet and MetaOptNet for the same training time
    on the same episodes, test them on identical fixed episodes, and print accuracy +- 95% CI,
    training time, time per iteration, peak memory and time-to-accuracy."""
    if full:
        budget, eval_every, val_episodes, test_episodes = 1200.0, 60.0, 300, 1000
    settings = CompareSettings(
        methods=_csv(methods), dataset=dataset, data_root=data_root, model=model, n_way=5,
        train_shot=train_shot, train_query=train_query, shots=_csv(shots, int), queries=_csv(queries, int),
        budget_seconds=budget, eval_every_seconds=eval_every, val_episodes=val_episodes,
        test_episodes=test_episodes, meta_batch_size=meta_batch, seed=seed, device=device, out_dir=out_dir,
        results_dir=results_dir,
    )
    try:
        report = _merge_files(_csv(merge), results_dir) if merge else compare(settings)
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("")
    typer.echo(format_table(report))
    typer.echo(f"\nwrote {Path(results_dir) / 'compare.json'} and {Path(results_dir) / 'compare.png'} "
               f"({report['total_seconds'] / 60:.1f} min in all)")
