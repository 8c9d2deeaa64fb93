"""Each paper's protocol as a named :class:`~metabridge.rl.config.RLConfig` (``metabridge rl train --preset``).

* ``navigation-finn``: Finn et al. 2017's 2D navigation (cbfinn/maml_rl,
  ``maml_trpo_point.py``): normalised actions (x0.1), (100, 100) ReLU policy, fast lr 0.5,
  20 trajectories per task, max KL 0.01, 100 iterations; the tested model was trained with
  meta-batch 20. Test protocol (``test_maml_point.py``): 40 goals, 40 trajectories per
  step, step sizes 0.5 then 0.25. One change to lower the cost: the Fisher-vector
  products use a quarter of the rollouts (``fisher_subsample=0.25``, TRPO's subsampled
  curvature; gradient, surrogate and KL bound use all of them).
* ``halfcheetah-vel-gao``: Gao & Sener's HalfCheetahRandVel (isl-org/MetaLearningTradeoffs,
  ``experiments/benchmark``): goal velocity U(0, 3), horizon 200, 40 tasks x 20 rollouts,
  (64, 64) tanh, inner lr 0.01, MAML max KL 0.001 (DRS-TRPO 0.01; DRS-PPO Adam 1e-2,
  5 epochs, clip 0.3), 1001 MAML / 2001 DRS iterations. ``halfcheetah-vel-small-gao-steps``
  is that protocol scaled down (10 tasks x 10 rollouts, horizon 100, 60 MAML iterations)
  with Gao & Sener's small steps (0.01 inner, KL 0.001; how far they move the policy in that
  budget is on the HalfCheetah results page). ``halfcheetah-vel-small`` is the
  same scaled family with Finn et al.'s cheetah step sizes (inner lr 0.1, max KL 0.01 for
  MAML and DRS-TRPO; DRS-PPO Adam 1e-3, clip 0.2), which learn within it.
* ``metaworld-ml1-reach``: Meta-World ML1 reach-v3 as Gao & Sener ran it (horizon 150,
  20 tasks x 10 rollouts, (100, 100) tanh), scaled in iterations.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..config import describe_validation_error
from .config import RLConfig

#: algorithm -> overrides per preset (Gao & Sener tune the TRPO step and PPO rate per method)
_PRESETS: dict[str, dict[str, Any]] = {
    "navigation-finn": dict(
        env="navigation-2d",
        env_kwargs={"action_scale": 0.1},
        hidden=[100, 100],
        activation="relu",
        inner_lr=0.5,
        meta_batch=20,
        rollouts=20,
        iterations=100,
        eval_every=10,
        eval_tasks=40,
        eval_rollouts=40,
        eval_updates=3,
        eval_lrs=[0.5, 0.25],
        checkpoint_every=10,
        algorithm_kwargs={"max_kl": 0.01, "fisher_subsample": 0.25},
    ),
    "halfcheetah-vel-gao": dict(
        env="halfcheetah-vel",
        env_kwargs={"velocity_range": [0.0, 3.0], "horizon": 200},
        hidden=[64, 64],
        activation="tanh",
        inner_lr=0.01,
        meta_batch=40,
        rollouts=20,
        iterations=1001,
        eval_every=50,
        eval_tasks=40,
        eval_rollouts=20,
        eval_updates=5,
        checkpoint_every=10,
        algorithm_kwargs={"max_kl": 0.001},
    ),
    "halfcheetah-vel-small": dict(
        env="halfcheetah-vel",
        env_kwargs={"velocity_range": [0.0, 3.0], "horizon": 100},
        hidden=[64, 64],
        activation="tanh",
        inner_lr=0.1,
        meta_batch=10,
        rollouts=10,
        iterations=60,
        eval_every=10,
        eval_tasks=10,
        eval_rollouts=10,
        eval_updates=5,
        checkpoint_every=10,
        algorithm_kwargs={"max_kl": 0.01, "fisher_subsample": 0.5},
    ),
    "metaworld-ml1-reach": dict(
        env="metaworld-ml1",
        env_kwargs={"env_name": "reach-v3", "horizon": 150},
        hidden=[100, 100],
        activation="tanh",
        inner_lr=0.05,
        meta_batch=10,
        rollouts=10,
        iterations=40,
        eval_every=10,
        eval_tasks=10,
        eval_rollouts=10,
        eval_updates=1,
        checkpoint_every=10,
        algorithm_kwargs={"max_kl": 0.01, "fisher_subsample": 0.5},
    ),
}
# the small HalfCheetah run with Gao & Sener's step sizes (inner lr and trust region), all else equal
_PRESETS["halfcheetah-vel-small-gao-steps"] = {
    **_PRESETS["halfcheetah-vel-small"],
    "inner_lr": 0.01,
    "algorithm_kwargs": {"max_kl": 0.001, "fisher_subsample": 0.5},
}

#: per-algorithm settings that differ from MAML's within a preset (Gao & Sener's run.py)
_ALGORITHM_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "halfcheetah-vel-gao": {"drs-trpo": {"max_kl": 0.01}, "drs-ppo": {"learning_rate": 1e-2, "epochs": 5, "clip": 0.3}},
    "halfcheetah-vel-small": {"drs-ppo": {"learning_rate": 1e-3, "epochs": 5, "clip": 0.2}},
    "halfcheetah-vel-small-gao-steps": {
        "drs-trpo": {"max_kl": 0.01},
        "drs-ppo": {"learning_rate": 1e-2, "epochs": 5, "clip": 0.3},
    },
    "navigation-finn": {"drs-ppo": {"learning_rate": 1e-3, "epochs": 5, "clip": 0.2}},
    "metaworld-ml1-reach": {"drs-ppo": {"learning_rate": 1e-3, "epochs": 5, "clip": 0.2}},
}

_ALGORITHM_KEYS = {
    "maml-trpo": {"max_kl", "cg_iters", "cg_damping", "backtrack_ratio", "max_backtracks", "fisher_subsample"},
    "drs-trpo": {"max_kl", "cg_iters", "cg_damping", "backtrack_ratio", "max_backtracks", "fisher_subsample"},
    "drs-ppo": {"learning_rate", "clip", "epochs", "max_grad_norm"},
}
_ALGORITHM_KEYS["fo-maml-trpo"] = _ALGORITHM_KEYS["maml-trpo"]


def available_presets() -> list[str]:
    return sorted(_PRESETS)


def preset_config(name: str, algorithm: str = "maml-trpo", **overrides: Any) -> RLConfig:
    """The preset ``name`` for ``algorithm``, with ``overrides`` applied (validated).

    ``algorithm_kwargs`` and ``env_kwargs`` given here are added to the preset's (an
    ``env_kwargs`` of another ``env`` starts from nothing); every other field replaces it."""
    if name not in _PRESETS:
        raise ValueError(f"unknown meta-RL preset {name!r}; available: {', '.join(available_presets())}.")
    fields = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _PRESETS[name].items()}
    kwargs = {k: v for k, v in fields.pop("algorithm_kwargs").items() if k in _ALGORITHM_KEYS.get(algorithm, set())}
    kwargs.update(_ALGORITHM_OVERRIDES.get(name, {}).get(algorithm, {}))
    kwargs.update(overrides.pop("algorithm_kwargs", {}) or {})
    env_kwargs = fields["env_kwargs"] if overrides.get("env", fields["env"]) == fields["env"] else {}
    env_kwargs = {**env_kwargs, **(overrides.pop("env_kwargs", {}) or {})}
    fields.update(algorithm=algorithm, algorithm_kwargs=kwargs, env_kwargs=env_kwargs, **overrides)
    return validated_rl_config(**fields)


def validated_rl_config(**fields: Any) -> RLConfig:
    """``RLConfig(**fields)``; invalid values are one ``ValueError`` naming each field and the fix."""
    try:
        return RLConfig(**fields)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc, options=False)) from None
