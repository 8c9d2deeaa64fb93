"""The meta-RL core of metabridge against independent computations.

Every check compares the library with something computed another way: plain Python
loops over masked episodes, numpy / scipy in float64, explicit Hessians built with
``torch.autograd.functional.hessian``, float64 central finite differences, closed forms,
and a numpy re-implementation of 2D navigation. Tiny float64 policies keep the whole
file to a few seconds on one core.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from metabridge.rl import (
    DRSPPO,
    DRSTRPO,
    MAMLTRPO,
    GaussianMLPPolicy,
    MetaEnv,
    Navigation2D,
    adapt,
    conjugate_gradient,
    discounted_returns,
    finetune_returns,
    fisher_vector_product,
    fit_linear_baseline,
    gae,
    inner_gradients,
    linear_baseline_values,
    log_prob,
    normalize_per_task,
    process_episodes,
    reinforce_loss,
    sample_episodes,
    trpo_step,
)
from metabridge.rl.algorithms.base import behaviour_distribution, distribution_of, surrogate_and_kl
from metabridge.rl.baseline import baseline_features
from metabridge.rl.trpo import gaussian_fisher_vector_product

# ----------------------------------------------------------------------------- helpers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _policy(
    seed: int, hidden=(3,), obs_dim: int = 2, action_dim: int = 2, double: bool = True, jitter: float = 0.3
) -> GaussianMLPPolicy:
    """A policy built from its own RNG stream (the global RNG is left as it was); biases and
    log-std are jittered so that no parameter sits at a special value (zero bias, equal stds)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = GaussianMLPPolicy(obs_dim, action_dim, hidden=hidden)
        if double:
            policy = policy.double()
        if jitter:
            with torch.no_grad():
                for p in policy.parameters():
                    p.add_(jitter * torch.randn_like(p))
    return policy


def _detached(params):
    return {k: v.detach().clone() for k, v in params.items()}


def _flatten(params) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in params.values()])


def _unflatten(x: torch.Tensor, like) -> dict:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = x[i : i + v.numel()].view_as(v)
        i += v.numel()
    return out


def _np_mean(policy: GaussianMLPPolicy, params, obs) -> np.ndarray:
    """The policy's mean network by hand in numpy float64 (one parameter set, no task axis)."""
    x = np.asarray(obs, dtype=np.float64)
    linear = [i for i, m in enumerate(policy.mean) if isinstance(m, nn.Linear)]
    for j, i in enumerate(linear):
        w = params[f"mean.{i}.weight"].detach().double().numpy()
        b = params[f"mean.{i}.bias"].detach().double().numpy()
        x = x @ w.T + b
        if j < len(linear) - 1:
            x = np.tanh(x) if policy.activation == "tanh" else np.maximum(x, 0.0)
    return x


def _np_log_std(params) -> np.ndarray:
    return params["log_std"].detach().double().numpy()


def _task_params(params, i: int):
    return {k: v[i] for k, v in params.items()}


def _nav_replay(goals, actions, action_scale=0.1, max_action=0.1, radius=0.01):
    """2D navigation by hand: goals [T, 2], actions [T, R, H, 2] -> positions after each step,
    rewards, done-after-step and alive-before-step (the sampler's mask), all [T, R, H(, 2)]."""
    goals = np.asarray(goals, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.float64)
    t_, r_, h_, _ = actions.shape
    pos_after = np.zeros((t_, r_, h_, 2))
    rewards = np.zeros((t_, r_, h_))
    dones = np.zeros((t_, r_, h_), dtype=bool)
    alive = np.zeros((t_, r_, h_))
    for t in range(t_):
        for r in range(r_):
            p = np.zeros(2)
            done = False
            for h in range(h_):
                alive[t, r, h] = 0.0 if done else 1.0
                if not done:
                    move = np.clip(action_scale * actions[t, r, h], -max_action, max_action)
                    p = p + move
                    rewards[t, r, h] = -math.sqrt(float(((p - goals[t]) ** 2).sum()))
                    if radius is not None and np.all(np.abs(p - goals[t]) < radius):
                        done = True
                pos_after[t, r, h] = p
                dones[t, r, h] = done
    return pos_after, rewards, dones, alive


def _early_mask(shape, rng: np.random.Generator) -> np.ndarray:
    """[..., H] masks of episodes that run for a random 1..H steps (some the full horizon)."""
    h = shape[-1]
    lengths = rng.integers(1, h + 1, size=shape[:-1])
    lengths.flat[0] = h  # at least one full episode
    lengths.flat[-1] = 1  # and one that stops after one step
    return (np.arange(h) < lengths[..., None]).astype(np.float64)


class CountingEnv(MetaEnv):
    """A Navigation2D wrapper that counts, per reset, the steps taken by entries still alive
    (independently of the sampler's mask) and their summed rewards."""

    def __init__(self, **kwargs) -> None:
        self.inner = Navigation2D(**kwargs)
        self.name, self.obs_dim, self.action_dim = self.inner.name, self.inner.obs_dim, self.inner.action_dim
        self.task_dim, self.horizon = self.inner.task_dim, self.inner.horizon
        self.action_low, self.action_high = self.inner.action_low, self.inner.action_high
        self.batches: list[dict] = []
        self._done: torch.Tensor | None = None

    def sample_tasks(self, n, generator, split="train"):
        return self.inner.sample_tasks(n, generator, split)

    def reset(self, tasks, rollouts, generator):
        self._done = torch.zeros(tasks.shape[0], rollouts, dtype=torch.bool)
        self.batches.append({"steps": 0, "reward": 0.0, "episodes": tasks.shape[0] * rollouts, "calls": 0})
        return self.inner.reset(tasks, rollouts, generator)

    def step(self, actions):
        assert self._done is not None
        alive = ~self._done
        res = self.inner.step(actions)
        b = self.batches[-1]
        b["steps"] += int(alive.sum())
        b["reward"] += float((res.reward.double() * alive).sum())
        b["calls"] += 1
        self._done = self._done | res.done
        return res


