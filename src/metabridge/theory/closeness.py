r"""MTL and gradient-based meta-learning: one formulation, close predictions.

Reference: H. Wang, H. Zhao and B. Li, "Bridging Multi-Task Learning and
Meta-Learning: Towards Efficient Training and Effective Adaptation", ICML 2021
(Sec. 3: shared formulation; Sec. 4: closeness of the learned predictors for
wide, deep networks).

1. One optimization formulation (Wang et al., Sec. 3)
-----------------------------------------------------
Write a network as a body ``f_theta`` and a linear head ``phi = (W, b)``,
``h(x) = W f_theta(x) + b``; task i has data D_i and loss
``L_i(theta, phi) = mean_{(x,y) in D_i} ||h(x) - y||^2``. Both methods solve::

    min_theta  (1/T) sum_i  L_i(theta, phi_i; D_i^out)                        (C1)

and differ only in where ``phi_i`` comes from:

* **MTL**: ``phi_i = W_i`` is a free per-task parameter, learned jointly with theta;
  its body gradient is the partial derivative::

      g_MTL(theta; {W_i}) = (1/T) sum_i  d_theta L_i(theta, W_i)                (C2)

* **ANIL**: ``phi_i(theta) = phi_0 - alpha grad_phi L_i(theta, phi_0; D_i^in)``
  (k steps in general). Its meta-gradient, by the chain rule::

      g_ANIL(theta) = (1/T) sum_i [ d_theta L_i(theta, phi)
                                    + (d phi_i / d theta)^T grad_phi L_i(theta, phi) ]
                      evaluated at phi = phi_i(theta).                            (C3)

**Mapping.** Put MTL's head of task i at ANIL's adapted head, ``W_i := phi_i(theta)``,
and score MTL on ANIL's outer data. Then the first term of (C3) *is* (C2), so

      g_ANIL = g_MTL(W_i = phi_i) + (1/T) sum_i J_i^T v_i,
      J_i = d phi_i / d theta,  v_i = grad_phi L_i(theta, phi_i; D_i^out)         (C4)

and for one step ``J_i^T v_i = -alpha d_theta < grad_phi L_i(theta, phi_0; D_i^in), v_i >``
(v_i held fixed). First-order ANIL drops ``J_i`` and equals MTL exactly. When the
inner problem is solved to optimality on the same data the outer loss uses
(``phi_i = argmin_phi L_i(theta, phi)``) then ``v_i = 0`` and (C4) says the ANIL
gradient equals the MTL gradient (the envelope theorem): MTL with heads at their
per-task optimum is ANIL with an infinitely long inner loop. All three statements
are checked numerically in ``tests/test_theory_closeness.py`` against the
library's :class:`~metabridge.algorithms.mtl.MTL` and
:class:`~metabridge.algorithms.anil.ANIL`.

2. Closeness of the learned predictors (Wang et al., Sec. 4)
-------------------------------------------------------------
Wang et al. prove that for sufficiently wide (and deep) over-parameterized
networks in the kernel regime, the predictors learned by MTL and by GBML, each
adapted to the same unseen task, are close. :func:`closeness_experiment` trains
MTL, ANIL and MAML MLPs of growing width and depth on the *same* pool of training
tasks with the *same* sequence of meta-batches and the same initial body, adapts
each on the same unseen tasks, and reports the mean squared gap between their query
predictions, normalised by the mean squared target::

    gap(A, B) = E_tasks mean_q (f_A(x_q) - f_B(x_q))^2 / E_tasks mean_q y_q^2     (C5)

Two test-time adaptations are measured in the same run:

* ``native``: each algorithm's own rule (MTL: the library's default head refit on
  frozen support features, a posterior mean under the training heads' Gaussian
  prior; ANIL: ``eval_steps`` head steps; MAML: ``eval_steps`` full steps);
* ``refit``: one common rule for all three, the ridge refit of the last layer on
  frozen support features (the adaptation Wang et al.'s analysis compares: fine-tune
  the last layer of each learned representation). This isolates what the training
  algorithm did to the representation.

It uses the library's algorithms (:mod:`metabridge.algorithms`) and MLP
(:mod:`metabridge.models.mlp`); this is a measurement, not a proof: with finite
training the gap also contains optimisation noise, which we report alongside.

Two parameterisations (``ClosenessSettings.parameterization``):

* ``"standard"``: PyTorch's ``nn.Linear`` layers (the default, trained with Adam);
* ``"ntk"``: :func:`~metabridge.theory.ntk.ntk_mlp` (weights N(0, 1), forward scaled by
  ``1/sqrt(fan_in)``; MTL's per-task heads drawn N(0, 1) like the GBML head), meant to be
  trained with ``optimizer="sgd"``: plain gradient steps of a width-independent size, the
  setting in which a wide network stays in the kernel regime that Wang et al.'s analysis
  assumes (:mod:`metabridge.theory.ntk`).

Every row also records ``featmove_<algo>``, the relative movement of the trained body's
features on the test queries, ``||phi_T - phi_0|| / ||phi_0||``
(:func:`~metabridge.theory.ntk.feature_movement`): how far each run was from the kernel
regime.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from metabridge.algorithms.anil import ANIL
from metabridge.algorithms.base import MetaAlgorithm
from metabridge.algorithms.maml import MAML
from metabridge.algorithms.mtl import MTL
from metabridge.heads.ridge import ridge_fit, ridge_predict
from metabridge.models.mlp import MLP
from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.sinusoid import SinusoidFamily
from metabridge.theory.ntk import feature_movement, ntk_mlp

__all__ = [
    "linear_head_grad",
    "anil_heads",
    "mtl_body_gradient",
    "anil_body_gradient",
    "anil_implicit_term",
    "ClosenessSettings",
    "refit_predict",
    "closeness_experiment",
    "plot_closeness",
]


# ---------------------------------------------------------------------- (C1)-(C4)
def linear_head_grad(feats: Tensor, y: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form gradient of ``mean ||feats w + b - y||^2`` in ``(w, b)`` for a batch of tasks.

    feats ``[T, S, D]``, y ``[T, S, O]``, w ``[T, D, O]``, b ``[T, O]``; the mean runs
    over the ``S * O`` entries of each task (the library's ``task_loss`` per task).
    """
    r = feats @ w + b[:, None, :] - y
    scale = 2.0 / (y.shape[1] * y.shape[2])
    return scale * feats.transpose(1, 2) @ r, scale * r.sum(1)


