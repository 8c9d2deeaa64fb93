"""The linear feature baseline of Duan et al. (ICML 2016, rllab), fitted per task in one batched solve.

Features of step t of an episode with observation s_t (clipped to [-10, 10]) and
u = t / 100:  phi(s_t, t) = [s_t, s_t^2, u, u^2, u^3, 1], zero after the episode
terminated. The baseline is the ridge regression of the discounted returns on them,

    w = argmin_w ||Phi w - G||^2 + c ||w||^2  =  (Phi' Phi + c I)^{-1} Phi' G,

with c = 1e-5, multiplied by 10 (up to 5 times) for a task whose solve is not finite,
as rllab's ``LinearFeatureBaseline``. One system per task, all T solved together in
float64 (``torch.linalg.solve`` on a batch).
"""

from __future__ import annotations

import torch
from torch import Tensor


def baseline_features(observations: Tensor, mask: Tensor) -> Tensor:
    """phi for every step: observations ``[T, R, H, O]``, mask ``[T, R, H]`` -> ``[T, R, H, 2 O + 4]``."""
    obs = observations.clamp(-10.0, 10.0)
    h = observations.shape[2]
    u = (torch.arange(h, device=obs.device, dtype=obs.dtype) / 100.0).view(1, 1, h, 1).expand(*obs.shape[:3], 1)
    ones = torch.ones_like(u)
    feats = torch.cat([obs, obs * obs, u, u * u, u * u * u, ones], dim=-1)
    return feats * mask[..., None]


def fit_linear_baseline(
    features: Tensor, returns: Tensor, mask: Tensor, reg_coeff: float = 1e-5, attempts: int = 5
) -> Tensor:
    """Per-task ridge weights ``[T, F]`` (float64) for features ``[T, R, H, F]`` and returns ``[T, R, H]``."""
    t, f = features.shape[0], features.shape[-1]
    x = features.reshape(t, -1, f).double()
    y = (returns * mask).reshape(t, -1).double()
    gram = x.transpose(1, 2) @ x
    rhs = (x.transpose(1, 2) @ y[..., None]).squeeze(-1)
    eye = torch.eye(f, dtype=torch.float64, device=x.device)
    weights = torch.full((t, f), float("nan"), dtype=torch.float64, device=x.device)
    reg = reg_coeff
    todo = torch.ones(t, dtype=torch.bool, device=x.device)
    for _ in range(attempts):
        sol = torch.linalg.solve_ex(gram + reg * eye, rhs)[0]  # NaN, not an exception, for a singular task
        ok = torch.isfinite(sol).all(-1) & todo
        weights = torch.where(ok[:, None], sol, weights)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
        reg *= 10.0
    return torch.nan_to_num(weights)


def predict_linear_baseline(weights: Tensor, features: Tensor) -> Tensor:
    """V(s_t) = phi(s_t, t) . w_task, shape ``features.shape[:-1]``."""
    return torch.einsum("trhf,tf->trh", features.double(), weights).to(features.dtype)


def linear_baseline_values(observations: Tensor, returns: Tensor, mask: Tensor, reg_coeff: float = 1e-5) -> Tensor:
    """Fit the baseline of each task on its own episodes and return its values ``[T, R, H]``."""
    feats = baseline_features(observations, mask)
    return predict_linear_baseline(fit_linear_baseline(feats, returns, mask, reg_coeff), feats) * mask
