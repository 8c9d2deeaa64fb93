"""``metabridge theory ...``: the theory lab as commands (mounted by the main CLI).

* ``linreg``: Gao & Sener (NeurIPS 2020) DRS vs one-step MAML in meta-linear
  regression: exact expected losses checked by Monte Carlo, the P(MAML beats DRS)
  heatmaps before/after the test-time step, and the modeling/optimization split.
* ``closeness``: Wang, Zhao & Li (ICML 2021): prediction gap between MTL, ANIL and
  MAML networks of growing width and depth on the same unseen tasks.

Both write JSON + PNG under ``--out`` and print a summary table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

__all__ = ["theory_app"]

theory_app = typer.Typer(
    help="Theory lab: Gao & Sener's MAML/DRS trade-off (linreg) and Wang et al.'s MTL/GBML closeness.",
    no_args_is_help=True,
)


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"{name} must be comma-separated integers, e.g. 5,10,20 (got {text!r}).") from e
    if not vals or any(v <= 0 for v in vals):
        raise typer.BadParameter(f"{name} must be positive integers, e.g. 5,10,20 (got {text!r}).")
    return vals


def _floats(text: str, name: str, allow_zero: bool = True) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"{name} must be comma-separated numbers, e.g. 0.1,0.3 (got {text!r}).") from e
    if not vals:
        raise typer.BadParameter(f"{name} needs at least one value.")
    return vals


PAPER_LINREG = dict(num_tasks="5,10,20,50,100,200,500", points="2,5,10,25,50,100",
                    alphas="0.05,0.1,0.2,0.3,0.45,0.6,0.8", trials=1000)
PAPER_CLOSENESS = dict(widths="16,64,256,512", depths="1,2,3", steps=2000, seeds="0,1,2")


@theory_app.command()
def linreg(
    out: Path = typer.Option(Path("runs/theory/linreg"), help="Folder for JSON and PNG results (created)."),
    dim: int = typer.Option(8, help="Input dimension p of every task."),
    beta: float = typer.Option(2.0, help="Eigenvalues of each task covariance are U(0, beta)."),
    noise_std: float = typer.Option(0.5, help="Label noise standard deviation sigma."),
    weight_std: float = typer.Option(0.5, help="Spread sigma_w of task weights around w_mean (all ones)."),
    coupling: str = typer.Option(
        "0,1", help="Comma-separated kappa values, one sweep each: w = w_mean + kappa (2Q/beta - I) w_mean + "
        "sigma_w xi. kappa=0 is the plain Gaussian family (no modeling error); kappa>0 couples a task's "
        "weights to its curvature."),
    num_tasks: str = typer.Option("5,10,20,50,100", help="Comma-separated numbers of training tasks M."),
    points: str = typer.Option("2,5,10,25,50", help="Comma-separated N: points per split (N inner + N outer)."),
    alphas: str = typer.Option("0.1,0.3,0.6", help="Comma-separated MAML step sizes alpha (train and test)."),
    trials: int = typer.Option(200, help="Independent training sets per (alpha, M, N) cell."),
    mc_tasks: int = typer.Option(20000, help="Test tasks of the Monte Carlo check of the exact loss (>= 10^4)."),
    seed: int = typer.Option(0, help="Seed of every random draw."),
    paper: bool = typer.Option(False, "--paper", help="Paper-size sweep: M up to 500, N up to 100, 7 step "
                               "sizes, 1000 trials per cell (overrides the grid options; several minutes)."),
) -> None:
    """Gao & Sener: exact DRS/MAML expected losses, P(MAML beats DRS) heatmaps, error split."""
    from metabridge.tasks.linear_regression import LinearRegressionFamily

    from .linreg import expected_test_loss, monte_carlo_test_loss, sample_estimators
    from .linreg_sweep import linreg_sweep, plot_beat_probability, plot_error_split, save_json

    if paper:
        num_tasks, points, alphas, trials = (PAPER_LINREG["num_tasks"], PAPER_LINREG["points"],
                                             PAPER_LINREG["alphas"], int(PAPER_LINREG["trials"]))
    ms, ns = _ints(num_tasks, "--num-tasks"), _ints(points, "--points")
    al = _floats(alphas, "--alphas")
    if any(a < 0 for a in al):
        raise typer.BadParameter("--alphas must be >= 0 (alpha = 0 means no inner step).")
    if trials <= 0 or mc_tasks <= 0:
        raise typer.BadParameter("--trials and --mc-tasks must be positive.")
    if min(ms) * min(ns) < dim:
        raise typer.BadParameter(f"the smallest M*N = {min(ms) * min(ns)} is below dim = {dim}: MAML's normal "
                                 "equations would be singular; raise --num-tasks or --points, or lower --dim.")
    out.mkdir(parents=True, exist_ok=True)
    summary: list[str] = []
    for kappa in _floats(coupling, "--coupling"):
        fam = LinearRegressionFamily(dim=dim, beta=beta, noise_std=noise_std, weight_std=weight_std, coupling=kappa)
        tag = f"kappa{kappa:g}"
        # 1. exact expected loss vs Monte Carlo, on estimators fitted at a middle cell
        g = torch.Generator().manual_seed(seed)
        m_mid, n_mid, a_mid = ms[len(ms) // 2], ns[len(ns) // 2], al[len(al) // 2]
        w_d, w_m = sample_estimators(fam, m_mid, n_mid, a_mid, 1, g)
        w = torch.cat([w_d, w_m])
        checks = []
        for a in (0.0, a_mid):
            exact = expected_test_loss(w, fam, a, n_mid)
            mean, se = monte_carlo_test_loss(w, fam, a, n_mid, mc_tasks, g)
            for i, name in enumerate(("drs", "maml")):
                checks.append({"estimator": name, "alpha_test": a, "n_support": n_mid, "exact": float(exact[i]),
                               "monte_carlo": float(mean[i]), "stderr": float(se[i]),
                               "z": float((exact[i] - mean[i]) / se[i])})
        # 2. the sweep
        res = linreg_sweep(fam, ms, ns, al, trials, seed)
        res["monte_carlo_check"] = {"test_tasks": mc_tasks, "fitted_at": {"M": m_mid, "N": n_mid, "alpha": a_mid},
                                    "rows": checks}
        save_json(res, out / f"theory_linreg_{tag}.json")
        plot_beat_probability(res, out / f"theory_linreg_{tag}_heatmap.png")
        plot_error_split(res, out / f"theory_linreg_{tag}_split.png")
        typer.echo(f"\n== kappa = {kappa:g}: exact expected loss vs Monte Carlo ({mc_tasks} test tasks) ==")
        typer.echo(f"{'estimator':>9} {'alpha':>6} {'exact':>9} {'MC':>9} {'stderr':>8} {'z':>6}")
        for c in checks:
            typer.echo(f"{c['estimator']:>9} {c['alpha_test']:>6g} {c['exact']:>9.4f} {c['monte_carlo']:>9.4f} "
                       f"{c['stderr']:>8.4f} {c['z']:>6.2f}")
        typer.echo(f"== kappa = {kappa:g}: P(MAML beats DRS) before -> after the test-time step "
                   f"({trials} training sets per cell) ==")
        for ai, a in enumerate(al):
            typer.echo(f"alpha = {a:g}" + "".join(f"{'N=' + str(n):>13}" for n in ns))
            for mi, m in enumerate(ms):
                cells = "".join(f"{res['p_before'][ai][mi][ni]:>6.2f}->{res['p_after'][ai][mi][ni]:<5.2f}"
                                for ni in range(len(ns)))
                typer.echo(f"  M={m:<5}" + cells)
        ai = len(al) // 2
        typer.echo(f"== kappa = {kappa:g}: error split (E9) at alpha = {al[ai]:g}, N = {ns[-1]} ==")
        typer.echo(f"{'M':>5} {'DRS mod':>9} {'DRS opt':>9} {'MAML mod':>9} {'MAML opt':>9}")
        for mi, m in enumerate(ms):
            typer.echo(f"{m:>5} {res['drs_modeling'][ai][mi][-1]:>9.4f} {res['drs_optimization'][ai][mi][-1]:>9.4f} "
                       f"{res['maml_modeling'][ai][mi][-1]:>9.4f} {res['maml_optimization'][ai][mi][-1]:>9.4f}")
        summary.append(str(out / f"theory_linreg_{tag}.json"))
    typer.echo("\nwrote: " + ", ".join(summary) + " (+ *_heatmap.png, *_split.png)")


@theory_app.command()
def closeness(
    out: Path = typer.Option(Path("runs/theory/closeness"), help="Folder for JSON and PNG results (created)."),
    widths: str = typer.Option("16,32,64", help="Comma-separated hidden widths of the MLPs."),
    depths: str = typer.Option("1,2", help="Comma-separated numbers of hidden layers."),
    steps: int = typer.Option(150, help="Outer training steps of every algorithm."),
    train_tasks: int = typer.Option(40, help="Size of the fixed pool of training sinusoids (MTL: one head each)."),
    meta_batch: int = typer.Option(8, help="Tasks per training step."),
    k_shot: int = typer.Option(10, help="Support points per task (training and test)."),
    k_query: int = typer.Option(20, help="Query points per task."),
    inner_lr: float = typer.Option(0.01, help="ANIL/MAML inner step size (training and test)."),
    inner_steps: int = typer.Option(1, help="ANIL/MAML inner steps during training."),
    eval_steps: int = typer.Option(1, help="ANIL/MAML inner steps at test time (native adaptation)."),
    outer_lr: float = typer.Option(3e-3, help="Adam learning rate of every algorithm."),
    test_tasks: int = typer.Option(200, help="Unseen sinusoid tasks on which predictions are compared."),
    ridge_lambda: float = typer.Option(1e-2, help="Ridge strength of the common last-layer refit."),
    seeds: str = typer.Option("0", help="Comma-separated training seeds per configuration (gaps averaged)."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    paper: bool = typer.Option(False, "--paper", help="Larger sweep: widths up to 512, depths 1-3, 2000 "
                               "steps, 3 seeds (overrides those options; tens of minutes on CPU)."),
) -> None:
    """Wang et al.: gap between MTL, ANIL and MAML adapted predictions vs width and depth."""
    from .closeness import ClosenessConfig, closeness_experiment, plot_closeness

    if paper:
        widths, depths, steps, seeds = (PAPER_CLOSENESS["widths"], PAPER_CLOSENESS["depths"],
                                        int(PAPER_CLOSENESS["steps"]), PAPER_CLOSENESS["seeds"])
    for name, v in (("--steps", steps), ("--train-tasks", train_tasks), ("--meta-batch", meta_batch),
                    ("--k-shot", k_shot), ("--k-query", k_query), ("--inner-steps", inner_steps),
                    ("--eval-steps", eval_steps), ("--test-tasks", test_tasks), ("--threads", threads)):
        if v <= 0:
            raise typer.BadParameter(f"{name} must be positive (got {v}).")
    for name, f in (("--inner-lr", inner_lr), ("--outer-lr", outer_lr), ("--ridge-lambda", ridge_lambda)):
        if not f > 0:
            raise typer.BadParameter(f"{name} must be > 0 (got {f}).")
    if meta_batch > train_tasks:
        raise typer.BadParameter("--meta-batch cannot exceed --train-tasks.")
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    torch.set_num_threads(threads)
    cfg = ClosenessConfig(widths=_ints(widths, "--widths"), depths=_ints(depths, "--depths"), train_tasks=train_tasks,
                          steps=steps, meta_batch=meta_batch, k_shot=k_shot, k_query=k_query, inner_lr=inner_lr,
                          inner_steps=inner_steps, eval_steps=eval_steps, outer_lr=outer_lr, test_tasks=test_tasks,
                          ridge_lambda=ridge_lambda, seeds=seed_list)
    res = closeness_experiment(cfg, log=typer.echo)
    out.mkdir(parents=True, exist_ok=True)
    (out / "theory_closeness.json").write_text(json.dumps(res, indent=1))
    plot_closeness(res, out / "theory_closeness.png")
    typer.echo("\nnormalised prediction gap (C5) on unseen tasks; native = each method's own adaptation, "
               "refit = common ridge refit of the last layer")
    typer.echo(f"{'depth':>5} {'width':>6} | {'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | "
               f"{'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | {'MSE mtl':>8} {'anil':>8} {'maml':>8}")
    typer.echo(f"{'':>12} | {'native':^29} | {'refit':^29} | {'native adaptation':^26}")
    for r in res["rows"]:
        typer.echo(f"{r['depth']:>5} {r['width']:>6} | {r['gap_native_mtl_anil']:>9.4f} {r['gap_native_mtl_maml']:>9.4f} "
                   f"{r['gap_native_anil_maml']:>9.4f} | {r['gap_refit_mtl_anil']:>9.4f} {r['gap_refit_mtl_maml']:>9.4f} "
                   f"{r['gap_refit_anil_maml']:>9.4f} | {r['mse_native_mtl']:>8.3f} {r['mse_native_anil']:>8.3f} "
                   f"{r['mse_native_maml']:>8.3f}")
    typer.echo(f"\nwrote {out / 'theory_closeness.json'} and {out / 'theory_closeness.png'} "
               f"({res['seconds']:.0f}s)")
