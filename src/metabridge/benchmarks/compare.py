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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, load_plugins
from ..csv_options import parse_csv, parse_json_object
from ..recipes import get_recipe

#: The methods the seed paper compares, and which of them are gradient-based meta-learning.
#: The default main job: MTL against the best GBML method of the --full run (MAML) and the
#: fastest-converging baseline (ProtoNet), for long enough that the converged column means
#: something, in under 15 minutes on 2 CPU cores. All six: --methods mtl,fomaml,maml,anil,protonet,metaoptnet.
DEFAULT_METHODS = ("mtl", "maml", "protonet")
ALL_METHODS = ("mtl", "fomaml", "maml", "anil", "protonet", "metaoptnet")
GBML = ("maml", "fomaml", "anil", "metaoptnet", "metasgd", "reptile")
#: Black-box adaptation (CS330 lecture 2): selectable with --methods, in neither tuple above.
BLACK_BOX = ("mann", "snail", "icl")
LABELS = {"mtl": "MTL (Wang et al.)", "fomaml": "first-order MAML", "maml": "MAML", "anil": "ANIL",
          "protonet": "ProtoNet", "metaoptnet": "MetaOptNet-SVM", "metasgd": "Meta-SGD", "reptile": "Reptile",
          "drs": "DRS (joint training)", "mann": "MANN (LSTM + memory)", "snail": "SNAIL",
          "icl": "ICL transformer"}
#: Published accuracies of methods, for context beside the table (other data than glyphs).
REFERENCES = {
    "snail": "SNAIL on Omniglot 5-way: 99.07% 1-shot, 99.78% 5-shot (Mishra et al. 2018)",
    "mann": ("MANN on Omniglot, 5 classes per episode, accuracy at the 1st/2nd/3rd/5th/10th instance of a "
             "class: 36.4/82.8/91.0/94.9/98.1% (Santoro et al. 2016, Table 1; a sequential protocol, not N-way "
             "K-shot)"),
}

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
    # black-box learners, Adam 1e-3: the CS330 LSTM (2 x 128); SNAIL's 5-way Omniglot architecture
    # (Mishra et al. 2018, appendix), its TC blocks sized for 5-way 5-shot sequences (T = 26);
    # a small set-encoder / cross-attention transformer.
    # Santoro et al. 2016: a one-layer LSTM controller (200 units) + content-addressed memory (keys of 40)
    "mann": {"hparams": {"hidden": 200, "layers": 1, "memory": True, "key_size": 40}},
    "snail": {"hparams": {"keys": [64, 256, 512], "values": [32, 128, 256], "filters": 128, "tc_length": 26}},
    "icl": {"hparams": {"dim": 128, "heads": 4, "encoder_layers": 2, "decoder_layers": 2}},
}


