"""The inner policy-gradient step of MAML for RL (Finn et al., ICML 2017, Alg. 3), for all tasks at once.

Task i's inner loss is the REINFORCE surrogate on its own episodes D_i (sampled with
theta), with advantages A from the baseline (:mod:`metabridge.rl.advantages`):

    L_i(theta) = - sum_{t, r} m_t log pi_theta(a_t | s_t) A_t / sum_{t, r} m_t,
    theta'_i   = theta - alpha grad_theta L_i(theta).

All T gradients come from one ``torch.func.vmap(torch.func.grad(L))`` call. With
``first_order=False`` the result stays differentiable in theta (the meta-gradient of
MAML then includes the Hessian term alpha grad^2 L_i); ``first_order=True`` treats
grad L_i as a constant (first-order MAML). Per-task parameters (leading axis T) are
adapted further in the same way (a second or later step).
"""

from __future__ import annotations

from torch import Tensor
from torch.func import grad, vmap

from .episodes import Episodes
from .policy import GaussianMLPPolicy, Params, is_batched, log_prob


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """sum(x * mask) / sum(mask) (one number; 0 when nothing is unmasked)."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def reinforce_loss(
    policy: GaussianMLPPolicy, params: Params, observations: Tensor, actions: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """L(theta) = -masked_mean(log pi_theta(a | s) A) for one task's ``[R, H, ...]`` episodes."""
    lp = log_prob(policy, params, observations, actions)
    return -masked_mean(lp * advantages, mask)


def inner_gradients(policy: GaussianMLPPolicy, params: Params, episodes: Episodes) -> Params:
    """grad_theta L_i(theta) for every task i: ``{name: [T, ...]}``."""
    if episodes.advantages is None:
        raise ValueError("episodes have no advantages: pass them through metabridge.rl.process_episodes first.")

    def task_loss(p: Params, obs: Tensor, act: Tensor, adv: Tensor, m: Tensor) -> Tensor:
        return reinforce_loss(policy, p, obs, act, adv, m)

    in_params = 0 if is_batched(params, policy) else None
    return vmap(grad(task_loss), in_dims=(in_params, 0, 0, 0, 0))(
        params, episodes.observations, episodes.actions, episodes.advantages, episodes.mask
    )


def adapt(
    policy: GaussianMLPPolicy, params: Params, episodes: Episodes, lr: float | Tensor, first_order: bool = False
) -> Params:
    """theta'_i = theta - lr grad L_i(theta) for every task of ``episodes`` (leading axis T)."""
    grads = inner_gradients(policy, params, episodes)
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    batched = is_batched(params, policy)
    return {k: (params[k] if batched else params[k].unsqueeze(0)) - lr * grads[k] for k in params}
