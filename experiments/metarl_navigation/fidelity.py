"""Where 2D navigation here differs from Finn et al.'s code (cbfinn/maml_rl), each difference measured.

Parts (each writes ``results/fidelity_<part>.json`` and is skipped when that file exists):

* ``references``: what the test protocol gives without meta-training: the random initial policy (ReLU, the
  preset's; tanh, the default of the rllab policy Finn's test script builds for its random row) on our test goals
  and on Finn's (``np.random.seed(1)``, 40 goals of ``test_maml_point.py``), with 40 episodes per update and with
  Finn's 4000-step batches; and a controller that moves straight to the goal at the largest step (the attainable
  return), with and without the termination at the goal.
* ``curvature``: rllab's finite-difference Hessian-vector product of the KL (float32 parameters moved by
  eps v, eps = 1e-8 / ||theta||, central difference of the KL gradient) against the exact Fisher-vector product of
  MAML-TRPO, on one meta-batch of a trained checkpoint; the same difference in float64 (where it must agree) and
  with larger eps as controls.
* ``eval-sS``: the MAML-TRPO checkpoint of seed S under our test protocol, on Finn's goals, with Finn's
  4000-step batches, and without the termination at the goal; the learned exploration noise and episode lengths.
* ``noise-sS``: Finn's test on the seed's checkpoint with its learned exploration noise scaled by 0.5, 0.75, 1
  and 1.5 (how much the returns after 2 and 3 updates hang on the noise the meta-training settled on).
* ``exact-fisher-sS``: MAML-TRPO of seed S with the Fisher-vector products on every rollout (the preset subsamples
  a quarter); ``--stop-at`` (Unix time) ends the training there with a checkpoint, and the part then reports the
  evaluations so far (a later call resumes it).

Usage: ``python experiments/metarl_navigation/fidelity.py --runs RUNS --results RESULTS PART [PART ...]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabridge.machine_info import machine
from metabridge.metrics_log import read_metrics
from metabridge.rl.advantages import process_episodes
from metabridge.rl.algorithms.base import behaviour_distribution, distribution_of, per_task_mean, surrogate_and_kl
from metabridge.rl.config import RLConfig
from metabridge.rl.envs.base import MetaEnv
from metabridge.rl.episodes import Episodes
from metabridge.rl.evaluate import _ci95_rows
from metabridge.rl.experiments import FINN_NAVIGATION, run_or_resume
from metabridge.rl.inner_step import adapt
from metabridge.rl.policy import GaussianMLPPolicy, Params, broadcast_log_std, gaussian_kl
from metabridge.rl.presets import preset_config
from metabridge.rl.sampler import sample_episodes
from metabridge.rl.trainer import (
    build_env,
    build_policy,
    build_rl_algorithm,
    evaluate_policy,
    evaluation_tasks,
    load_rl_run,
)
from metabridge.rl.trpo import flat, gaussian_fisher_vector_product, unflat_like

PRESET = "navigation-finn"
FINN_BATCH_STEPS = 4000  # test_maml_point.py: VPG(batch_size=4000), environment steps per update


def finn_goals() -> torch.Tensor:
    """The 40 test goals of Finn's ``test_maml_point.py``: ``np.random.seed(1)``, U[-0.5, 0.5]^2."""
    return torch.tensor(np.random.RandomState(1).uniform(-0.5, 0.5, size=(40, 2)), dtype=torch.float32)


def _cat(parts: list[Episodes]) -> Episodes:
    fields = ("observations", "actions", "rewards", "mask", "log_probs")
    return Episodes(parts[0].tasks, *(torch.cat([getattr(p, f) for p in parts], dim=1) for f in fields))


def sample_by_steps(
    env: MetaEnv, policy: GaussianMLPPolicy, params: Params, tasks: torch.Tensor, steps: int, gen: torch.Generator
) -> Episodes:
    """rllab's batch of ``steps`` environment steps per task: whole episodes in order until the task's step
    count reaches ``steps`` (so more episodes where they end early at the goal); the rest are masked out."""
    parts: list[Episodes] = []
    while True:
        parts.append(sample_episodes(env, policy, params, tasks, 40, gen))
        lengths = torch.cat([p.mask.sum(-1) for p in parts], dim=1)
        before = torch.cumsum(lengths, dim=1) - lengths  # steps collected before each episode started
        if bool((before[:, -1] + lengths[:, -1] >= steps).all()):
            break
    keep = (before < steps).to(lengths.dtype)
    ep = _cat(parts)
    return replace(ep, mask=ep.mask * keep[..., None], rewards=ep.rewards * keep[..., None])


