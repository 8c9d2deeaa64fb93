"""``metabridge theory linreg`` and ``metabridge theory closeness``: typed settings and a run function each.

* :class:`LinregConfig` / :func:`run_linreg`: Gao & Sener (NeurIPS 2020), DRS vs one-step
  MAML in meta-linear regression: exact expected losses checked by Monte Carlo, the
  P(MAML beats DRS) heatmaps before/after the test-time step, and the modeling/optimization
  split (their Eq. 9).
* :class:`ClosenessConfig` / :func:`run_closeness`: Wang, Zhao & Li (ICML 2021): prediction
  gap (C5) between MTL, ANIL and MAML networks of growing width and depth on the same unseen
  tasks.

Each field's ``description`` is its ``--help`` text. A run writes its resolved settings as
``config.json`` and its JSON + PNG results under ``out``, and prints a summary table.
Settings are checked when the config is built (a ``ValueError`` naming the field).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from ..atomic import atomic_write_text
from ..config import CommandConfig
from ..device import torch_threads
from ..plugins import load_plugins

__all__ = ["ClosenessConfig", "LinregConfig", "run_closeness", "run_linreg"]

#: The paper-size sweeps that ``--paper`` selects (they replace the fields they name).
PAPER_LINREG: dict[str, Any] = dict(
    num_tasks=[5, 10, 20, 50, 100, 200, 500],
    points=[2, 5, 10, 25, 50, 100],
    alphas=[0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8],
    trials=1000,
)
PAPER_CLOSENESS: dict[str, Any] = dict(widths=[16, 64, 256, 512], depths=[1, 2, 3], steps=2000, seeds=[0, 1, 2])


def _paper_values(data: Any, paper: dict[str, Any]) -> Any:
    """``data`` with the paper-size values filled in when it asks for them (``paper: true``)."""
    if isinstance(data, dict) and data.get("paper") is True:
        return {**data, **paper}
    return data


# ------------------------------------------------------------------ linreg
class LinregConfig(CommandConfig):
    """Settings of ``metabridge theory linreg`` (Gao & Sener 2020, Sec. 4)."""

    out: Path = Field(Path("runs/theory/linreg"), description="Folder for config.json and the JSON and PNG results.")
    dim: PositiveInt = Field(8, description="Input dimension p of every task.")
    beta: float = Field(
        2.0, gt=0, allow_inf_nan=False, description="Eigenvalues of each task covariance are U(0, beta)."
    )
    noise_std: float = Field(0.5, ge=0, allow_inf_nan=False, description="Label noise standard deviation sigma.")
    weight_std: float = Field(
        0.5, ge=0, allow_inf_nan=False, description="Spread sigma_w of task weights around w_mean (all ones)."
    )
    coupling: list[float] = Field(
        [0.0, 1.0],
        min_length=1,
        description=(
            "kappa values, one sweep each: w = w_mean + kappa (2Q/beta - I) w_mean + sigma_w xi. kappa=0 is the "
            "plain Gaussian family (no modeling error); kappa>0 couples a task's weights to its curvature."
        ),
    )
    num_tasks: list[PositiveInt] = Field(
        [5, 10, 20, 50, 100], min_length=1, description=("Numbers of training tasks M.")
    )
    points: list[PositiveInt] = Field(
        [2, 5, 10, 25, 50], min_length=1, description=("N: points per split (N inner + N outer).")
    )
    alphas: list[NonNegativeFloat] = Field(
        [0.1, 0.3, 0.6], min_length=1, description=("MAML step sizes alpha (train and test); 0 means no inner step.")
    )
    trials: PositiveInt = Field(200, description="Independent training sets per (alpha, M, N) cell.")
    mc_tasks: PositiveInt = Field(
        20000, description="Test tasks of the Monte Carlo check of the exact loss (>= 10^4 for a tight check)."
    )
    seed: int = Field(0, description="Seed of every random draw.")
    paper: bool = Field(
        False,
        description="The paper-size sweep: M up to 500, N up to 100, 7 step sizes, 1000 "
        "trials per cell (replaces num_tasks, points, alphas and trials).",
    )

    @model_validator(mode="before")
    @classmethod
    def _paper(cls, data: Any) -> Any:
        return _paper_values(data, PAPER_LINREG)

    @model_validator(mode="after")
    def _solvable(self) -> LinregConfig:
        if min(self.num_tasks) * min(self.points) < self.dim:
            raise ValueError(
                f"the smallest M*N = {min(self.num_tasks) * min(self.points)} is below dim = "
                f"{self.dim}: MAML's normal equations would be singular; raise --num-tasks or "
                "--points, or lower --dim"
            )
        return self


def run_linreg(config: LinregConfig) -> list[Path]:
    """Gao & Sener: exact DRS/MAML expected losses, P(MAML beats DRS) heatmaps, error split.

    One sweep per coupling kappa; returns the JSON files written (one per kappa, each with a
    heatmap and an error-split PNG beside it)."""
    load_plugins(config.plugins)
    config.write_resolved()
    written = [_linreg_one_coupling(config, kappa) for kappa in config.coupling]
    print("\nwrote: " + ", ".join(str(p) for p in written) + " (+ *_heatmap.png, *_split.png)")
    return written


def _linreg_one_coupling(config: LinregConfig, kappa: float) -> Path:
    """The exact-vs-Monte-Carlo check and the sweep of one kappa; writes JSON and PNGs, prints the tables."""
    from ..tasks.linear_regression import LinearRegressionFamily
    from .linreg import expected_test_loss, monte_carlo_test_loss, sample_estimators
    from .linreg_sweep import linreg_sweep, plot_beat_probability, plot_error_split, save_json

    ms, ns, al = config.num_tasks, config.points, config.alphas
    fam = LinearRegressionFamily(
        dim=config.dim, beta=config.beta, noise_std=config.noise_std, weight_std=config.weight_std, coupling=kappa
    )
    # 1. exact expected loss vs Monte Carlo, on estimators fitted at a middle cell
    g = torch.Generator().manual_seed(config.seed)
    m_mid, n_mid, a_mid = ms[len(ms) // 2], ns[len(ns) // 2], al[len(al) // 2]
    w_d, w_m = sample_estimators(fam, m_mid, n_mid, a_mid, 1, g)
    w = torch.cat([w_d, w_m])
    checks = []
    for a in (0.0, a_mid):
        exact = expected_test_loss(w, fam, a, n_mid)
        mean, se = monte_carlo_test_loss(w, fam, a, n_mid, config.mc_tasks, g)
        for i, name in enumerate(("drs", "maml")):
            checks.append(
                {
                    "estimator": name,
                    "alpha_test": a,
                    "k_shot": n_mid,
                    "exact": float(exact[i]),
                    "monte_carlo": float(mean[i]),
                    "stderr": float(se[i]),
                    "z": float((exact[i] - mean[i]) / se[i]),
                }
            )
    # 2. the sweep
    res = linreg_sweep(fam, ms, ns, al, config.trials, config.seed)
    res["monte_carlo_check"] = {
        "test_tasks": config.mc_tasks,
        "fitted_at": {"M": m_mid, "N": n_mid, "alpha": a_mid},
        "rows": checks,
    }
    tag = f"kappa{kappa:g}"
    out = Path(config.out)
    save_json(res, out / f"theory_linreg_{tag}.json")
    plot_beat_probability(res, out / f"theory_linreg_{tag}_heatmap.png")
    plot_error_split(res, out / f"theory_linreg_{tag}_split.png")
    _print_linreg(config, kappa, checks, res)
    return out / f"theory_linreg_{tag}.json"


def _print_linreg(config: LinregConfig, kappa: float, checks: list[dict[str, Any]], res: dict[str, Any]) -> None:
    ms, ns, al = config.num_tasks, config.points, config.alphas
    print(f"\n== kappa = {kappa:g}: exact expected loss vs Monte Carlo ({config.mc_tasks} test tasks) ==")
    print(f"{'estimator':>9} {'alpha':>6} {'exact':>9} {'MC':>9} {'stderr':>8} {'z':>6}")
    for c in checks:
        print(
            f"{c['estimator']:>9} {c['alpha_test']:>6g} {c['exact']:>9.4f} {c['monte_carlo']:>9.4f} "
            f"{c['stderr']:>8.4f} {c['z']:>6.2f}"
        )
    print(
        f"== kappa = {kappa:g}: P(MAML beats DRS) before -> after the test-time step "
        f"({config.trials} training sets per cell) =="
    )
    for ai, a in enumerate(al):
        print(f"alpha = {a:g}" + "".join(f"{'N=' + str(n):>13}" for n in ns))
        for mi, m in enumerate(ms):
            cells = "".join(
                f"{res['p_before'][ai][mi][ni]:>6.2f}->{res['p_after'][ai][mi][ni]:<5.2f}" for ni in range(len(ns))
            )
            print(f"  M={m:<5}" + cells)
    ai = len(al) // 2
    print(f"== kappa = {kappa:g}: error split (E9) at alpha = {al[ai]:g}, N = {ns[-1]} ==")
    print(f"{'M':>5} {'DRS mod':>9} {'DRS opt':>9} {'MAML mod':>9} {'MAML opt':>9}")
    for mi, m in enumerate(ms):
        print(
            f"{m:>5} {res['drs_modeling'][ai][mi][-1]:>9.4f} {res['drs_optimization'][ai][mi][-1]:>9.4f} "
            f"{res['maml_modeling'][ai][mi][-1]:>9.4f} {res['maml_optimization'][ai][mi][-1]:>9.4f}"
        )


# --------------------------------------------------------------- closeness
class ClosenessConfig(CommandConfig):
    """Settings of ``metabridge theory closeness`` (Wang, Zhao & Li 2021, Sec. 4)."""

    out: Path = Field(Path("runs/theory/closeness"), description="Folder for config.json and the JSON and PNG results.")
    widths: list[PositiveInt] = Field([16, 32, 64], min_length=1, description="Hidden widths of the MLPs.")
    depths: list[PositiveInt] = Field([1, 2], min_length=1, description="Numbers of hidden layers.")
    steps: PositiveInt = Field(150, description="Outer training steps of every algorithm.")
    train_tasks: PositiveInt = Field(
        40, description="Size of the fixed pool of training sinusoids (MTL: one head each)."
    )
    meta_batch: PositiveInt = Field(8, description="Tasks per training step (at most --train-tasks).")
    k_shot: PositiveInt = Field(10, description="Support points per task (training and test).")
    q_query: PositiveInt = Field(20, description="Query points per task.")
    inner_lr: float = Field(
        0.01, gt=0, allow_inf_nan=False, description="ANIL/MAML inner step size (training and test)."
    )
    inner_steps: PositiveInt = Field(1, description="ANIL/MAML inner steps during training.")
    eval_steps: PositiveInt = Field(1, description="ANIL/MAML inner steps at test time (native adaptation).")
    outer_lr: float = Field(
        3e-3, gt=0, allow_inf_nan=False, description="Learning rate of every algorithm's optimizer (--optimizer)."
    )
    test_tasks: PositiveInt = Field(200, description="Unseen sinusoid tasks on which predictions are compared.")
    ridge_lambda: float = Field(
        1e-2, gt=0, allow_inf_nan=False, description="Ridge strength of the common last-layer refit."
    )
    seeds: list[int] = Field([0], min_length=1, description="Training seeds per configuration (gaps averaged).")
    parameterization: Literal["standard", "ntk"] = Field(
        "standard",
        description="Layer parameterisation: 'standard' (PyTorch's nn.Linear) or 'ntk' (weights N(0,1), forward "
        "scaled by 1/sqrt(fan_in): the kernel regime as the width grows, with --optimizer sgd).",
    )
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="Optimizer of every algorithm: 'adam' or 'sgd' (plain gradient steps of --outer-lr)."
    )
    threads: PositiveInt | None = Field(
        None,
        description="Torch CPU threads while the experiment runs (the "
        "previous number is restored after) [default: torch's].",
    )
    paper: bool = Field(
        False,
        description="The larger sweep: widths up to 512, depths 1-3, 2000 steps, 3 seeds "
        "(replaces widths, depths, steps and seeds).",
    )

    @model_validator(mode="before")
    @classmethod
    def _paper(cls, data: Any) -> Any:
        return _paper_values(data, PAPER_CLOSENESS)

    @model_validator(mode="after")
    def _batch_fits(self) -> ClosenessConfig:
        if self.meta_batch > self.train_tasks:
            raise ValueError(
                f"--meta-batch {self.meta_batch} exceeds --train-tasks {self.train_tasks}; lower it "
                "or raise --train-tasks"
            )
        return self


def run_closeness(config: ClosenessConfig) -> dict[str, Any]:
    """Wang et al.: gap (C5) between MTL, ANIL and MAML adapted predictions vs width and depth.

    Writes ``theory_closeness.json`` and ``theory_closeness.png`` under ``out``, prints the
    table and returns the result."""
    from . import closeness as experiment

    load_plugins(config.plugins)
    settings = experiment.ClosenessSettings(
        **config.model_dump(include=set(experiment.ClosenessSettings.__dataclass_fields__))
    )
    config.write_resolved()
    with torch_threads(config.threads):
        res = experiment.closeness_experiment(settings, log=functools.partial(print, flush=True))
    out = Path(config.out)
    atomic_write_text(out / "theory_closeness.json", json.dumps(res, indent=1) + "\n")
    experiment.plot_closeness(res, out / "theory_closeness.png")
    _print_closeness(res)
    print(f"\nwrote {out / 'theory_closeness.json'} and {out / 'theory_closeness.png'}")
    return res


def _print_closeness(res: dict[str, Any]) -> None:
    print(
        "\nnormalised prediction gap (C5) on unseen tasks; native = each method's own adaptation, "
        "refit = common ridge refit of the last layer"
    )
    print(
        f"{'depth':>5} {'width':>6} | {'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | "
        f"{'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | {'MSE mtl':>8} {'anil':>8} {'maml':>8}"
    )
    print(f"{'':>12} | {'native':^29} | {'refit':^29} | {'native adaptation':^26}")
    for r in res["rows"]:
        print(
            f"{r['depth']:>5} {r['width']:>6} | {r['gap_native_mtl_anil']:>9.4f} {r['gap_native_mtl_maml']:>9.4f} "
            f"{r['gap_native_anil_maml']:>9.4f} | {r['gap_refit_mtl_anil']:>9.4f} {r['gap_refit_mtl_maml']:>9.4f} "
            f"{r['gap_refit_anil_maml']:>9.4f} | {r['mse_native_mtl']:>8.3f} {r['mse_native_anil']:>8.3f} "
            f"{r['mse_native_maml']:>8.3f}"
        )
