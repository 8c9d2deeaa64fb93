r"""NTK-parameterised MLPs and their empirical neural tangent kernel.

Wang, Zhao & Li (ICML 2021, Sec. 4) state their closeness of MTL and GBML predictors for
networks in the *kernel regime*: as the width grows the network stays close to its
linearisation around the initial parameters and gradient descent on it is kernel
regression with the neural tangent kernel (NTK) of Jacot, Gabriel & Hongler (NeurIPS
2018); Lee et al. (NeurIPS 2019, "Wide neural networks of any depth evolve as linear
models under gradient descent") show this for any depth. The regime needs the NTK
parameterisation and plain gradient descent with a width-independent step size:

* :class:`NTKLinear`: weights and biases drawn N(0, 1), forward
  ``y = W x / sqrt(fan_in) + beta * b``. Every entry of ``W`` is O(1), and a step of
  size ``eta`` moves each by O(eta / sqrt(width)), so the hidden features move by
  O(1 / sqrt(width)) while the output moves by O(1) (the lazy regime). PyTorch's default
  (``nn.Linear``: weights U(+-1/sqrt(fan_in)), no forward factor) has the same forward
  pass at init but not the same training dynamics; with Adam, whose per-entry step does
  not shrink with the width, the hidden-to-hidden layers move *more* relative to their
  size as the width grows.
* :func:`ntk_mlp`: an :class:`~metabridge.models.mlp.MLP` whose layers are NTK
  parameterised. The library's algorithms read ``body``, ``head`` and ``feature_dim``,
  so the head stays an ``nn.Linear``; the ``1 / sqrt(width)`` factor of the last layer
  is the last module of the body (features ``relu(h) / sqrt(width)``) and the head's
  weight is drawn N(0, 1) (its bias N(0, 1), times ``beta`` folded into the draw).
* :func:`empirical_ntk`: ``Theta(x, x') = J(x) J(x')^T`` with ``J`` the Jacobian of the
  network output in all parameters, from ``torch.func`` (``jacrev`` under ``vmap``).
* :func:`kernel_gd_prediction`: the linearised model's prediction after ``steps`` of
  full-batch gradient descent on the mean squared error (Lee et al. 2019, their
  linearised-dynamics solution, here in discrete time)::

      f_t(x) = f_0(x) + Theta(x, X) Theta(X, X)^{-1} (I - (I - (2 eta / n) Theta(X, X))^t) (Y - f_0(X))

  the independent reference that a trained wide network must approach.
* :func:`feature_movement`: relative change of the body's features between two
  networks, ``||phi_1(x) - phi_0(x)||_F / ||phi_0(x)||_F``: the direct measure of how lazy
  a training run was.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from metabridge.models.mlp import MLP

__all__ = ["NTKLinear", "Scale", "ntk_mlp", "empirical_ntk", "kernel_gd_prediction", "feature_movement"]


class NTKLinear(nn.Module):
    """``y = W x / sqrt(fan_in) + beta * b`` with ``W``, ``b`` drawn N(0, 1)."""

    def __init__(self, fan_in: int, fan_out: int, beta: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.randn(fan_out))
        self.scale, self.beta = 1.0 / math.sqrt(fan_in), beta

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (x @ self.weight.T) + self.beta * self.bias


class Scale(nn.Module):
    """Multiplies by a constant (the last layer's ``1 / sqrt(fan_in)``, moved into the body)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x


def ntk_mlp(in_dim: int, out_dim: int, width: int, depth: int, beta: float = 1.0) -> MLP:
    """A ``depth``-hidden-layer ReLU MLP of ``width`` in the NTK parameterisation.

    Same interface as :class:`~metabridge.models.mlp.MLP` (``body``, ``head``,
    ``feature_dim``); the head's effective bias is ``beta * b`` with ``b`` ~ N(0, 1)."""
    if min(in_dim, out_dim, width, depth) <= 0:
        raise ValueError(f"ntk_mlp sizes must be positive (in_dim={in_dim}, width={width}, depth={depth}).")
    model = MLP(in_dim, out_dim, hidden=(width,) * depth)
    layers: list[nn.Module] = []
    prev = in_dim
    for _ in range(depth):
        layers += [NTKLinear(prev, width, beta), nn.ReLU()]
        prev = width
    model.body = nn.Sequential(*layers, Scale(1.0 / math.sqrt(width)))
    with torch.no_grad():
        model.head.weight.normal_()
        model.head.bias.normal_().mul_(beta)
    return model


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor) -> Tensor:
    """``Theta[a, b] = sum_p d f(x1_a)/d p * d f(x2_b)/d p`` for a scalar-output ``model``.

    ``x1 [N, D]``, ``x2 [M, D]`` -> ``[N, M]``; per-example Jacobians from
    ``vmap(jacrev(f))`` over all parameters (buffers held fixed)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (x[None],)).reshape(())

    def jac(x: Tensor) -> dict[str, Tensor]:
        return vmap(jacrev(f), in_dims=(None, 0))(params, x)  # type: ignore[no-any-return]

    j1, j2 = jac(x1), jac(x2)
    return sum((j1[k].flatten(1) @ j2[k].flatten(1).T for k in params), torch.zeros(x1.shape[0], x2.shape[0]).to(x1))


def kernel_gd_prediction(
    theta_train: Tensor, theta_test: Tensor, f0_train: Tensor, f0_test: Tensor, y: Tensor, lr: float, steps: int
) -> Tensor:
    """The linearised network's test outputs after ``steps`` of gradient descent on ``mean (f - y)^2``.

    ``theta_train = Theta(X, X) [n, n]``, ``theta_test = Theta(x, X) [m, n]``, ``f0_*`` the
    initial outputs, ``y [n]``. One step is ``f <- f - (2 lr / n) Theta (f - y)`` on the train
    set; the closed form runs in the eigenbasis of ``Theta(X, X)`` (a zero eigenvalue
    contributes ``2 lr steps / n``, its limit)."""
    n = y.shape[0]
    evals, evecs = torch.linalg.eigh(theta_train)
    decay = (1.0 - (2.0 * lr / n) * evals) ** steps
    safe = torch.where(evals.abs() > 1e-12, evals, torch.ones_like(evals))
    gain = torch.where(evals.abs() > 1e-12, (1.0 - decay) / safe, torch.full_like(evals, 2.0 * lr * steps / n))
    residual = evecs.T @ (y - f0_train)
    return f0_test + theta_test @ (evecs @ (gain * residual))


def feature_movement(body0: nn.Module, body1: nn.Module, x: Tensor) -> float:
    """``||phi_1(x) - phi_0(x)||_F / ||phi_0(x)||_F`` for two bodies on inputs ``x``."""
    with torch.no_grad():
        f0, f1 = body0(x), body1(x)
        return float((f1 - f0).norm() / f0.norm().clamp_min(1e-30))