def finetune(
    env: MetaEnv,
    policy: GaussianMLPPolicy,
    tasks: torch.Tensor,
    lrs: Sequence[float],
    gen: torch.Generator,
    steps: int | None = None,
    rollouts: int = 40,
) -> dict[str, Any]:
    """Returns after 0..len(lrs) first-order policy-gradient updates (as :func:`metabridge.rl.evaluate.
    finetune_returns`), sampling ``rollouts`` episodes per update or, with ``steps``, rllab's step batches."""
    current = {k: v.detach() for k, v in policy.params().items()}
    returns, lengths, episodes_n, stds = [], [], [], []
    for k in range(len(lrs) + 1):
        if steps is None:
            ep = sample_episodes(env, policy, current, tasks, rollouts, gen)
        else:
            ep = sample_by_steps(env, policy, current, tasks, steps, gen)
        kept = ep.mask[..., 0]
        returns.append(ep.episode_returns().sum(1) / kept.sum(1))
        lengths.append(float(ep.mask.sum() / kept.sum()))
        episodes_n.append(float(kept.sum(1).mean()))
        stds.append(torch.exp(current["log_std"]).reshape(-1, 2).mean(0).tolist())
        if k == len(lrs):
            break
        ep = process_episodes(ep, 0.99, 1.0, True)
        current = {n: v.detach() for n, v in adapt(policy, current, ep, lrs[k], first_order=True).items()}
    table = torch.stack(returns)
    return {
        "returns": [float(r) for r in table.mean(1)],
        "returns_ci95": _ci95_rows(table),
        "episode_length": lengths,
        "episodes_per_task": episodes_n,
        "policy_std": stds,
    }


def _nav_env(cfg: RLConfig, **kwargs: Any) -> MetaEnv:
    return build_env(cfg.model_copy(update={"env_kwargs": {**cfg.env_kwargs, **kwargs}}))


def greedy_return(goals: torch.Tensor, success_radius: float | None) -> float:
    """Average return of moving straight at the goal, the largest allowed step per coordinate."""
    env = _nav_env(preset_config(PRESET, "maml-trpo"), success_radius=success_radius, action_scale=1.0)
    obs = env.reset(goals, 1, torch.Generator())
    total = torch.zeros(goals.shape[0])
    for _ in range(env.horizon):
        out = env.step(goals[:, None] - obs)
        total += out.reward[:, 0]
        obs = out.observation
    return float(total.mean())


def part_references() -> dict[str, Any]:
    cfg = preset_config(PRESET, "maml-trpo")
    lrs = cfg.eval_schedule()
    env = build_env(cfg)
    rows: dict[str, Any] = {}
    for act in ("relu", "tanh"):
        c = cfg.model_copy(update={"activation": act})
        policy = build_policy(c, env)
        rows[f"random {act}, our goals, 40 episodes"] = finetune(env, policy, ours_tasks(c, env), lrs, _noise(c))
        rows[f"random {act}, Finn's goals, 40 episodes"] = finetune(env, policy, finn_goals(), lrs, _noise(c))
        rows[f"random {act}, Finn's goals, 4000-step batches"] = finetune(
            env, policy, finn_goals(), lrs, _noise(c), steps=FINN_BATCH_STEPS
        )
    return {
        "finn_stored": FINN_NAVIGATION,
        "rows": rows,
        "attainable": {
            "finn_goals_terminate": greedy_return(finn_goals(), 0.01),
            "finn_goals_no_termination": greedy_return(finn_goals(), None),
            "our_goals_terminate": greedy_return(ours_tasks(cfg, env), 0.01),
        },
    }


def ours_tasks(cfg: RLConfig, env: MetaEnv) -> torch.Tensor:
    return evaluation_tasks(cfg, env)


def _noise(cfg: RLConfig) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.eval_seed + 7919)  # as evaluate_policy