# ----------------------------------------------------------------------------- 1. returns and GAE


def _hand_returns(rewards, mask, gamma):
    out = np.zeros_like(rewards)
    for idx in np.ndindex(rewards.shape[:-1]):
        r, m = rewards[idx], mask[idx]
        h = len(r)
        for t in range(h):
            total, alive = 0.0, 1.0
            for k in range(t, h):
                alive *= m[k]
                total += gamma ** (k - t) * r[k] * alive
            out[idx + (t,)] = total
    return out


def _hand_gae(rewards, values, mask, gamma, lam):
    out = np.zeros_like(rewards)
    for idx in np.ndindex(rewards.shape[:-1]):
        r, v, m = rewards[idx], values[idx], mask[idx]
        h = len(r)
        delta = np.zeros(h)
        for t in range(h):
            if m[t] == 0:
                continue
            v_next = v[t + 1] if t + 1 < h and m[t + 1] == 1 else 0.0
            delta[t] = r[t] + gamma * v_next - v[t]
        for t in range(h):
            total, alive = 0.0, 1.0
            for k in range(t, h):
                alive *= m[k]
                total += (gamma * lam) ** (k - t) * delta[k] * alive
            out[idx + (t,)] = total
    return out


@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_discounted_returns_match_hand_loop(gamma):
    rng = np.random.default_rng(0)
    shape = (3, 4, 7)
    mask = _early_mask(shape, rng)
    rewards = rng.normal(size=shape)  # garbage after termination must be ignored
    got = discounted_returns(torch.from_numpy(rewards), torch.from_numpy(mask), gamma).numpy()
    want = _hand_returns(rewards, mask, gamma)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(got[mask == 0] == 0)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.0), (0.9, 0.5), (0.99, 0.95), (1.0, 0.7), (0.99, 1.0), (0.8, 1.0)])
def test_gae_matches_hand_loop(gamma, lam):
    rng = np.random.default_rng(1)
    shape = (2, 5, 6)
    mask = _early_mask(shape, rng)
    rewards, values = rng.normal(size=shape), rng.normal(size=shape)
    got = gae(torch.from_numpy(rewards), torch.from_numpy(values), torch.from_numpy(mask), gamma, lam).numpy()
    np.testing.assert_allclose(got, _hand_gae(rewards, values, mask, gamma, lam), rtol=1e-11, atol=1e-11)
    assert np.all(got[mask == 0] == 0)
    if lam == 1.0:  # A_t = G_t - V(s_t) on running steps
        want = (_hand_returns(rewards, mask, gamma) - values) * mask
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    if lam == 0.0:  # A_t = delta_t
        h = shape[-1]
        nxt = np.concatenate([values[..., 1:] * mask[..., 1:], np.zeros(shape[:-1] + (1,))], -1)
        np.testing.assert_allclose(got, (rewards + gamma * nxt - values) * mask, rtol=1e-11, atol=1e-11)
        assert h == got.shape[-1]


# ----------------------------------------------------------------------------- 2. normalisation