def _head_as_task_tensors(model: MLP, t: int) -> tuple[Tensor, Tensor]:
    """The shared head ``phi_0`` of an MLP, repeated per task as ``w [T, D, O]``, ``b [T, O]``."""
    w0 = model.head.weight.T
    return w0.expand(t, *w0.shape), model.head.bias.expand(t, -1)


def anil_heads(
    model: MLP, batch: TaskBatch, alpha: float, steps: int, differentiable: bool = False
) -> tuple[Tensor, Tensor]:
    """ANIL's adapted heads ``phi_i`` after ``steps`` head-only gradient steps on the support set.

    Uses the closed-form head gradient (:func:`linear_head_grad`), independent of the
    library's autograd inner loop. With ``differentiable`` the result stays in the
    graph of the body parameters (second order).
    """
    feats = model.body(batch.support_x)
    if not differentiable:
        feats = feats.detach()
    w, b = _head_as_task_tensors(model, batch.num_tasks)
    if not differentiable:
        w, b = w.detach(), b.detach()
    for _ in range(steps):
        gw, gb = linear_head_grad(feats, batch.support_y, w, b)
        w, b = w - alpha * gw, b - alpha * gb
    return w, b


def _body_params(model: MLP) -> list[nn.Parameter]:
    return list(model.body.parameters())


def mtl_body_gradient(model: MLP, heads_w: Tensor, heads_b: Tensor, batch: TaskBatch) -> list[Tensor]:
    """(C2) through the library's :class:`MTL`: body gradient of its joint loss at heads ``W_i``.

    The MTL object shares ``model.body``; its per-task heads are set to ``heads_w``
    ``[T, D, O]``, ``heads_b`` ``[T, O]``, and it is scored on the outer (query) data
    only (MTL merges support and query, so both are set to the query set).
    """
    t = batch.num_tasks
    mtl = MTL(model.body, model.feature_dim, num_train_heads=t, task="regression", out_dim=heads_w.shape[-1])
    mtl = mtl.to(heads_w.dtype)
    with torch.no_grad():
        mtl.heads.copy_(heads_w)
        mtl.head_bias.copy_(heads_b)
    outer = TaskBatch(batch.query_x, batch.query_y, batch.query_x, batch.query_y, task_ids=torch.arange(t))
    loss = mtl.meta_loss(outer)
    return list(torch.autograd.grad(loss, _body_params(model)))


def anil_body_gradient(model: MLP, batch: TaskBatch, alpha: float, steps: int, first_order: bool) -> list[Tensor]:
    """(C3) through the library's :class:`ANIL`: body part of the meta-gradient."""
    anil = ANIL(model, inner_lr=alpha, inner_steps=steps, first_order=first_order, execution={"task_batching": "loop"})
    loss = anil.meta_loss(batch)
    return list(torch.autograd.grad(loss, _body_params(model)))