def _curvature_at(cfg: RLConfig, policy: GaussianMLPPolicy, seed: int = 0) -> dict[str, Any]:
    """rllab's finite-difference KL Hessian-vector product against the exact one on one MAML meta-batch,
    for v = the meta-gradient (the first vector conjugate gradients multiplies)."""
    env = build_env(cfg)
    alg = build_rl_algorithm(cfg, policy)
    batch = alg.collect(env, cfg.meta_batch, cfg.rollouts, torch.Generator().manual_seed(seed))
    train, valid = batch.train, batch.valid
    names = [n for n, _ in policy.named_parameters()]
    theta = [p.detach().clone() for p in policy.parameters()]
    old_mean, old_log_std = behaviour_distribution(policy, batch.adapted_old, valid)

    def inner(p: Params) -> Params:
        return adapt(policy, p, train, cfg.inner_lr, False)

    dist = distribution_of(policy, names, valid.observations, inner)

    def grad_kl(ts: list[torch.Tensor]) -> torch.Tensor:
        ts = [t.detach().clone().requires_grad_(True) for t in ts]
        mean, log_std = dist(*ts)
        kl = gaussian_kl(old_mean, old_log_std, mean, broadcast_log_std(log_std, mean))
        return flat(torch.autograd.grad(per_task_mean(kl, valid.mask).mean(), ts))

    ts = [t.clone().requires_grad_(True) for t in theta]
    loss, _ = surrogate_and_kl(policy, inner(dict(zip(names, ts))), valid, old_mean, old_log_std)
    v = flat(torch.autograd.grad(loss, ts)).detach()
    exact = gaussian_fisher_vector_product(dist, theta, valid.mask, 0.0)(v)
    th = flat(theta)
    rows = []
    for rel in (1.0, 1e-8, 1e-6):  # 1: what Finn's optimizer passes (num_slices, positionally); 1e-8: the default
        eps = float(
            np.asarray(rel / (float(th.norm()) + 1e-8), dtype=np.float32 if th.dtype == torch.float32 else None)
        )
        plus, minus = th + eps * v, th - eps * v  # stored in the parameters' dtype, as rllab's assign
        fd = (grad_kl(unflat_like(plus, theta)) - grad_kl(unflat_like(minus, theta))) / (2 * eps)
        rows.append(
            {
                "base_eps": rel,
                "eps": eps,
                "entries_moved": float((plus != th).float().mean()),
                "rel_error": float((fd - exact).norm() / exact.norm()),
                "vFv_fd": float(v @ fd),
            }
        )
    env.close()
    return {
        "dtype": str(th.dtype).replace("torch.", ""),
        "theta_norm": float(th.norm()),
        "vFv_exact": float(v @ exact),
        "policy_std": torch.exp(policy.log_std.detach()).tolist(),
        "gradient_norm": float(v.norm()),
        "finite_difference": rows,
    }


