"""Meta-reinforcement learning: MAML-TRPO against domain-randomized search (Gao & Sener, NeurIPS 2020).

Layout: ``envs/`` (the batched :class:`MetaEnv` contract, 2D navigation in pure torch,
MuJoCo locomotion and RandParams over gymnasium, Meta-World ML1/ML10), ``policy``
(Gaussian MLP evaluated with per-task parameters by vmap), ``sampler`` (T tasks x R
rollouts per step), ``baseline`` / ``advantages`` (linear feature baseline, GAE),
``inner_step`` (MAML's policy-gradient adaptation), ``trpo`` (conjugate gradient,
Fisher-vector products, line search), ``algorithms/`` (MAML-TRPO, DRS-TRPO, DRS-PPO),
``evaluate`` (returns after 0..K fine-tuning updates), ``config`` / ``presets`` /
``trainer`` (runs with checkpoints and exact resume), ``tradeoff`` (Gao & Sener's Welch
map), ``experiments`` and ``commands`` (``metabridge rl ...``).

Extending it: a new environment family subclasses :class:`MetaEnv` and is registered
with :func:`register_env`; a new algorithm subclasses :class:`MetaRLAlgorithm`.
"""

from .advantages import discounted_returns, gae, normalize_per_task, process_episodes
from .algorithms import DRSPPO, DRSTRPO, MAMLTRPO, RL_ALGORITHMS, MetaRLAlgorithm, register_rl_algorithm
from .baseline import fit_linear_baseline, linear_baseline_values
from .config import RLConfig
from .envs import MetaEnv, Navigation2D, StepResult, available_envs, make_env, register_env
from .episodes import Episodes
from .evaluate import FinetuneResult, finetune_returns
from .inner_step import adapt, inner_gradients, reinforce_loss
from .policy import GaussianMLPPolicy, gaussian_kl, gaussian_log_prob, log_prob, policy_forward
from .presets import available_presets, preset_config
from .sampler import sample_episodes
from .tradeoff import TradeoffMap, plot_tradeoff_map, tradeoff_map, welch_one_sided
from .trainer import RLResult, RLTrainer, RLTrainingError, evaluate_policy, load_rl_run, train_rl
from .trpo import TRPOStats, conjugate_gradient, fisher_vector_product, gaussian_fisher_vector_product, trpo_step

__all__ = [
    "RLConfig",
    "RLResult",
    "RLTrainer",
    "RLTrainingError",
    "TradeoffMap",
    "available_presets",
    "evaluate_policy",
    "gaussian_fisher_vector_product",
    "load_rl_run",
    "plot_tradeoff_map",
    "preset_config",
    "tradeoff_map",
    "train_rl",
    "welch_one_sided",
    "DRSPPO",
    "DRSTRPO",
    "Episodes",
    "FinetuneResult",
    "GaussianMLPPolicy",
    "MAMLTRPO",
    "MetaEnv",
    "MetaRLAlgorithm",
    "Navigation2D",
    "RL_ALGORITHMS",
    "register_rl_algorithm",
    "StepResult",
    "TRPOStats",
    "adapt",
    "available_envs",
    "conjugate_gradient",
    "discounted_returns",
    "finetune_returns",
    "fisher_vector_product",
    "fit_linear_baseline",
    "gae",
    "gaussian_kl",
    "gaussian_log_prob",
    "inner_gradients",
    "linear_baseline_values",
    "log_prob",
    "make_env",
    "normalize_per_task",
    "policy_forward",
    "process_episodes",
    "register_env",
    "reinforce_loss",
    "sample_episodes",
    "trpo_step",
]