@dataclass
class CompareSettings:
    """Everything one comparison needs (see :func:`main` for the meaning of each).

    ``plugins`` are module import paths that every worker process imports before it
    builds its run, where one's own ``register_algorithm`` / ``register_dataset`` calls live.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    dataset: str = "glyphs"
    data_root: str = "data"
    model: str = "conv4"
    image_size: int | None = None
    n_way: int = 5
    k_shot: int = 1
    q_query: int = 10
    test_shots: tuple[int, ...] = (1, 5)
    test_queries: tuple[int, ...] = (10, 6)
    budget_seconds: float = 200.0
    eval_every_seconds: float = 25.0
    #: a budget of training steps instead of seconds (0 = use ``budget_seconds``): every method
    #: takes this many steps and validates every ``eval_every_steps``, so the result does not
    #: depend on how fast or how loaded the machine is (for ablations of one method)
    budget_steps: int = 0
    eval_every_steps: int = 0
    val_episodes: int = 100
    test_episodes: int = 600
    meta_batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "runs/compare"
    results_dir: str = "bench/results"
    plugins: tuple[str, ...] = ()
    #: a named recipe (:mod:`metabridge.recipes`): ``default`` or ``official`` (Wang et al.'s code)
    recipe: str = "default"
    #: config fields applied to every method over the recipe's (schedule, early stopping, augment)
    training: dict[str, Any] = field(default_factory=dict)
    #: hyperparameters of one method over the recipe's and the paper settings, e.g. {"mtl": {"head_init": "official"}}
    method_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: backbone arguments over the recipe's, e.g. {"variant": "official"} for resnet12
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: processes per method (torchrun, data parallel: the meta-batch split over them)
    nproc_per_node: int = 1

    def method_config(self, method: str) -> ExperimentConfig:
        """The training run of ``method`` under this comparison's shared budget."""
        s = METHOD_SETTINGS.get(method)
        if s is None:  # an algorithm registered by a plugin runs with its constructor's defaults
            from ..algorithms.registry import ALGORITHMS

            load_plugins(self.plugins)
            if method not in ALGORITHMS:
                raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_SETTINGS)} or an "
                                 "algorithm registered with register_algorithm in a --plugin module.")
            s = {"hparams": {}}
        recipe = get_recipe(self.recipe)
        hparams = {**s["hparams"], **recipe.hparams.get(method, {}), **self.method_hparams.get(method, {})}
        model_kwargs = {**recipe.model_kwargs.get(self.model, {}), **self.model_kwargs}
        training = {**recipe.config, **self.training}
        if self.budget_steps < 0 or self.eval_every_steps < 0:
            raise ValueError("--budget-steps and --eval-every-steps must be >= 0 (0 = a budget in seconds).")
        if self.budget_steps:  # a step budget: validation by step, no clock
            budget = {"steps": self.budget_steps, "max_train_seconds": None, "eval_every_seconds": None,
                      "eval_every": self.eval_every_steps or max(self.budget_steps // 20, 1)}
        else:
            budget = {"steps": 10**9, "max_train_seconds": self.budget_seconds, "eval_every": 0,
                      "eval_every_seconds": self.eval_every_seconds}
        return ExperimentConfig(
            task=self.dataset, data_root=self.data_root, image_size=self.image_size, n_way=self.n_way, k_shot=self.k_shot,
            q_query=self.q_query, algorithm=method, hparams=hparams, model=self.model, model_kwargs=model_kwargs,
            optimizer=s.get("optimizer", "adam"), lr=s.get("lr", 1e-3), meta_batch_size=self.meta_batch_size,
            **budget, val_episodes=self.val_episodes,
            test_episodes=self.test_episodes, eval_batch_size=50, checkpoint_every=0, log_every=10,
            seed=self.seed, device=self.device, out_dir=str(Path(self.out_dir) / method),
            plugins=list(self.plugins), **training,
        ).validate()


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one method in a fresh Python process (``spec["nproc"] > 1``: that many processes
    under torchrun, data parallel, rank 0 testing and reporting); return its result dict."""
    nproc = int(spec.get("nproc", 1))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc > 1 else [sys.executable]
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([*launcher, "-m", "metabridge.benchmarks._compare_worker", str(spec_path), str(out_path)],
                              env=os.environ.copy())
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"method {spec['method']} failed (exit code {proc.returncode}); see the output above.")
        return json.loads(out_path.read_text())


def _train_shot(settings: dict[str, Any]) -> int:
    """K of the training episodes (reports written before the rename call it ``train_shot``)."""
    return int(settings.get("k_shot", settings.get("train_shot", 1)))


def _test_shots(settings: dict[str, Any]) -> list[int]:
    """K of the test episodes (``shots`` in reports written before the rename)."""
    return list(settings.get("test_shots", settings.get("shots", [])))


def time_to_target(curve: list[dict[str, Any]], target: float) -> float | None:
    """First training time at which validation accuracy reached ``target`` (None: never)."""
    for point in curve:
        if point["val_mean"] >= target:
            return float(point["train_seconds"])
    return None


#: The fraction of a method's training time, at its end, whose validations decide whether
#: it has converged (see :func:`convergence`).
CONVERGED_TAIL = 1 / 3


def budget_axis(settings: dict[str, Any]) -> str:
    """The curve field a comparison's budget is counted in: ``"step"`` for a step budget
    (``budget_steps``), else ``"train_seconds"``."""
    return "step" if settings.get("budget_steps") else "train_seconds"


def convergence(curve: list[dict[str, Any]], tail: float = CONVERGED_TAIL, axis: str = "train_seconds"
                ) -> dict[str, Any]:
    """Whether a validation curve has flattened: ``{"converged": True | False | None, ...}``.

    The rule (issue 13: flat within its CI over the last third of the budget), in two
    parts, both against the final validation's 95% CI half-width ``ci``:

    * the least-squares line through the validations of the last third gains at most ``ci``
      across it (a falling trend counts as converged: more training would not help, and
      the best-validation weights are kept), and
    * the mean validation of the last third is at most ``ci`` above that of the middle
      third: with only a few noisy validations in the window, a curve still climbing
      steadily can look flat inside it (measured: MTL at 200 s, 89.3 / 90.6 / 90.1% in its
      last third after rising 2-3 points every 25 s before).

    A trend and means, not the spread of the points, because single validations scatter by
    about their CI even on a flat curve. ``None`` (unknown) when fewer than three
    validations fall in the last third, or none in the middle one: validate more often.
    ``axis`` is the curve field the thirds are taken over: ``"train_seconds"`` (a time budget)
    or ``"step"`` (a step budget, :func:`budget_axis`)."""
    if not curve:
        return {"converged": None, "window_points": 0, "gain": None, "rise": None, "ci95": None}
    end = curve[-1][axis]
    eps = 1e-9 * max(end, 1.0)
    window = [p for p in curve if p[axis] >= (1 - tail) * end - eps]
    middle = [p for p in curve if (1 - 2 * tail) * end - eps <= p[axis] < (1 - tail) * end - eps]
    ci = curve[-1]["val_ci95"]
    if len(window) < 3 or not middle:
        return {"converged": None, "window_points": len(window), "gain": None, "rise": None, "ci95": ci}
    ts = [float(p[axis]) for p in window]
    vs = [p["val_mean"] for p in window]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var if var > 0 else 0.0
    gain = slope * (ts[-1] - ts[0])
    rise = mv - sum(p["val_mean"] for p in middle) / len(middle)
    return {"converged": bool(gain <= ci and rise <= ci), "window_points": len(window), "gain": gain,
            "rise": rise, "ci95": ci}


def _converged_label(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[flag]


def summarize(results: dict[str, dict[str, Any]], axis: str = "train_seconds") -> dict[str, Any]:
    """The time-to-accuracy target, each method's time to reach it, and whether each
    method's validation curve had flattened by the end of its budget (counted in ``axis``,
    :func:`budget_axis`)."""
    gbml = {m: r for m, r in results.items() if m in GBML and r["curve"]}
    summary: dict[str, Any] = {"target": None, "best_gbml": None, "time_to_target": {}, "speedup_vs_best_gbml": None,
                               "converged": {m: convergence(r["curve"], axis=axis)["converged"]
                                             for m, r in results.items()}}
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
    """One honest sentence on MTL's time-to-target against the best GBML method: no ratio
    (and no winner) unless both had converged, since an unconverged method's time or
    target says only where the budget stopped it."""
    best = LABELS.get(summary["best_gbml"], summary["best_gbml"])
    speedup = summary["speedup_vs_best_gbml"]
    if "mtl" not in summary["time_to_target"]:
        return "MTL was not run."
    converged = summary.get("converged", {})
    unconverged = [LABELS.get(m, m) for m in ("mtl", summary["best_gbml"]) if converged.get(m) is not True]
    if unconverged:
        return (f"not converged: {', '.join(unconverged)} still changing over the last third of the budget "
                "(or too few validations to tell), so no time-to-target verdict; train longer (--budget).")
    if summary["time_to_target"]["mtl"] is None:
        return f"MTL never reached the target within its budget ({best} did)."
    if speedup is None:
        return f"no time-to-target ratio: {best} reached the target at its first validation."
    if speedup >= 1:
        return f"MTL reached it {speedup:.1f}x sooner than {best}."
    return f"MTL reached it later: it took {1 / speedup:.1f}x as long as {best}."


def format_table(report: dict[str, Any]) -> str:
    """Plain-text results table."""
    shots = _test_shots(report["settings"])
    cols = [f"{s}-shot acc %" for s in shots] + ["train s", "steps", "s/iter", "peak MB", "to target s",
                                                  "converged"]
    head = f"{'method':20s} " + " ".join(f"{c:>15s}" if "acc" in c else f"{c:>11s}" for c in cols)
    lines = [head, "-" * len(head)]
    ttt = report["summary"]["time_to_target"]
    axis = budget_axis(report["settings"])
    conv = report["summary"].get("converged") or {m: convergence(r["curve"], axis=axis)["converged"]
                                                  for m, r in report["methods"].items()}
    for m, r in report["methods"].items():
        accs = " ".join(f"{100 * r['test'][str(s)]['mean']:>7.2f} ± {100 * r['test'][str(s)]['ci95']:<5.2f}"
                        for s in shots)
        t = ttt.get(m)
        lines.append(
            f"{LABELS.get(m, m):20s} {accs} {r['train_seconds']:>11.0f} {r['steps']:>11d} "
            f"{r['seconds_per_iteration']:>11.3f} {r['peak_memory_mb'] or float('nan'):>11.0f} "
            f"{('%.0f' % t) if t is not None else 'never':>11s} {_converged_label(conv.get(m)):>11s}"
        )
    s = report["summary"]
    if s["target"] is not None:
        lines.append(f"\ntarget = best GBML ({LABELS.get(s['best_gbml'], s['best_gbml'])}) final validation "
                     f"accuracy - CI = {100 * s['target']:.2f}% ({_train_shot(report['settings'])}-shot validation)")
        lines.append(speedup_sentence(s))
    lines.extend(accuracy_sentences(report))
    lines.extend(f"published: {REFERENCES[m]}." for m in report["methods"] if m in REFERENCES)
    return "\n".join(lines)


def accuracy_sentences(report: dict[str, Any]) -> list[str]:
    """Per test shot: the most accurate method, and whether MTL is within its CI, and a
    warning that an unconverged method's accuracy is the one at the budget."""
    methods, out = report["methods"], []
    conv = report["summary"].get("converged", {})
    for shot in _test_shots(report["settings"]):
        key = str(shot)
        scored = {m: r["test"][key] for m, r in methods.items() if key in r["test"]}
        if not scored:
            continue
        best = max(scored, key=lambda m: scored[m]["mean"])
        b = scored[best]
        line = f"{shot}-shot test: best {LABELS.get(best, best)} {100 * b['mean']:.2f} ± {100 * b['ci95']:.2f}%"
        if "mtl" in scored and best != "mtl":
            t = scored["mtl"]
            gap = 100 * (b["mean"] - t["mean"])
            overlap = t["mean"] + t["ci95"] >= b["mean"] - b["ci95"]
            line += (f"; MTL {100 * t['mean']:.2f} ± {100 * t['ci95']:.2f}% ({gap:.2f} points lower, "
                     f"{'CIs overlap' if overlap else 'CIs disjoint'})")
        out.append(line + ".")
    stopped = [LABELS.get(m, m) for m in methods if conv.get(m) is not True]
    if stopped:
        out.append(f"not converged (accuracy at the budget, not final): {', '.join(stopped)}.")
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Validation accuracy against training wall-clock (a step budget: against steps) for
    every method, and each method's test accuracy (same shot as training) at the end of its
    training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    axis = budget_axis(report["settings"])
    for m, r in report["methods"].items():
        xs = [p[axis] for p in r["curve"]]
        ys = [100 * p["val_mean"] for p in r["curve"]]
        line, = ax.plot(xs, ys, marker="o", ms=3, label=LABELS.get(m, m))
        test = r["test"].get(str(_train_shot(report["settings"])))
        if test is not None:  # the test accuracy of the best-validation weights, at the end of training
            ax.errorbar([r["steps"] if axis == "step" else r["train_seconds"]], [100 * test["mean"]], yerr=[100 * test["ci95"]], marker="*", ms=10,
                        color=line.get_color(), capsize=3)
    if report["summary"]["target"] is not None:
        ax.axhline(100 * report["summary"]["target"], color="k", ls="--", lw=1, label="target (best GBML - CI)")
    st = report["settings"]
    ax.set_xlabel("training steps" if axis == "step" else "training wall-clock (s, validation excluded)")
    ax.plot([], [], "k*", ms=8, ls="", label="test accuracy ± CI (best-val. weights)")
    ax.set_ylabel(f"accuracy %, {st['n_way']}-way {_train_shot(st)}-shot (lines: validation)")
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


def machine_device(spec: str) -> str:
    """The ``machine.device`` of a report for the ``--device`` setting ``spec``: ``"CPU (N cores)"``
    when it resolves to the CPU (``auto`` without CUDA included), else the resolved device
    (``"cuda"``, ``"cuda:1"``, ``"mps"``). Raises ``ValueError`` when the device is unusable here,
    before any method trains (:func:`metabridge.device.resolve_device`)."""
    from ..device import resolve_device

    device = resolve_device(spec)
    return f"CPU ({os.cpu_count()} cores)" if device.type == "cpu" else str(device)


def compare(settings: CompareSettings, progress: bool = True) -> dict[str, Any]:
    """Train and test every method; write ``compare.json`` and ``compare.png``.

    ``settings.device`` is passed to every worker as given (each resolves ``auto`` itself, as
    ``metabridge train`` does); the report names the device it resolves to here."""
    if len(settings.test_shots) != len(settings.test_queries):
        raise ValueError("give one query count per test shot (--test-shots 1,5 --test-queries 10,6).")
    device_label = machine_device(settings.device)
    configs = {m: settings.method_config(m) for m in settings.methods}  # validate everything first
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for i, (m, cfg) in enumerate(configs.items(), 1):
        if progress:
            budget = f"{settings.budget_steps} steps" if settings.budget_steps else f"{settings.budget_seconds:.0f} s"
            print(f"[{i}/{len(configs)}] {LABELS.get(m, m)}: training for {budget}, "
                  f"then testing on {settings.test_episodes} episodes per shot", flush=True)
        results[m] = run_worker({"method": m, "config": cfg.to_dict(), "test_shots": list(settings.test_shots),
                                 "test_queries": list(settings.test_queries), "test_episodes": settings.test_episodes,
                                 "progress": progress, "nproc": settings.nproc_per_node})
    import torch

    report = {
        "benchmark": "compare", "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in settings.__dict__.items()},
        "machine": {"device": device_label,
                    "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "total_seconds": time.perf_counter() - t0,
        "methods": results, "summary": summarize(results, budget_axis(settings.__dict__)),
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
        "merged_from": len(reports), "methods": merged_methods,
        "summary": summarize(merged_methods, budget_axis(settings)),
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


def _csv(text: str, cast: type = str, name: str = "") -> tuple:
    return tuple(parse_csv(text, name or "the option", cast, example="1,5")) if text.strip() else ()


def _method_hparams(head_init: str, train_forward: str, text: str) -> dict[str, dict[str, Any]]:
    """Per-method hyperparameters from the MTL switches and ``--method-hparams`` (JSON)."""
    given = parse_json_object(text, "--method-hparams", '{"mtl": {"class_weighting": "minmax"}}')
    for name, value in given.items():
        if not isinstance(value, dict):
            raise ValueError(f"--method-hparams: the value for {name!r} must be a JSON object of hyperparameters "
                             f"(got {value!r}).")
    mtl = {k: v for k, v in (("head_init", head_init), ("train_forward", train_forward)) if v}
    out = {name: dict(value) for name, value in given.items()}
    out["mtl"] = {**mtl, **out.get("mtl", {})}
    return out


def _training_switches(lr_schedule: str, early_stopping_patience: int, augment: str) -> dict[str, Any]:
    """The training-recipe options given on the command line, as config fields."""
    out: dict[str, Any] = {}
    if lr_schedule:
        out["lr_schedule"] = lr_schedule
    if early_stopping_patience >= 0:
        out["early_stopping_patience"] = early_stopping_patience or None
    if augment:
        out["augment"] = None if augment == "none" else augment
    return out


def main(
    methods: str = ",".join(DEFAULT_METHODS),
    dataset: str = "glyphs",
    data_root: str = "data",
    model: str = "conv4",
    image_size: int = 0,
    n_way: int = 5,
    k_shot: int = 1,
    q_query: int = 10,
    test_shots: str = "1,5",
    test_queries: str = "10,6",
    budget: float = 200.0,
    eval_every: float = 25.0,
    budget_steps: int = 0,
    eval_every_steps: int = 0,
    val_episodes: int = 100,
    test_episodes: int = 600,
    meta_batch: int = 16,
    full: bool = False,
    seed: int = 0,
    device: str = "cpu",
    out_dir: str = "runs/compare",
    results_dir: str = "bench/results",
    plugin: str = "",
    recipe: str = "default",
    lr_schedule: str = "",
    early_stopping_patience: int = -1,
    augment: str = "",
    head_init: str = "",
    train_forward: str = "",
    model_variant: str = "",
    model_kwargs: str = "",
    method_hparams: str = "",
    nproc_per_node: int = 1,
    merge: str = "",
) -> dict[str, Any]:
    """Compare MTL with gradient-based meta-learning under one training budget.

    Trains MTL, MAML, first-order MAML, ANIL, ProtoNet and MetaOptNet for the same training
    time on the same episodes, tests them on identical fixed episodes, and prints accuracy
    +- 95% CI, training time, time per iteration, peak memory and time-to-accuracy.

    Args:
        methods: comma-separated methods to train (mtl, fomaml, maml, anil, metasgd, reptile,
            protonet, metaoptnet, drs, and the black-box learners mann, snail, icl).
        dataset: glyphs (offline, rendered from fonts), any downloaded one (omniglot, mini_imagenet,
            tiered_imagenet, cifar_fs, fc100) or one registered by a --plugin module.
        data_root: directory of downloaded datasets (not used by glyphs).
        model: backbone: conv4 or resnet12 (or one registered by a --plugin module).
        image_size: side in pixels the images are loaded at (0 = the dataset's standard size; glyphs
            render at any size, e.g. 32 for the ResNet-12 regime of CIFAR-FS).
        n_way: classes per episode, training and test.
        k_shot: support examples per class of the training episodes (MTL merges support and query).
        q_query: query examples per class of the training episodes.
        test_shots: comma-separated K of the test episodes.
        test_queries: comma-separated queries per class of the test episodes, one per test shot
            (glyph classes have 11+ typefaces, so K+Q <= 11 by default).
        budget: training wall-clock per method in seconds (validation excluded).
        eval_every: validate each time this many more training seconds have passed.
        budget_steps: a budget of training steps per method instead of seconds (0 = --budget): the
            accuracies then do not depend on the machine's speed or load (with --full: its
            validation and test episodes, this many steps).
        eval_every_steps: with --budget-steps, validate every this many steps (0 = 20 validations).
        val_episodes: fixed validation episodes per validation.
        test_episodes: fixed test episodes per test shot (identical for every method).
        meta_batch: tasks per training step, for every method.
        full: the long run: 20 minutes of training per method, validation every 60 s on 300
            episodes, 1000 test episodes (overrides budget, eval_every, val_episodes, test_episodes).
        seed: training seed (test episodes use a fixed seed of their own).
        device: auto (CUDA when available), cpu, cuda, cuda:N or mps, for every method (as in
            metabridge train; on CUDA each run keeps its episodes' dataset on the GPU when it fits).
        out_dir: run directories (checkpoints, metrics.jsonl), one per method.
        results_dir: where compare.json and compare.png are written.
        plugin: comma-separated module import paths (e.g. mypkg.fewshot) imported here and in every
            worker process before training, so that algorithms, models and datasets they register
            can be compared.
        recipe: a named set of the switches below: default, or official (Wang et al.'s MTL code:
            plateau schedule, early stopping 15, augmentation, MTL head_init=official and
            train_forward=per_task, ResNet-12 variant=official; see metabridge.recipes).
        lr_schedule: every method's learning-rate schedule over the recipe's: constant, cosine or
            plateau (x0.1 after 4 validations without improvement) [default: the recipe's].
        early_stopping_patience: stop a method after this many validations without improvement
            (0 = never) [default -1: the recipe's].
        augment: augmentation of every method's training episodes: none, auto (the dataset's
            preset) or a preset name [default: the recipe's].
        head_init: MTL's head initialisation: uniform or official [default: the recipe's].
        train_forward: MTL's training forward: batched (all tasks in one forward) or per_task (one
            forward per task, per-task batch-norm statistics) [default: the recipe's].
        model_variant: ResNet-12 variant: plain or official [default: the recipe's].
        model_kwargs: further backbone arguments as a JSON object, e.g. '{"widths": [16, 40, 80, 160]}'
            for a narrower ResNet-12.
        method_hparams: further hyperparameters per method as a JSON object of objects, over the
            recipe's and the switches above, e.g. '{"mtl": {"class_weighting": "minmax"}}'.
        nproc_per_node: processes per method: above 1, each method trains data-parallel under
            torchrun (the meta-batch split over the processes, gradients averaged; see
            metabridge.distributed), rank 0 tests it; 1 thread each is then sensible
            (OMP_NUM_THREADS=1).
        merge: train nothing: merge the compare.json files (or their directories) of earlier runs of
            disjoint --methods with otherwise identical settings, comma-separated, into one table,
            JSON and plot in --results-dir (to split a --full run over several sittings).
    """
    if full:
        budget, eval_every, val_episodes, test_episodes = 1200.0, 60.0, 300, 1000
    if merge:
        report = _merge_files(_csv(merge), results_dir)
    else:
        settings = CompareSettings(
            methods=_csv(methods), dataset=dataset, data_root=data_root, model=model,
            image_size=image_size or None, n_way=n_way,
            k_shot=k_shot, q_query=q_query, test_shots=_csv(test_shots, int, "--test-shots"),
            test_queries=_csv(test_queries, int, "--test-queries"), budget_seconds=budget,
            eval_every_seconds=eval_every, budget_steps=budget_steps, eval_every_steps=eval_every_steps,
            val_episodes=val_episodes, test_episodes=test_episodes, meta_batch_size=meta_batch, seed=seed, device=device, out_dir=out_dir, results_dir=results_dir,
            plugins=_csv(plugin), recipe=recipe, training=_training_switches(lr_schedule, early_stopping_patience,
                                                                             augment),
            method_hparams=_method_hparams(head_init, train_forward, method_hparams),
            model_kwargs={**parse_json_object(model_kwargs, "--model-kwargs"),
                          **({"variant": model_variant} if model_variant else {})},
            nproc_per_node=nproc_per_node,
        )
        if not settings.methods:
            raise ValueError(f"--methods is empty; choose from {', '.join(METHOD_SETTINGS)}.")
        report = compare(settings)
    print("")
    print(format_table(report))
    print(f"\nwrote {Path(results_dir) / 'compare.json'} and {Path(results_dir) / 'compare.png'} "
          f"({report['total_seconds'] / 60:.1f} min in all)")
    return report