def part_curvature(runs: Path, seeds: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """On each trained checkpoint (the initialisation sits on ReLU kinks: zero biases at the origin): float32, as
    rllab, and float64, where the same finite difference must agree with the exact product (a check of it)."""
    out: dict[str, Any] = {}
    for seed in seeds:
        run = runs / f"maml-trpo-s{seed}"
        if not run.is_dir():
            continue
        cfg, env, alg, it = load_rl_run(run)
        env.close()
        for dtype in ("float32", "float64"):
            policy = copy.deepcopy(alg.policy).to(getattr(torch, dtype))
            out[f"seed {seed}, iteration {it}, {dtype}"] = _curvature_at(
                cfg.model_copy(update={"dtype": dtype}), policy
            )
    if not out:
        raise SystemExit("curvature: no MAML-TRPO checkpoint under --runs (train a seed first)")
    return out


def part_eval(runs: Path, seed: int) -> dict[str, Any]:
    """The seed's MAML-TRPO checkpoint under our test protocol and under Finn's conventions, one at a time."""
    cfg, env, alg, it = load_rl_run(runs / f"maml-trpo-s{seed}")
    policy, lrs = alg.policy, cfg.eval_schedule()
    ours = evaluate_policy(cfg, env, policy)
    free = _nav_env(cfg, success_radius=None)
    rows = {
        "our protocol (40 episodes, our goals)": {"returns": ours.mean_returns(), "returns_ci95": ours.returns_ci95()},
        "our protocol, with episode statistics": finetune(env, policy, ours_tasks(cfg, env), lrs, _noise(cfg)),
        "Finn's goals, 40 episodes": finetune(env, policy, finn_goals(), lrs, _noise(cfg)),
        "Finn's goals, 4000-step batches (Finn's test)": finetune(
            env, policy, finn_goals(), lrs, _noise(cfg), steps=FINN_BATCH_STEPS
        ),
        "Finn's test without termination at the goal": finetune(
            free, policy, finn_goals(), lrs, _noise(cfg), steps=FINN_BATCH_STEPS
        ),
    }
    env.close()
    return {"seed": seed, "iteration": it, "config": cfg.model_dump(), "rows": rows}


NOISE_FACTORS = (0.5, 0.75, 1.0, 1.5)


def part_noise(runs: Path, seed: int, factors: Sequence[float] = NOISE_FACTORS) -> dict[str, Any]:
    """Finn's test on the seed's checkpoint with its learned exploration noise scaled by each factor (a probe of how
    much the returns after 2 and 3 updates depend on the noise the meta-training settled on)."""
    cfg, env, alg, it = load_rl_run(runs / f"maml-trpo-s{seed}")
    policy, lrs = alg.policy, cfg.eval_schedule()
    learned = policy.log_std.detach().clone()
    rows = {}
    try:
        for f in factors:
            with torch.no_grad():
                policy.log_std.copy_(learned + math.log(f))
            rows[str(f)] = finetune(env, policy, finn_goals(), lrs, _noise(cfg), steps=FINN_BATCH_STEPS)
    finally:
        with torch.no_grad():
            policy.log_std.copy_(learned)
        env.close()
    return {"seed": seed, "iteration": it, "learned_std": torch.exp(learned).tolist(), "rows": rows}


def part_exact_fisher(runs: Path, seed: int, stop_at: float | None) -> dict[str, Any]:
    """MAML-TRPO with the Fisher-vector products on every rollout; trains (resumably) until done or ``stop_at``."""
    from metabridge.training import TrainingInterrupted

    base = preset_config(PRESET, "maml-trpo", seed=seed)
    cfg = base.model_copy(update={"algorithm_kwargs": {**base.algorithm_kwargs, "fisher_subsample": 1.0}})
    run = runs / f"maml-trpo-exact-fisher-s{seed}"
    if stop_at is not None:
        left = int(stop_at - time.time())
        if left <= 0:
            raise SystemExit("exact-fisher: no time left before --stop-at")
        signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGTERM))
        signal.alarm(left)
    try:
        run_or_resume(cfg, run, progress=False)
    except TrainingInterrupted:
        pass
    finally:
        signal.alarm(0)
    records = read_metrics(run)
    evals = [r for r in records if r.get("kind") == "eval"]
    _, env, alg, it = load_rl_run(run)
    env.close()
    return {
        "seed": seed,
        "checkpoint_iteration": it,
        "policy_std": torch.exp(alg.policy.log_std.detach()).tolist(),
        "config": cfg.model_dump(),
        "complete": any(r["step"] == cfg.iterations for r in evals),
        "curve": [
            {
                "iteration": r["step"],
                "returns": r["returns"],
                "returns_ci95": r["returns_ci95"],
                "seconds": r["seconds"],
            }
            for r in evals
        ],
    }


def _run_part(part: str, runs: Path, results: Path, stop_at: float | None) -> None:
    path = results / f"fidelity_{part.replace('-', '_')}.json"
    if path.is_file():
        print(f"skip {part}: {path} exists")
        return
    t0 = time.time()
    if part == "references":
        out = part_references()
    elif part == "curvature":
        out = part_curvature(runs)
    elif part.startswith("eval-s"):
        out = part_eval(runs, int(part.removeprefix("eval-s")))
    elif part.startswith("noise-s"):
        out = part_noise(runs, int(part.removeprefix("noise-s")))
    elif part.startswith("exact-fisher-s"):
        out = part_exact_fisher(runs, int(part.removeprefix("exact-fisher-s")), stop_at)
        if not out["complete"]:
            path = path.with_name(path.stem + "_partial.json")
    else:
        raise SystemExit(f"unknown part {part!r}")
    out["seconds"] = time.time() - t0
    out["machine"] = machine("cpu")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{part}: {path} ({out['seconds']:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+")
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--stop-at", type=float, default=None, help="Unix time at which a training part stops")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.results.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        _run_part(part, args.runs, args.results, args.stop_at)


if __name__ == "__main__":
    main()
