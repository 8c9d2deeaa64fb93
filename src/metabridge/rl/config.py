"""One meta-RL run as a validated config: environment, policy, algorithm, budget, evaluation.

Every field has the meaning of the paper it follows (Finn et al. 2017; Gao & Sener 2020)
and is stored in each checkpoint, so ``metabridge rl train --resume`` and
``metabridge rl eval`` rebuild the run from the run directory alone. Built-in presets
(:mod:`metabridge.rl.presets`) fill it with each paper's protocol.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..plugins import load_plugins
from .algorithms.registry import RL_ALGORITHMS


class RLConfig(BaseModel):
    """A meta-RL training run (see the field descriptions)."""

    model_config = ConfigDict(extra="forbid")

    env: str = Field("navigation-2d", description="environment family (metabridge.rl.available_envs())")
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="options of the environment family")
    algorithm: str = Field(
        "maml-trpo",
        description=(
            "meta-RL algorithm: maml-trpo, fo-maml-trpo, drs-trpo, drs-ppo, or one a plugin registered "
            "(metabridge.rl.RL_ALGORITHMS)"
        ),
    )
    algorithm_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="options of the algorithm (max_kl, clip, ...)"
    )
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="policy hidden widths")
    activation: Literal["tanh", "relu"] = "tanh"
    init_std: float = Field(1.0, gt=0)
    inner_lr: float = Field(0.1, gt=0, description="alpha: MAML's inner step and every test-time update")
    gamma: float = Field(0.99, gt=0, le=1)
    gae_lambda: float = Field(1.0, ge=0, le=1)
    meta_batch: int = Field(20, ge=1, description="tasks per iteration")
    rollouts: int = Field(20, ge=1, description="episodes per task per sampling")
    iterations: int = Field(100, ge=1)
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="iterations between evaluations (0: only at the end)")
    eval_tasks: int = Field(40, ge=1, description="held-out tasks per evaluation")
    eval_rollouts: int = Field(20, ge=1, description="episodes per task per fine-tuning step at evaluation")
    eval_updates: int = Field(3, ge=0, description="fine-tuning updates K (returns after 0..K are reported)")
    eval_lrs: list[float] | None = Field(None, description="step size of each test update (default inner_lr)")
    eval_seed: int = Field(1, description="seed of the held-out tasks and evaluation noise (shared by methods)")
    checkpoint_every: int = Field(10, ge=0, description="iterations between checkpoints (0: only at the end)")
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    plugins: list[str] = Field(
        default_factory=list,
        description=(
            "modules imported before the run is built (where one's own register_rl_algorithm / register_env "
            "calls live); kept in the checkpoint, so resuming and evaluating import them again"
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        load_plugins(self.plugins)  # a plugin's algorithm is a name like the built-in ones
        self.algorithm = RL_ALGORITHMS.canonical(self.algorithm)
        if self.eval_lrs is not None:
            if len(self.eval_lrs) == 0 or any(lr <= 0 for lr in self.eval_lrs):
                raise ValueError("eval_lrs must be positive step sizes, one per test update (the last repeats).")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1 (got {self.hidden}).")
        return self

    def eval_schedule(self) -> list[float]:
        """The step size of each of the ``eval_updates`` test updates (the last given repeats)."""
        lrs = self.eval_lrs or [self.inner_lr]
        return [lrs[min(k, len(lrs) - 1)] for k in range(self.eval_updates)]

    def env_steps_per_iteration(self, horizon: int) -> int:
        """Upper bound on environment steps per iteration (MAML samples twice: the algorithm's
        ``samples_per_task_iteration``)."""
        per = RL_ALGORITHMS[self.algorithm].samples_per_task_iteration
        return per * self.meta_batch * self.rollouts * horizon
