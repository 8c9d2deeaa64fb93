"""A user's own meta-RL algorithm in a plugin module (``plugins=["rl_toy_plugin"]`` /
``--plugin rl_toy_plugin``): importing it registers ``toy-reinforce``."""

from __future__ import annotations

from typing import Any

import torch

from metabridge.rl import MetaEnv, MetaRLAlgorithm, register_rl_algorithm
from metabridge.rl.inner_step import inner_gradients
from metabridge.rl.policy import GaussianMLPPolicy


@register_rl_algorithm("toy-reinforce", replace=True)  # replace: the module may be imported under two names
class ToyReinforce(MetaRLAlgorithm):
    """Plain REINFORCE on the pooled tasks: one gradient step of size ``step`` per iteration."""

    def __init__(self, policy: GaussianMLPPolicy, inner_lr: float = 0.1, step: float = 0.01, **kwargs: Any) -> None:
        super().__init__(policy, inner_lr, **kwargs)
        self.step = float(step)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "step": self.step}

    def train_iteration(
        self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator
    ) -> dict[str, float]:
        tasks = env.sample_tasks(meta_batch, generator)
        episodes = self.sample(env, self.policy.params(), tasks, rollouts, generator)
        grads = inner_gradients(self.policy, self.policy.params(), episodes)  # per task: [T, ...]
        with torch.no_grad():
            for name, p in self.policy.named_parameters():
                p.sub_(self.step * grads[name].mean(0))
        return {"env_steps": float(episodes.env_steps), "return": float(episodes.task_returns().mean())}
