"""The task-batched sampler: T tasks x R rollouts stepped together for a fixed horizon.

At every step one policy forward serves all T*R environments, each task with its own
parameters (``params`` with a leading task axis, e.g. after an inner policy-gradient
step), through :func:`metabridge.rl.policy.policy_forward` (``torch.func.vmap`` over
``functional_call``): no Python loop over tasks or rollouts in the policy path. Actions
are a ~ N(mu_theta_i(s), sigma_i^2) with the noise drawn from the sampler's generator, so
one seed reproduces every episode.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .envs.base import MetaEnv
from .episodes import Episodes
from .policy import GaussianMLPPolicy, Params, broadcast_log_std, policy_forward


@torch.no_grad()
def sample_episodes(
    env: MetaEnv,
    policy: GaussianMLPPolicy,
    params: Params,
    tasks: Tensor,
    rollouts: int,
    generator: torch.Generator,
    deterministic: bool = False,
) -> Episodes:
    """Run ``rollouts`` episodes of each task of ``tasks`` ``[T, task_dim]`` for ``env.horizon`` steps.

    ``params`` are shared (the policy's own shapes) or per task (leading axis T).
    ``deterministic=True`` acts with the mean (for inspection; training samples). Episodes
    are stored in the policy's dtype and on its device."""
    device, dtype = policy.log_std.device, policy.log_std.dtype
    t, h = tasks.shape[0], env.horizon
    params = {k: v.detach() for k, v in params.items()}
    tasks = tasks.to(device)
    obs = env.reset(tasks, rollouts, generator).to(device, dtype)
    observations = torch.empty(t, rollouts, h, env.obs_dim, device=device, dtype=dtype)
    actions = torch.empty(t, rollouts, h, env.action_dim, device=device, dtype=dtype)
    rewards = torch.empty(t, rollouts, h, device=device, dtype=dtype)
    mask = torch.empty(t, rollouts, h, device=device, dtype=dtype)
    log_probs = torch.empty(t, rollouts, h, device=device, dtype=dtype)
    success = torch.zeros(t, rollouts, h, dtype=torch.bool, device=device) if env.has_success else None
    done = torch.zeros(t, rollouts, dtype=torch.bool, device=device)
    noise = torch.randn(t, rollouts, h, env.action_dim, generator=generator).to(device, dtype)
    for step in range(h):
        mean, log_std = policy_forward(policy, params, obs)
        std = torch.exp(broadcast_log_std(log_std, mean))
        eps = torch.zeros_like(noise[:, :, step]) if deterministic else noise[:, :, step]
        action = mean + std * eps
        # log N(a; mean, std) with a = mean + std * eps is -eps^2/2 - log std - log(2 pi)/2 per dimension
        lp = -0.5 * (eps * eps).sum(-1) - torch.log(std).sum(-1) - 0.5 * env.action_dim * 1.8378770664093453
        observations[:, :, step] = obs
        actions[:, :, step] = action
        log_probs[:, :, step] = lp
        mask[:, :, step] = (~done).float()
        result = env.step(action)
        rewards[:, :, step] = result.reward.to(device) * mask[:, :, step]
        if success is not None and result.success is not None:
            success[:, :, step] = result.success.to(device) & ~done
        done = done | result.done.to(device)
        obs = result.observation.to(device, dtype)
    if not bool(torch.isfinite(rewards).all()):
        raise FloatingPointError(
            f"{env.name} returned a non-finite reward: the simulator diverged (actions too "
            "large? lower the step sizes)."
        )
    return Episodes(tasks, observations, actions, rewards, mask, log_probs, success)
