"""``metabridge theory linreg`` and ``metabridge theory closeness``: the theory lab as
plain functions (the main CLI turns their parameters into options and their
docstrings into the help).

* :func:`linreg`: Gao & Sener (NeurIPS 2020) DRS vs one-step MAML in meta-linear
  regression: exact expected losses checked by Monte Carlo, the P(MAML beats DRS)
  heatmaps before/after the test-time step, and the modeling/optimization split.
* :func:`closeness`: Wang, Zhao & Li (ICML 2021): prediction gap between MTL, ANIL and
  MAML networks of growing width and depth on the same unseen tasks.

Both write JSON + PNG under ``out`` and print a summary table. Bad input raises
:class:`ValueError` with a message naming the fix.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ..csv_options import parse_csv

__all__ = ["closeness", "linreg"]


PAPER_LINREG = dict(num_tasks="5,10,20,50,100,200,500", points="2,5,10,25,50,100",
                    alphas="0.05,0.1,0.2,0.3,0.45,0.6,0.8", trials=1000)
PAPER_CLOSENESS = dict(widths="16,64,256,512", depths="1,2,3", steps=2000, seeds="0,1,2")


def linreg(
    out: Path = Path("runs/theory/linreg"),
    dim: int = 8,
    beta: float = 2.0,
    noise_std: float = 0.5,
    weight_std: float = 0.5,
    coupling: str = "0,1",
    num_tasks: str = "5,10,20,50,100",
    points: str = "2,5,10,25,50",
    alphas: str = "0.1,0.3,0.6",
    trials: int = 200,
    mc_tasks: int = 20000,
    seed: int = 0,
    paper: bool = False,
) -> None:
    """Gao & Sener: exact DRS/MAML expected losses, P(MAML beats DRS) heatmaps, error split.

    Args:
        out: folder for JSON and PNG results (created).
        dim: input dimension p of every task.
        beta: eigenvalues of each task covariance are U(0, beta).
        noise_std: label noise standard deviation sigma.
        weight_std: spread sigma_w of task weights around w_mean (all ones).
        coupling: comma-separated kappa values, one sweep each: w = w_mean + kappa (2Q/beta - I) w_mean
            + sigma_w xi. kappa=0 is the plain Gaussian family (no modeling error); kappa>0 couples a
            task's weights to its curvature.
        num_tasks: comma-separated numbers of training tasks M.
        points: comma-separated N: points per split (N inner + N outer).
        alphas: comma-separated MAML step sizes alpha (train and test).
        trials: independent training sets per (alpha, M, N) cell.
        mc_tasks: test tasks of the Monte Carlo check of the exact loss (>= 10^4).
        seed: seed of every random draw.
        paper: paper-size sweep: M up to 500, N up to 100, 7 step sizes, 1000 trials per cell
            (overrides num_tasks, points, alphas and trials; several minutes).
    """
    from metabridge.tasks.linear_regression import LinearRegressionFamily

    from .linreg import expected_test_loss, monte_carlo_test_loss, sample_estimators
    from .linreg_sweep import linreg_sweep, plot_beat_probability, plot_error_split, save_json

    if paper:
        num_tasks, points, alphas, trials = (PAPER_LINREG["num_tasks"], PAPER_LINREG["points"],
                                             PAPER_LINREG["alphas"], int(PAPER_LINREG["trials"]))
    ms, ns = parse_csv(num_tasks, "--num-tasks", positive=True), parse_csv(points, "--points", positive=True)
    al = parse_csv(alphas, "--alphas", float, example="0.1,0.3")
    kappas = parse_csv(coupling, "--coupling", float, example="0,1")
    if any(a < 0 for a in al):
        raise ValueError("--alphas must be >= 0 (alpha = 0 means no inner step).")
    if trials <= 0 or mc_tasks <= 0:
        raise ValueError("--trials and --mc-tasks must be positive.")
    if min(ms) * min(ns) < dim:
        raise ValueError(f"the smallest M*N = {min(ms) * min(ns)} is below dim = {dim}: MAML's normal "
                         "equations would be singular; raise --num-tasks or --points, or lower --dim.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: list[str] = []
    for kappa in kappas:
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
                checks.append({"estimator": name, "alpha_test": a, "k_shot": n_mid, "exact": float(exact[i]),
                               "monte_carlo": float(mean[i]), "stderr": float(se[i]),
                               "z": float((exact[i] - mean[i]) / se[i])})
        # 2. the sweep
        res = linreg_sweep(fam, ms, ns, al, trials, seed)
        res["monte_carlo_check"] = {"test_tasks": mc_tasks, "fitted_at": {"M": m_mid, "N": n_mid, "alpha": a_mid},
                                    "rows": checks}
        save_json(res, out / f"theory_linreg_{tag}.json")
        plot_beat_probability(res, out / f"theory_linreg_{tag}_heatmap.png")
        plot_error_split(res, out / f"theory_linreg_{tag}_split.png")
        print(f"\n== kappa = {kappa:g}: exact expected loss vs Monte Carlo ({mc_tasks} test tasks) ==")
        print(f"{'estimator':>9} {'alpha':>6} {'exact':>9} {'MC':>9} {'stderr':>8} {'z':>6}")
        for c in checks:
            print(f"{c['estimator']:>9} {c['alpha_test']:>6g} {c['exact']:>9.4f} {c['monte_carlo']:>9.4f} "
                  f"{c['stderr']:>8.4f} {c['z']:>6.2f}")
        print(f"== kappa = {kappa:g}: P(MAML beats DRS) before -> after the test-time step "
              f"({trials} training sets per cell) ==")
        for ai, a in enumerate(al):
            print(f"alpha = {a:g}" + "".join(f"{'N=' + str(n):>13}" for n in ns))
            for mi, m in enumerate(ms):
                cells = "".join(f"{res['p_before'][ai][mi][ni]:>6.2f}->{res['p_after'][ai][mi][ni]:<5.2f}"
                                for ni in range(len(ns)))
                print(f"  M={m:<5}" + cells)
        ai = len(al) // 2
        print(f"== kappa = {kappa:g}: error split (E9) at alpha = {al[ai]:g}, N = {ns[-1]} ==")
        print(f"{'M':>5} {'DRS mod':>9} {'DRS opt':>9} {'MAML mod':>9} {'MAML opt':>9}")
        for mi, m in enumerate(ms):
            print(f"{m:>5} {res['drs_modeling'][ai][mi][-1]:>9.4f} {res['drs_optimization'][ai][mi][-1]:>9.4f} "
                  f"{res['maml_modeling'][ai][mi][-1]:>9.4f} {res['maml_optimization'][ai][mi][-1]:>9.4f}")
        summary.append(str(out / f"theory_linreg_{tag}.json"))
    print("\nwrote: " + ", ".join(summary) + " (+ *_heatmap.png, *_split.png)")


def closeness(
    out: Path = Path("runs/theory/closeness"),
    widths: str = "16,32,64",
    depths: str = "1,2",
    steps: int = 150,
    train_tasks: int = 40,
    meta_batch: int = 8,
    k_shot: int = 10,
    q_query: int = 20,
    inner_lr: float = 0.01,
    inner_steps: int = 1,
    eval_steps: int = 1,
    outer_lr: float = 3e-3,
    test_tasks: int = 200,
    ridge_lambda: float = 1e-2,
    seeds: str = "0",
    threads: int = 2,
    paper: bool = False,
) -> None:
    """Wang et al.: gap between MTL, ANIL and MAML adapted predictions vs width and depth.

    Args:
        out: folder for JSON and PNG results (created).
        widths: comma-separated hidden widths of the MLPs.
        depths: comma-separated numbers of hidden layers.
        steps: outer training steps of every algorithm.
        train_tasks: size of the fixed pool of training sinusoids (MTL: one head each).
        meta_batch: tasks per training step.
        k_shot: support points per task (training and test).
        q_query: query points per task.
        inner_lr: ANIL/MAML inner step size (training and test).
        inner_steps: ANIL/MAML inner steps during training.
        eval_steps: ANIL/MAML inner steps at test time (native adaptation).
        outer_lr: Adam learning rate of every algorithm.
        test_tasks: unseen sinusoid tasks on which predictions are compared.
        ridge_lambda: ridge strength of the common last-layer refit.
        seeds: comma-separated training seeds per configuration (gaps averaged).
        threads: torch CPU threads while the experiment runs (the previous number is restored after).
        paper: larger sweep: widths up to 512, depths 1-3, 2000 steps, 3 seeds (overrides widths,
            depths, steps and seeds; tens of minutes on CPU).
    """
    from .closeness import ClosenessConfig, closeness_experiment, plot_closeness

    if paper:
        widths, depths, steps, seeds = (PAPER_CLOSENESS["widths"], PAPER_CLOSENESS["depths"],
                                        int(PAPER_CLOSENESS["steps"]), PAPER_CLOSENESS["seeds"])
    for name, v in (("--steps", steps), ("--train-tasks", train_tasks), ("--meta-batch", meta_batch),
                    ("--k-shot", k_shot), ("--q-query", q_query), ("--inner-steps", inner_steps),
                    ("--eval-steps", eval_steps), ("--test-tasks", test_tasks), ("--threads", threads)):
        if v <= 0:
            raise ValueError(f"{name} must be positive (got {v}).")
    for name, f in (("--inner-lr", inner_lr), ("--outer-lr", outer_lr), ("--ridge-lambda", ridge_lambda)):
        if not f > 0:
            raise ValueError(f"{name} must be > 0 (got {f}).")
    if meta_batch > train_tasks:
        raise ValueError("--meta-batch cannot exceed --train-tasks.")
    seed_list = parse_csv(seeds, "--seeds", example="0,1,2")
    width_list = parse_csv(widths, "--widths", positive=True, example="16,64")
    depth_list = parse_csv(depths, "--depths", positive=True, example="1,2")
    cfg = ClosenessConfig(widths=width_list, depths=depth_list, train_tasks=train_tasks, steps=steps,
                          meta_batch=meta_batch, k_shot=k_shot, q_query=q_query, inner_lr=inner_lr,
                          inner_steps=inner_steps, eval_steps=eval_steps, outer_lr=outer_lr, test_tasks=test_tasks,
                          ridge_lambda=ridge_lambda, seeds=seed_list)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        res = closeness_experiment(cfg, log=functools.partial(print, flush=True))
    finally:
        torch.set_num_threads(previous_threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "theory_closeness.json").write_text(json.dumps(res, indent=1))
    plot_closeness(res, out / "theory_closeness.png")
    print("\nnormalised prediction gap (C5) on unseen tasks; native = each method's own adaptation, "
          "refit = common ridge refit of the last layer")
    print(f"{'depth':>5} {'width':>6} | {'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | "
          f"{'MTL-ANIL':>9} {'MTL-MAML':>9} {'ANIL-MAML':>9} | {'MSE mtl':>8} {'anil':>8} {'maml':>8}")
    print(f"{'':>12} | {'native':^29} | {'refit':^29} | {'native adaptation':^26}")
    for r in res["rows"]:
        print(f"{r['depth']:>5} {r['width']:>6} | {r['gap_native_mtl_anil']:>9.4f} {r['gap_native_mtl_maml']:>9.4f} "
              f"{r['gap_native_anil_maml']:>9.4f} | {r['gap_refit_mtl_anil']:>9.4f} {r['gap_refit_mtl_maml']:>9.4f} "
              f"{r['gap_refit_anil_maml']:>9.4f} | {r['mse_native_mtl']:>8.3f} {r['mse_native_anil']:>8.3f} "
              f"{r['mse_native_maml']:>8.3f}")
    print(f"\nwrote {out / 'theory_closeness.json'} and {out / 'theory_closeness.png'} "
          f"({res['seconds']:.0f}s)")