def test_normalize_per_task_masked_moments():
    rng = np.random.default_rng(2)
    shape = (4, 3, 9)
    mask = _early_mask(shape, rng)
    x = rng.normal(loc=rng.normal(size=(4, 1, 1)) * 5, scale=rng.uniform(0.1, 4, size=(4, 1, 1)), size=shape)
    got = normalize_per_task(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    for t in range(shape[0]):
        sel = mask[t] == 1
        vals = x[t][sel]
        np.testing.assert_allclose(got[t][sel], (vals - vals.mean()) / np.sqrt(vals.var() + 1e-8), rtol=1e-10)
        assert abs(got[t][sel].mean()) < 1e-10
        assert abs(got[t][sel].std() - 1.0) < 1e-6
        assert np.all(got[t][~sel] == 0)


# ----------------------------------------------------------------------------- 3. linear baseline


def _hand_features(obs, mask):
    t_, r_, h_, o_ = obs.shape
    out = np.zeros((t_, r_, h_, 2 * o_ + 4))
    for idx in np.ndindex(t_, r_, h_):
        s = np.clip(obs[idx], -10, 10)
        u = idx[2] / 100.0
        out[idx] = np.concatenate([s, s * s, [u, u * u, u**3, 1.0]]) * mask[idx]
    return out


def _ridge_lstsq(x, y, reg):
    """argmin ||x w - y||^2 + reg ||w||^2 as least squares on the augmented system."""
    f = x.shape[1]
    xa = np.vstack([x, math.sqrt(reg) * np.eye(f)])
    ya = np.concatenate([y, np.zeros(f)])
    return np.linalg.lstsq(xa, ya, rcond=None)[0]


def test_baseline_feature_layout():
    rng = np.random.default_rng(3)
    obs = rng.normal(scale=6.0, size=(2, 3, 12, 3))
    obs[0, 0, 0] = [12.0, -15.0, 3.0]  # clipped to [-10, 10]
    mask = _early_mask((2, 3, 12), rng)
    got = baseline_features(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    assert got.shape == (2, 3, 12, 10)
    np.testing.assert_allclose(got, _hand_features(obs, mask), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got[0, 0, 0, :6], [10, -10, 3, 100, 100, 9])
    assert np.all(got[mask == 0] == 0)
    assert np.all(got[mask == 1][:, -1] == 1)


@pytest.mark.parametrize("reg", [1e-5, 1e-1])
def test_fit_linear_baseline_is_per_task_ridge(reg):
    rng = np.random.default_rng(4)
    t_, r_, h_, o_ = 3, 4, 15, 2
    obs = rng.normal(size=(t_, r_, h_, o_))
    mask = _early_mask((t_, r_, h_), rng)
    returns = rng.normal(size=(t_, r_, h_)) * mask
    feats = _hand_features(obs, mask)
    w = fit_linear_baseline(
        torch.from_numpy(feats), torch.from_numpy(returns), torch.from_numpy(mask), reg_coeff=reg
    ).numpy()
    assert w.shape == (t_, 2 * o_ + 4) and w.dtype == np.float64
    values = linear_baseline_values(
        torch.from_numpy(obs), torch.from_numpy(returns), torch.from_numpy(mask), reg_coeff=reg
    ).numpy()
    for t in range(t_):
        x, y = feats[t].reshape(-1, feats.shape[-1]), returns[t].reshape(-1)
        normal = np.linalg.solve(x.T @ x + reg * np.eye(x.shape[1]), x.T @ y)
        np.testing.assert_allclose(w[t], normal, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(w[t], _ridge_lstsq(x, y, reg), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(values[t], (feats[t] @ normal) * mask[t], rtol=1e-7, atol=1e-9)
    assert np.all(values[mask == 0] == 0)


def test_fit_linear_baseline_singular_systems_stay_finite():
    rng = np.random.default_rng(5)
    t_, r_, h_ = 2, 3, 8
    mask = np.ones((t_, r_, h_))
    obs = np.zeros((t_, r_, h_, 2))  # constant observations: the obs and obs^2 columns are zero (rank deficient)
    returns = rng.normal(size=(t_, r_, h_))
    feats = _hand_features(obs, mask)
    w = fit_linear_baseline(torch.from_numpy(feats), torch.from_numpy(returns), torch.from_numpy(mask)).numpy()
    assert np.isfinite(w).all()
    for t in range(t_):
        x, y = feats[t].reshape(-1, feats.shape[-1]), returns[t].reshape(-1)
        np.testing.assert_allclose(w[t], _ridge_lstsq(x, y, 1e-5), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(w[t, :4], 0.0, atol=1e-12)  # ridge puts no weight on zero columns

    # an exactly singular system (reg 0, a task with every step masked) must neither raise nor
    # poison the other tasks of the batch: it takes the reg-increase path and ends finite
    feats2 = _hand_features(rng.normal(size=(t_, r_, h_, 2)), mask)
    mask2 = mask.copy()
    mask2[1] = 0.0
    feats2[1] = 0.0
    w2 = fit_linear_baseline(
        torch.from_numpy(feats2), torch.from_numpy(returns), torch.from_numpy(mask2), reg_coeff=0.0
    ).numpy()
    assert np.isfinite(w2).all()
    x, y = feats2[0].reshape(-1, feats2.shape[-1]), returns[0].reshape(-1)
    np.testing.assert_allclose(w2[0], np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-6, atol=1e-8)

    # non-finite features: every retry fails, the weights are zeroed rather than NaN
    feats3 = feats2.copy()
    feats3[1, 0, 0, 0] = np.inf
    w3 = fit_linear_baseline(torch.from_numpy(feats3), torch.from_numpy(returns), torch.from_numpy(mask)).numpy()
    assert np.isfinite(w3).all() and np.all(w3[1] == 0)
    np.testing.assert_allclose(w3[0], _ridge_lstsq(x, y, 1e-5), rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- 4. conjugate gradient


def _spd(eigs, seed):
    g = _gen(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def test_conjugate_gradient_solves_spd_in_n_iterations():
    n = 12
    a = _spd(list(np.linspace(0.5, 20.0, n)), 0)
    b = torch.randn(n, generator=_gen(1), dtype=torch.float64)
    calls = []

    def matvec(v):
        calls.append(1)
        return a @ v

    x = conjugate_gradient(matvec, b, iters=n, residual_tol=1e-28)
    want = torch.linalg.solve(a, b)
    assert len(calls) <= n
    torch.testing.assert_close(x, want, rtol=1e-8, atol=1e-10)
    # fewer iterations than the number of distinct eigenvalues do not solve it
    x2 = conjugate_gradient(lambda v: a @ v, b, iters=3, residual_tol=1e-28)
    assert float(torch.linalg.vector_norm(a @ x2 - b)) > 1e-3
    # three distinct eigenvalues: exact after three iterations (Krylov closed form)
    a3 = _spd([1.0] * 4 + [3.0] * 4 + [7.0] * 4, 2)
    x3 = conjugate_gradient(lambda v: a3 @ v, b, iters=3, residual_tol=1e-28)
    torch.testing.assert_close(x3, torch.linalg.solve(a3, b), rtol=1e-9, atol=1e-10)
    # a zero right-hand side stops before any product
    calls.clear()
    zero = torch.zeros(n, dtype=torch.float64)
    assert torch.equal(conjugate_gradient(matvec, zero, iters=n), zero)
    assert not calls


# ----------------------------------------------------------------------------- 5. Fisher-vector products


def _episodes(policy, params, env, tasks, rollouts, seed):
    return process_episodes(sample_episodes(env, policy, params, tasks, rollouts, _gen(seed)))


def _drs_problem(seed=0):
    policy = _policy(seed)
    env = Navigation2D(horizon=5)
    tasks = env.sample_tasks(3, _gen(seed + 100))
    theta = _detached(policy.params())
    ep = _episodes(policy, theta, env, tasks, 4, seed + 200)
    old_mean, old_log_std = behaviour_distribution(policy, theta, ep)
    return policy, theta, ep, old_mean, old_log_std


def _maml_problem(seed=0, lr=0.5):
    policy = _policy(seed)
    env = Navigation2D(horizon=5)
    tasks = env.sample_tasks(3, _gen(seed + 100))
    theta = _detached(policy.params())
    train = _episodes(policy, theta, env, tasks, 4, seed + 200)
    adapted_old = _detached(adapt(policy, theta, train, lr, first_order=True))
    valid = _episodes(policy, adapted_old, env, tasks, 4, seed + 300)
    old_mean, old_log_std = behaviour_distribution(policy, adapted_old, valid)
    return policy, theta, train, valid, old_mean, old_log_std


def _matrix_of(product, n):
    eye = torch.eye(n, dtype=torch.float64)
    return torch.stack([product(eye[i]) for i in range(n)], dim=1)


def _check_fisher(policy, theta, kl_of_params, distribution_transform, observations, mask):
    """Explicit Hessian of the mean KL vs both Fisher-vector products; returns the Hessian."""
    x0 = _flatten(theta)
    n = x0.numel()
    hess = torch.autograd.functional.hessian(lambda x: kl_of_params(_unflatten(x, theta)), x0)
    assert float(hess.abs().max()) > 1e-3
    torch.testing.assert_close(hess, hess.T, rtol=1e-8, atol=1e-10)
    assert float(torch.linalg.eigvalsh(hess).min()) > -1e-8  # a Fisher: PSD

    leaves = [v.clone().requires_grad_(True) for v in theta.values()]
    names = list(theta)
    kl = kl_of_params(dict(zip(names, leaves)))
    assert abs(kl.item()) < 1e-12  # at theta_old the KL is zero
    fvp = fisher_vector_product(kl, leaves, damping=0.0)
    torch.testing.assert_close(_matrix_of(fvp, n), hess, rtol=1e-7, atol=1e-9)

    dist = distribution_of(policy, names, observations, distribution_transform)
    gfvp = gaussian_fisher_vector_product(dist, leaves, mask, damping=0.0)
    torch.testing.assert_close(_matrix_of(gfvp, n), hess, rtol=1e-7, atol=1e-9)

    v = torch.randn(n, generator=_gen(9), dtype=torch.float64)
    damped = gaussian_fisher_vector_product(dist, leaves, mask, damping=0.3)
    torch.testing.assert_close(damped(v), hess @ v + 0.3 * v, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(
        fisher_vector_product(kl_of_params(dict(zip(names, leaves))), leaves, 0.3)(v),
        hess @ v + 0.3 * v,
        rtol=1e-7,
        atol=1e-9,
    )
    return hess


def test_fisher_products_equal_kl_hessian_drs():
    policy, theta, ep, old_mean, old_log_std = _drs_problem()
    _check_fisher(
        policy,
        theta,
        lambda p: surrogate_and_kl(policy, p, ep, old_mean, old_log_std)[1],
        None,
        ep.observations,
        ep.mask,
    )


def test_fisher_products_equal_kl_hessian_through_maml_inner_step():
    lr = 0.5
    policy, theta, train, valid, old_mean, old_log_std = _maml_problem(lr=lr)
    hessians = {}
    for first_order in (False, True):

        def inner(p, fo=first_order):
            return adapt(policy, p, train, lr, first_order=fo)

        hessians[first_order] = _check_fisher(
            policy,
            theta,
            lambda p, inner=inner: surrogate_and_kl(policy, inner(p), valid, old_mean, old_log_std)[1],
            inner,
            valid.observations,
            valid.mask,
        )
    # the second-order Fisher differentiates through the inner step: it is a different matrix
    assert float((hessians[False] - hessians[True]).abs().max()) > 1e-3 * float(hessians[True].abs().max())


# ----------------------------------------------------------------------------- 6. MAML meta-gradient


def _central_fd(fun, x0, eps=1e-6):
    out = torch.zeros_like(x0)
    for i in range(x0.numel()):
        e = torch.zeros_like(x0)
        e[i] = eps
        out[i] = (fun(x0 + e) - fun(x0 - e)) / (2 * eps)
    return out


def test_maml_meta_gradient_matches_finite_differences():
    lr = 0.5
    policy, theta, train, valid, old_mean, old_log_std = _maml_problem(seed=1, lr=lr)
    x0 = _flatten(theta)

    def loss(x, first_order):
        p = _unflatten(x, theta)
        return surrogate_and_kl(
            policy, adapt(policy, p, train, lr, first_order=first_order), valid, old_mean, old_log_std
        )[0]

    def autograd_grad(first_order):
        x = x0.clone().requires_grad_(True)
        return torch.autograd.grad(loss(x, first_order), x)[0]

    g_second, g_first = autograd_grad(False), autograd_grad(True)
    with torch.no_grad():
        fd_full = _central_fd(lambda x: loss(x, False), x0)
    torch.testing.assert_close(g_second, fd_full, rtol=1e-6, atol=1e-8)

    # first order drops alpha grad^2 L_i: it is the gradient with the inner gradient held at theta_0
    g0 = inner_gradients(policy, theta, train)

    def loss_fixed_inner(x):
        p = _unflatten(x, theta)
        adapted = {k: p[k].unsqueeze(0) - lr * g0[k] for k in p}
        return surrogate_and_kl(policy, adapted, valid, old_mean, old_log_std)[0]

    with torch.no_grad():
        fd_fixed = _central_fd(loss_fixed_inner, x0)
    torch.testing.assert_close(g_first, fd_fixed, rtol=1e-6, atol=1e-8)
    assert float((g_second - g_first).norm()) > 1e-2 * float(g_second.norm())


# ----------------------------------------------------------------------------- 7. inner gradients


def _np_reinforce_loss(policy, params, obs, act, adv, mask):
    mean = _np_mean(policy, params, obs)
    lp = stats.norm.logpdf(act, loc=mean, scale=np.exp(_np_log_std(params))).sum(-1)
    return -(lp * adv * mask).sum() / mask.sum()


def test_inner_gradients_and_adapt_equal_per_task_autograd():
    lr = 0.3
    policy = _policy(2, hidden=(4,))
    env = Navigation2D(horizon=6, goal_low=-0.1, goal_high=0.1, success_radius=0.06)
    tasks = env.sample_tasks(4, _gen(3))
    theta = _detached(policy.params())
    ep = _episodes(policy, theta, env, tasks, 3, 4)
    assert float(ep.mask.min()) == 0.0  # some episodes terminated: the mask matters
    perturbed = {
        k: v.unsqueeze(0) + 0.1 * torch.randn((4, *v.shape), generator=_gen(5), dtype=v.dtype) for k, v in theta.items()
    }
    for params, batched in ((theta, False), (perturbed, True)):
        grads = inner_gradients(policy, params, ep)
        adapted = adapt(policy, params, ep, lr, first_order=False)
        adapted_fo = adapt(policy, params, ep, lr, first_order=True)
        for i in range(ep.num_tasks):
            p_i = {k: (v[i] if batched else v).clone().requires_grad_(True) for k, v in params.items()}
            args = (ep.observations[i], ep.actions[i], ep.advantages[i], ep.mask[i])
            loss = reinforce_loss(policy, p_i, *args)
            np_loss = _np_reinforce_loss(policy, p_i, *(a.numpy() for a in args))
            assert abs(loss.item() - np_loss) < 1e-10
            want = dict(zip(p_i, torch.autograd.grad(loss, list(p_i.values()))))
            for k in params:
                torch.testing.assert_close(grads[k][i], want[k], rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(adapted[k][i], p_i[k].detach() - lr * want[k], rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(adapted_fo[k][i], adapted[k][i].detach(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="advantages"):
        inner_gradients(policy, theta, sample_episodes(env, policy, theta, tasks, 2, _gen(0)))


# ----------------------------------------------------------------------------- 8. TRPO step


def _np_surrogate(policy, params, batched, ep, old_mean, old_log_std):
    """-1/T sum_i masked mean of pi/pi_old A and 1/T sum_i masked mean KL(old || new), in numpy."""
    obs, act, adv, m = (x.numpy() for x in (ep.observations, ep.actions, ep.advantages, ep.mask))
    old_lp, om, ols = ep.log_probs.numpy(), old_mean.numpy(), old_log_std.numpy()
    losses, kls = [], []
    for i in range(obs.shape[0]):
        p = _task_params(params, i) if batched else params
        mean, ls = _np_mean(policy, p, obs[i]), _np_log_std(p)
        lp = stats.norm.logpdf(act[i], loc=mean, scale=np.exp(ls)).sum(-1)
        losses.append((np.exp(lp - old_lp[i]) * adv[i] * m[i]).sum() / m[i].sum())
        kl = (ls - ols[i] + (np.exp(2 * ols[i]) + (om[i] - mean) ** 2) / (2 * np.exp(2 * ls)) - 0.5).sum(-1)
        kls.append((kl * m[i]).sum() / m[i].sum())
    return -float(np.mean(losses)), float(np.mean(kls))


def test_surrogate_and_kl_against_numpy():
    lr = 0.5
    policy, theta, train, valid, old_mean, old_log_std = _maml_problem(seed=2, lr=lr)
    adapted_old = _detached(adapt(policy, theta, train, lr, first_order=True))
    moved = {k: v + 0.05 * torch.randn(v.shape, generator=_gen(21), dtype=v.dtype) for k, v in adapted_old.items()}
    for params in (adapted_old, moved):  # per-task parameters (MAML's adapted policies)
        loss, kl = surrogate_and_kl(policy, params, valid, old_mean, old_log_std)
        want_loss, want_kl = _np_surrogate(policy, params, True, valid, old_mean, old_log_std)
        assert abs(loss.item() - want_loss) < 1e-10 and abs(kl.item() - want_kl) < 1e-10
    assert abs(surrogate_and_kl(policy, adapted_old, valid, old_mean, old_log_std)[1].item()) < 1e-12
    assert surrogate_and_kl(policy, moved, valid, old_mean, old_log_std)[1].item() > 1e-4

    policy, theta, ep, old_mean, old_log_std = _drs_problem(seed=2)
    shifted = {k: v + 0.05 * torch.randn(v.shape, generator=_gen(22), dtype=v.dtype) for k, v in theta.items()}
    loss, kl = surrogate_and_kl(policy, shifted, ep, old_mean, old_log_std)
    want_loss, want_kl = _np_surrogate(policy, shifted, False, ep, old_mean, old_log_std)
    assert abs(loss.item() - want_loss) < 1e-10 and abs(kl.item() - want_kl) < 1e-10
    # at theta_old, grad pi/pi_old A = grad log pi A: the task mean of the REINFORCE gradients
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    g = torch.autograd.grad(surrogate_and_kl(policy, leaves, ep, old_mean, old_log_std)[0], list(leaves.values()))
    want = inner_gradients(policy, theta, ep)
    for gk, k in zip(g, theta):
        torch.testing.assert_close(gk, want[k].mean(0), rtol=1e-10, atol=1e-12)


def _np_mean_kl(policy, old, new, observations, mask):
    """1/T sum_i masked mean of KL(pi_old || pi_new) on task i's states, in numpy."""
    obs, m = observations.numpy(), mask.numpy()
    mo, mn = _np_mean(policy, old, obs), _np_mean(policy, new, obs)
    so, sn = _np_log_std(old), _np_log_std(new)
    kl = (sn - so + (np.exp(2 * so) + (mo - mn) ** 2) / (2 * np.exp(2 * sn)) - 0.5).sum(-1)
    return float(np.mean([(kl[t] * m[t]).sum() / m[t].sum() for t in range(kl.shape[0])]))


@pytest.mark.parametrize("gauss_newton", [False, True])
def test_trpo_step_on_drs_respects_trust_region(gauss_newton):
    max_kl, damping = 0.01, 1e-3
    policy, theta0, ep, old_mean, old_log_std = _drs_problem(seed=3)
    params = policy.params()  # the module's own parameters, changed in place
    names = list(params)
    trials = []

    def objective():
        trials.append(_detached(params))
        return surrogate_and_kl(policy, params, ep, old_mean, old_log_std)

    def loss_of(p):
        return surrogate_and_kl(policy, p, ep, old_mean, old_log_std)[0]

    x0 = _flatten(theta0)
    hess = torch.autograd.functional.hessian(
        lambda x: surrogate_and_kl(policy, _unflatten(x, theta0), ep, old_mean, old_log_std)[1], x0
    )
    x = x0.clone().requires_grad_(True)
    g = torch.autograd.grad(loss_of(_unflatten(x, theta0)), x)[0]
    before = float(loss_of(theta0))

    fisher = None
    if gauss_newton:
        dist = distribution_of(policy, names, ep.observations)
        fisher = lambda: gaussian_fisher_vector_product(dist, list(params.values()), ep.mask, damping)  # noqa: E731
    stats_ = trpo_step(list(params.values()), objective, max_kl=max_kl, damping=damping, cg_iters=60, fisher=fisher)
    assert stats_.accepted
    after = _detached(params)
    new_loss = float(loss_of(after))
    measured_kl = _np_mean_kl(policy, theta0, after, ep.observations, ep.mask)
    assert new_loss < before and measured_kl <= max_kl and measured_kl > 0
    assert abs(stats_.surrogate_before - before) < 1e-12
    assert abs(stats_.surrogate_after - new_loss) < 1e-12
    assert abs(stats_.kl - measured_kl) < 1e-10
    assert abs(stats_.step_fraction - 0.8**stats_.backtracks) < 1e-12
    assert len(trials) == 2 + stats_.backtracks  # one call for the direction, one per trial

    # the first trial is the natural-gradient step scaled to 1/2 d'(F + damping) d = max_kl
    d = _flatten(trials[1]) - x0
    fd = hess + damping * torch.eye(x0.numel(), dtype=torch.float64)
    assert abs(0.5 * float(d @ fd @ d) - max_kl) < 1e-6 * max_kl
    natural = torch.linalg.solve(fd, -g)
    cos = float(d @ natural) / float(d.norm() * natural.norm())
    assert cos > 1 - 1e-6  # CG stops once |r|^2 < 1e-10
    # the accepted step is that step times step_fraction
    torch.testing.assert_close(_flatten(after) - x0, stats_.step_fraction * d, rtol=1e-10, atol=1e-12)


def test_trpo_step_restores_parameters_when_every_trial_worsens():
    x0 = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    p = x0.clone().requires_grad_(True)
    calls = []

    def objective():
        calls.append(1)
        # the gradient at x0 is c (|.|' = 0 at 0), yet every step d changes the loss by
        # c.d + 100 |d|_1 > 0: no trial of the line search improves it
        loss = (p * c).sum() + 100.0 * (p - x0).abs().sum()
        kl = 0.5 * ((p - x0) ** 2).sum()
        return loss, kl

    stats_ = trpo_step([p], objective, max_kl=0.01, damping=1e-5, max_backtracks=7)
    assert not stats_.accepted
    assert stats_.backtracks == 7 and stats_.step_fraction == 0.0 and stats_.kl == 0.0
    assert stats_.surrogate_after == stats_.surrogate_before == pytest.approx(float((x0 * c).sum()))
    assert torch.equal(p.detach(), x0)
    assert len(calls) == 1 + 7


# ----------------------------------------------------------------------------- 9. Navigation2D


def _scripted_actions():
    """T=2 tasks x R=2 rollouts x H=6 scripted actions, in and out of the box."""
    a = np.zeros((2, 2, 6, 2))
    a[0, 0] = [[1.0, 0.5], [1.0, 0.5], [3.0, 3.0], [-9.0, 0.2], [0.0, 0.0], [1.0, 1.0]]  # to (0.2, 0.1), then stops
    a[0, 1] = [[5.0, -5.0], [-0.3, 0.7], [0.25, -40.0], [0.0, 0.0], [-2.0, 0.9], [0.1, 0.1]]
    a[1, 0] = [[0.07, 0.03], [0.5, -0.2], [-0.04, 0.09], [2.0, 2.0], [-0.3, -0.05], [0.0, 1e3]]
    a[1, 1] = [[-1e2, 1e2], [0.02, -0.02], [0.11, 0.0], [-0.1, 0.15], [0.6, -0.6], [0.0, 0.0]]
    return a


@pytest.mark.parametrize("action_scale", [0.1, 1.0])
def test_navigation_rewards_clipping_and_termination(action_scale):
    goals = np.array([[0.205, 0.103], [-0.3, 0.45]])  # (0.2, 0.1) is within 0.01 of goal 0
    actions = _scripted_actions()
    if action_scale == 1.0:  # the same first two moves of rollout (0, 0), reached through the clip
        actions[0, 0, :2] = [[7.0, 0.05], [0.1, 0.05]]
    env = Navigation2D(horizon=6, action_scale=action_scale)
    obs = env.reset(torch.tensor(goals, dtype=torch.float32), 2, _gen(0))
    assert obs.shape == (2, 2, 2) and torch.all(obs == 0)
    pos, rew, done, _ = _nav_replay(goals, actions, action_scale=action_scale)
    assert done[0, 0, 1] and not done[0, 0, 0]  # the scripted episode terminates on its second step
    assert not done[1].any()
    for h in range(6):
        res = env.step(torch.tensor(actions[:, :, h], dtype=torch.float32))
        assert res.observation.dtype == torch.float32 and res.reward.shape == (2, 2)
        np.testing.assert_allclose(res.observation.numpy(), pos[:, :, h], atol=1e-6)
        np.testing.assert_allclose(res.reward.numpy(), rew[:, :, h], atol=1e-6)
        np.testing.assert_array_equal(res.done.numpy(), done[:, :, h])
    # after termination: zero reward (though the point is 0.006 off the goal), frozen position
    assert rew[0, 0, 1] < -0.005 and np.all(rew[0, 0, 2:] == 0)
    np.testing.assert_allclose(pos[0, 0, 2:], np.broadcast_to([0.2, 0.1], (4, 2)), atol=1e-9)
    # every move of a running episode is inside the box of max_action
    steps = np.diff(np.concatenate([np.zeros((2, 2, 1, 2)), pos], 2), axis=2)
    assert np.abs(steps).max() <= 0.1 + 1e-12
    assert np.isclose(np.abs(steps).max(), 0.1)  # and the box was hit


def test_navigation_tasks_and_errors():
    env = Navigation2D(horizon=3)
    goals = env.sample_tasks(2000, _gen(7))
    assert goals.shape == (2000, 2) and goals.dtype == torch.float32
    assert float(goals.min()) >= -0.5 and float(goals.max()) <= 0.5
    assert float(goals.min()) < -0.45 and float(goals.max()) > 0.45  # spans the box
    assert torch.equal(goals, env.sample_tasks(2000, _gen(7)))
    assert not torch.equal(goals, env.sample_tasks(2000, _gen(8)))
    env.reset(goals[:3], 4, _gen(0))
    with pytest.raises(ValueError, match=r"actions must have shape \[3, 4, 2\].*got \[3, 2, 2\]"):
        env.step(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.full((3, 4, 2), float("nan")))
    with pytest.raises(RuntimeError, match="reset"):
        Navigation2D().step(torch.zeros(1, 1, 2))


# ----------------------------------------------------------------------------- 10. sampler


def _terminating_env(horizon=8):
    return Navigation2D(horizon=horizon, goal_low=-0.1, goal_high=0.1, success_radius=0.07)


def test_sample_episodes_log_probs_and_env_replay():
    policy = _policy(4, hidden=(4,))
    env = _terminating_env()
    tasks = env.sample_tasks(3, _gen(1))
    theta = _detached(policy.params())
    ep = sample_episodes(env, policy, theta, tasks, 5, _gen(2))
    assert ep.observations.shape == (3, 5, 8, 2) and ep.observations.dtype == torch.float64
    torch.testing.assert_close(
        ep.log_probs, log_prob(policy, theta, ep.observations, ep.actions), rtol=1e-10, atol=1e-10
    )
    obs, act = ep.observations.numpy(), ep.actions.numpy()
    want_lp = stats.norm.logpdf(act, loc=_np_mean(policy, theta, obs), scale=np.exp(_np_log_std(theta))).sum(-1)
    np.testing.assert_allclose(ep.log_probs.numpy(), want_lp, rtol=1e-10, atol=1e-10)

    # replaying the stored (unclipped) actions through a hand simulation gives the same episodes
    pos, rew, _, alive = _nav_replay(tasks.numpy(), act, radius=0.07)
    mask = ep.mask.numpy()
    np.testing.assert_array_equal(mask, alive)
    np.testing.assert_allclose(ep.rewards.numpy(), rew, atol=1e-6)
    np.testing.assert_allclose(obs[:, :, 1:], pos[:, :, :-1], atol=1e-6)
    assert np.all(obs[:, :, 0] == 0)
    assert (mask == 0).any() and (mask[:, :, -1] == 1).any()  # some terminate, some run the horizon
    assert np.all(np.diff(mask, axis=-1) <= 0)  # once masked, masked for good
    assert np.all(ep.rewards.numpy()[mask == 0] == 0)
    assert ep.env_steps == int(alive.sum())
    np.testing.assert_allclose(ep.task_returns().numpy(), (rew * alive).sum(-1).mean(-1), atol=1e-5)


def test_sample_episodes_per_task_parameters():
    policy = _policy(5, hidden=(4,))
    env = _terminating_env(horizon=6)
    t_, r_ = 3, 4
    tasks = env.sample_tasks(t_, _gen(1))
    theta = _detached(policy.params())
    per_task = {
        k: v.unsqueeze(0) + 0.4 * torch.randn((t_, *v.shape), generator=_gen(11), dtype=v.dtype)
        for k, v in theta.items()
    }
    ep = sample_episodes(env, policy, per_task, tasks, r_, _gen(3))
    # the sampler draws its noise [T, R, H, A] once, first thing from the generator
    noise = torch.randn(t_, r_, env.horizon, 2, generator=_gen(3)).double().numpy()
    obs = ep.observations.numpy()
    for i in range(t_):
        p_i = _task_params(per_task, i)
        want = _np_mean(policy, p_i, obs[i]) + np.exp(_np_log_std(p_i)) * noise[i]
        np.testing.assert_allclose(ep.actions[i].numpy(), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        ep.log_probs, log_prob(policy, per_task, ep.observations, ep.actions), rtol=1e-10, atol=1e-10
    )

    # deterministic: each task's episodes are those of its own parameters sampled alone
    det = sample_episodes(env, policy, per_task, tasks, r_, _gen(4), deterministic=True)
    for i in range(t_):
        alone = sample_episodes(
            env, policy, _task_params(per_task, i), tasks[i : i + 1], r_, _gen(5), deterministic=True
        )
        for field in ("observations", "actions", "rewards", "mask", "log_probs"):
            torch.testing.assert_close(getattr(det, field)[i], getattr(alone, field)[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            det.actions[i].numpy(), _np_mean(policy, _task_params(per_task, i), det.observations[i].numpy()), rtol=1e-10
        )
    # the tasks really act differently
    assert float((det.actions[0, 0, 0] - det.actions[1, 0, 0]).abs().max()) > 1e-3


# ----------------------------------------------------------------------------- 11. evaluation and training


def test_finetune_returns_shape_and_direct_sample():
    policy = _policy(6, hidden=(4,), double=False)
    env = CountingEnv(horizon=8, goal_low=-0.1, goal_high=0.1, success_radius=0.07)
    tasks = env.sample_tasks(3, _gen(0))
    res0 = finetune_returns(env, policy, tasks, rollouts=4, updates=0, inner_lr=0.1, generator=_gen(1))
    assert res0.returns.shape == (1, 3) and res0.success is None
    direct = sample_episodes(env.inner, policy, policy.params(), tasks, 4, _gen(1))
    torch.testing.assert_close(res0.returns[0], direct.task_returns(), rtol=0, atol=0)
    assert res0.env_steps == direct.env_steps == env.batches[0]["steps"]

    env.batches.clear()
    before = _detached(policy.params())
    res = finetune_returns(env, policy, tasks, rollouts=4, updates=2, inner_lr=0.1, generator=_gen(1))
    assert res.returns.shape == (3, 3)
    assert len(env.batches) == 3 and all(b["calls"] == env.horizon for b in env.batches)
    assert res.env_steps == sum(b["steps"] for b in env.batches)
    for k, b in enumerate(env.batches):
        assert abs(float(res.returns[k].mean()) - b["reward"] / b["episodes"]) < 1e-5
    torch.testing.assert_close(res.returns[0], res0.returns[0], rtol=0, atol=0)
    # replay the generator's sequence with a hand-written first-order step per task
    g, current = _gen(1), {k: v.detach() for k, v in policy.params().items()}
    for k in range(3):
        ep = sample_episodes(env.inner, policy, current, tasks, 4, g)
        torch.testing.assert_close(res.returns[k], ep.task_returns(), rtol=1e-6, atol=1e-6)
        ep = process_episodes(ep)
        stepped = {}
        for i in range(3):
            p_i = {n: (v[i] if k else v).clone().requires_grad_(True) for n, v in current.items()}
            loss = reinforce_loss(policy, p_i, ep.observations[i], ep.actions[i], ep.advantages[i], ep.mask[i])
            for (n, v), gr in zip(p_i.items(), torch.autograd.grad(loss, list(p_i.values()))):
                stepped.setdefault(n, []).append(v.detach() - 0.1 * gr)
        current = {n: torch.stack(v) for n, v in stepped.items()}
    for k, v in policy.params().items():  # evaluation leaves the initialisation alone
        assert torch.equal(v.detach(), before[k])
    with pytest.raises(ValueError, match="updates"):
        finetune_returns(env, policy, tasks, 4, -1, 0.1, _gen(0))


ALGORITHMS = {
    "maml-trpo": lambda p: MAMLTRPO(p, inner_lr=0.1),
    "fo-maml-trpo": lambda p: MAMLTRPO(p, inner_lr=0.1, first_order=True),
    "drs-trpo": lambda p: DRSTRPO(p, inner_lr=0.1),
    "drs-ppo": lambda p: DRSPPO(p, inner_lr=0.1, epochs=3),
}


def _train_once(name, seed=0):
    policy = _policy(7, hidden=(8,), double=False, jitter=0.0)
    algo = ALGORITHMS[name](policy)
    env = CountingEnv(horizon=10, goal_low=-0.15, goal_high=0.15, success_radius=0.08)
    init = copy.deepcopy(policy.state_dict())
    out = algo.train_iteration(env, meta_batch=4, rollouts=4, generator=_gen(seed))
    return algo, env, init, out


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_train_iteration_counts_steps_changes_and_is_deterministic(name):
    algo, env, init, out = _train_once(name)
    assert isinstance(out, dict) and all(isinstance(v, float) for v in out.values())
    batches = 2 if name.endswith("maml-trpo") else 1
    assert len(env.batches) == batches
    full = batches * 4 * 4 * 10
    assert out["env_steps"] == sum(b["steps"] for b in env.batches)
    assert out["env_steps"] < full  # some episodes terminated early and were not counted
    assert abs(out["return"] - env.batches[0]["reward"] / 16) < 1e-4
    if batches == 2:
        assert abs(out["return_adapted"] - env.batches[1]["reward"] / 16) < 1e-4
    if "trpo" in name:
        assert out["accepted"] == 1.0 and 0 < out["kl"] <= 0.01
    after = algo.policy.state_dict()
    assert any(not torch.equal(init[k], after[k]) for k in init)

    algo2, env2, init2, out2 = _train_once(name)
    assert out2 == out
    for k in init:
        assert torch.equal(init2[k], init[k]) and torch.equal(algo2.policy.state_dict()[k], after[k])
    algo3, _, _, _ = _train_once(name, seed=1)  # another seed: another update
    assert any(not torch.equal(algo3.policy.state_dict()[k], after[k]) for k in init)


def test_drs_trpo_iteration_kl_measured_independently():
    algo, env, init, out = _train_once("drs-trpo")
    # re-draw the very tasks and episodes of the iteration from the same seed with the initial policy
    policy0 = _policy(7, hidden=(8,), double=False, jitter=0.0)
    g = _gen(0)
    tasks = env.inner.sample_tasks(4, g)
    ep = sample_episodes(env.inner, policy0, policy0.params(), tasks, 4, g)
    before = {k: v.detach() for k, v in policy0.params().items()}
    after = {k: v.detach() for k, v in algo.policy.params().items()}
    kl = _np_mean_kl(policy0, before, after, ep.observations.double(), ep.mask.double())
    assert kl <= 0.01 * (1 + 1e-4)
    assert abs(kl - out["kl"]) < 1e-4 * 0.01 + 1e-7