def anil_implicit_term(model: MLP, batch: TaskBatch, alpha: float) -> list[Tensor]:
    """The second term of (C3)/(C4) for one inner step, written out explicitly.

    ``(1/T) sum_i J_i^T v_i = -(alpha/T) d_theta sum_i <grad_phi L_i(theta, phi_0; D_i^in), v_i>``
    with ``v_i = grad_phi L_i(theta, phi_i; D_i^out)`` held fixed.
    """
    w1, b1 = anil_heads(model, batch, alpha, 1, differentiable=False)
    fq = model.body(batch.query_x).detach()
    vw, vb = linear_head_grad(fq, batch.query_y, w1, b1)
    fs = model.body(batch.support_x)
    w0, b0 = _head_as_task_tensors(model, batch.num_tasks)
    gw, gb = linear_head_grad(fs, batch.support_y, w0.detach(), b0.detach())
    scalar = -(alpha / batch.num_tasks) * ((gw * vw).sum() + (gb * vb).sum())
    return list(torch.autograd.grad(scalar, _body_params(model)))


# ---------------------------------------------------------------------- (C5)
@dataclass
class ClosenessSettings:
    """Settings of the closeness experiment (the defaults are sized for a CPU).

    Attributes:
        widths, depths: hidden widths and numbers of hidden layers of the MLPs.
        train_tasks: size of the fixed pool of training sinusoids (MTL has one head each).
        steps: outer training steps of every algorithm.
        meta_batch: tasks per step.
        k_shot: support points per task (training and test); ``q_query`` query points.
        inner_lr: step size of the ANIL/MAML inner loop (train and test).
        inner_steps: inner steps during training; ``eval_steps`` at test time.
        outer_lr: learning rate of every algorithm's optimizer.
        test_tasks: unseen test sinusoids on which predictions are compared.
        ridge_lambda: MTL's test-time ridge strength.
        seeds: training seeds per configuration (gaps are averaged).
        parameterization: ``"standard"`` (``nn.Linear``) or ``"ntk"`` (:func:`ntk_mlp`).
        optimizer: ``"adam"`` or ``"sgd"`` (plain gradient steps of ``outer_lr``).
    """

    widths: Sequence[int] = (16, 32, 64)
    depths: Sequence[int] = (1, 2)
    train_tasks: int = 40
    steps: int = 150
    meta_batch: int = 8
    k_shot: int = 10
    q_query: int = 20
    inner_lr: float = 0.01
    inner_steps: int = 1
    eval_steps: int = 1
    outer_lr: float = 3e-3
    test_tasks: int = 200
    ridge_lambda: float = 1e-2
    seeds: Sequence[int] = (0,)
    parameterization: Literal["standard", "ntk"] = "standard"
    optimizer: Literal["adam", "sgd"] = "adam"


ALGORITHMS = ("mtl", "anil", "maml")
PAIRS = (("mtl", "anil"), ("mtl", "maml"), ("anil", "maml"))


def _build(name: str, width: int, depth: int, cfg: ClosenessSettings) -> MetaAlgorithm:
    ntk = cfg.parameterization == "ntk"
    model = ntk_mlp(1, 1, width, depth) if ntk else MLP(1, 1, hidden=(width,) * depth)
    if name == "mtl":
        mtl = MTL(
            model.body,
            model.feature_dim,
            num_train_heads=cfg.train_tasks,
            task="regression",
            ridge_lambda=cfg.ridge_lambda,
        )
        if ntk:  # the NTK head scale, as for the GBML head (MTL draws heads of the standard scale)
            with torch.no_grad():
                mtl.heads.normal_()
        return mtl
    cls = ANIL if name == "anil" else MAML
    # one task at a time: the same numbers as the vmapped default up to float rounding, and several
    # times faster for these small MLPs on a CPU
    loop = {"task_batching": "loop"}
    return cls(model, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps, eval_steps=cfg.eval_steps, execution=loop)


def _body(algo: MetaAlgorithm) -> nn.Module:
    return algo.body if isinstance(algo, MTL) else algo.model.body  # type: ignore[return-value,union-attr]


def refit_predict(algo: MetaAlgorithm, batch: TaskBatch, lam: float) -> Tensor:
    """The common adaptation: ridge refit of a linear head on frozen support features."""
    body = _body(algo)
    with torch.no_grad():
        fs = body(batch.support_x.flatten(0, 1)).unflatten(0, batch.support_x.shape[:2])
        fq = body(batch.query_x.flatten(0, 1)).unflatten(0, batch.query_x.shape[:2])
        w, b = ridge_fit(fs, batch.support_y, lam, fit_bias=True)
        return ridge_predict(fq, w, b)


def _train(algo: MetaAlgorithm, family: SinusoidFamily, cfg: ClosenessSettings, seed: int) -> float:
    """Adam or SGD on ``meta_loss``; every algorithm sees the same batch sequence for a seed."""
    opt: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(algo.parameters(), lr=cfg.outer_lr)
    else:
        opt = torch.optim.Adam(algo.parameters(), lr=cfg.outer_lr)
    g = torch.Generator().manual_seed(10_000 + seed)
    loss = torch.tensor(float("nan"))
    for _ in range(cfg.steps):
        batch = family.sample(cfg.meta_batch, cfg.k_shot, cfg.q_query, g)
        loss = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def closeness_experiment(cfg: ClosenessSettings, log: Any = None) -> dict[str, Any]:
    """Train MTL/ANIL/MAML per (width, depth, seed); measure prediction gaps (C5) on unseen tasks."""
    train_family = SinusoidFamily(num_tasks=cfg.train_tasks, pool_seed=123)
    test_batch = SinusoidFamily().sample(cfg.test_tasks, cfg.k_shot, cfg.q_query, torch.Generator().manual_seed(999))
    scale = float((test_batch.query_y**2).mean())
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for depth in cfg.depths:
        for width in cfg.widths:
            acc: dict[str, list[float]] = {}
            for seed in cfg.seeds:
                preds: dict[str, dict[str, Tensor]] = {"native": {}, "refit": {}}
                t0 = time.perf_counter()
                for name in ALGORITHMS:
                    torch.manual_seed(seed)  # same initial body for all three algorithms
                    algo = _build(name, width, depth, cfg)
                    body0 = copy.deepcopy(_body(algo))
                    _train(algo, train_family, cfg, seed)
                    move = feature_movement(body0, _body(algo), test_batch.query_x.flatten(0, 1))
                    acc.setdefault(f"featmove_{name}", []).append(move)
                    preds["native"][name] = algo.predict(test_batch).detach()
                    preds["refit"][name] = refit_predict(algo, test_batch, cfg.ridge_lambda)
                    for mode, pm in preds.items():
                        mse = float(((pm[name] - test_batch.query_y) ** 2).mean())
                        acc.setdefault(f"mse_{mode}_{name}", []).append(mse)
                for mode, pm in preds.items():
                    for a, b in PAIRS:
                        gap = float(((pm[a] - pm[b]) ** 2).mean()) / scale
                        acc.setdefault(f"gap_{mode}_{a}_{b}", []).append(gap)
                if log is not None:
                    log(
                        f"depth={depth} width={width} seed={seed}: "
                        + " ".join(f"{k}={v[-1]:.4f}" for k, v in acc.items())
                        + f" ({time.perf_counter() - t0:.1f}s)"
                    )
            row: dict[str, Any] = {"depth": depth, "width": width}
            for k, v in acc.items():
                row[k] = sum(v) / len(v)
                row[k + "_per_seed"] = v
            rows.append(row)
    return {
        "experiment": "wang_closeness",
        "reference": "Wang, Zhao & Li, Bridging Multi-Task Learning and Meta-Learning, ICML 2021, Sec. 4",
        "config": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in asdict(cfg).items()},
        "target_mean_square": scale,
        "gap_definition": "mean over test tasks and query points of (f_A - f_B)^2 / mean(y_query^2)",
        "rows": rows,
        "seconds": time.perf_counter() - t_start,
    }


def plot_closeness(result: dict[str, Any], path: Path) -> None:
    """Gap (C5) against width, one line per depth; rows: adaptation rule, columns: algorithm pair + MSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    depths = sorted({r["depth"] for r in rows})
    modes = ("native", "refit")
    fig, axes = plt.subplots(
        len(modes), len(PAIRS) + 1, figsize=(3.8 * (len(PAIRS) + 1), 3.1 * len(modes)), squeeze=False
    )

    def series(d: int, key: str) -> tuple[list[int], list[float]]:
        rs = sorted((r for r in rows if r["depth"] == d), key=lambda r: r["width"])
        return [r["width"] for r in rs], [r[key] for r in rs]

    for i, mode in enumerate(modes):
        for ax, (a, b) in zip(axes[i], PAIRS):
            for d in depths:
                ax.plot(*series(d, f"gap_{mode}_{a}_{b}"), "-o", label=f"depth {d}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{mode}: gap {a.upper()} vs {b.upper()}", fontsize=9)
            ax.legend(fontsize=7)
        axes[i][0].set_ylabel("normalised gap (C5)")
        ax = axes[i][-1]
        for name, style in zip(ALGORITHMS, ("-o", "--s", ":^")):
            for d in depths:
                ax.plot(*series(d, f"mse_{mode}_{name}"), style, label=f"{name} d{d}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{mode}: test MSE after adaptation", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("width")
    fig.suptitle("Wang et al. closeness: MTL vs GBML predictions on unseen sinusoid tasks", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
