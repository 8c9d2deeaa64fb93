"""Linear-regression task family of Gao & Sener (NeurIPS 2020, "Modeling and
Optimization Trade-off in Meta-learning", Sec. 5: meta-linear regression).

A task tau is a triple ``(U, t, w)``:

* covariance ``Q = U diag(t) U^T`` with ``U`` drawn from the Haar measure on the
  orthogonal group O(p) and eigenvalues ``t_j ~ U(0, beta)`` i.i.d.;
* inputs ``x ~ N(0, Q)``;
* targets ``y = x^T w + eps`` with ``eps ~ N(0, noise_std^2)``.

Choices made here (documented because the DESIGN note leaves them open):

* **U and t are drawn per task.** The DESIGN note speaks of "tasks with
  Q = U diag(t) U^T", i.e. each task has its own input covariance. This is what
  makes the one-step MAML objective differ from the pooled (DRS) objective: the
  MAML weight ``A_tau = I - (alpha/N) X1^T X1`` varies from task to task, so tasks
  with large curvature are down-weighted. With a single shared Q, every task would
  see the same preconditioner and the comparison would be much less interesting.
* **Task weights.** ``w = w_mean + kappa (Q E[Q]^{-1} - I) w_mean + weight_std * xi``
  with ``xi ~ N(0, I_p)`` independent of ``(U, t)``. ``E[Q] = (beta/2) I`` (Haar
  invariance), so the middle term is ``kappa (2Q/beta - I) w_mean`` and has mean
  zero. ``kappa = 0`` (default) is the plain Gaussian family
  ``w ~ N(w_mean, weight_std^2 I)``, independent of the inputs. ``kappa != 0``
  couples a task's optimum to its own curvature (directions in which the task's
  inputs vary more than average carry proportionally larger weights). The
  coupling is our addition: without it the pre- and post-adaptation population
  optima coincide (both equal ``w_mean``), so DRS has no modeling error in the
  sense of Gao & Sener; see :mod:`metabridge.theory.linreg`.
* ``U`` is Haar on O(p), not SO(p): ``Q`` does not depend on the sign of ``det U``.

Haar sampling (Mezzadri 2007, "How to generate random matrices from the classical
compact groups"): QR-factorise a p x p standard Gaussian matrix ``G = U R`` and
multiply column j of ``U`` by ``sign(R_jj)``. Without the sign fix the law of ``U``
depends on the QR routine's sign convention and is not Haar.

A task is seen as N support ("inner") points and N query ("outer") points,
returned as a :class:`~metabridge.tasks.batch.TaskBatch` with ``support_x``
``[T, N, p]``, ``support_y`` ``[T, N, 1]``. Everything is drawn from a caller
supplied ``torch.Generator``, so evaluation tasks are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .batch import TaskBatch

__all__ = ["LinearRegressionFamily", "LinearTaskParams", "haar_orthogonal"]


def haar_orthogonal(num: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """``num`` independent Haar-distributed orthogonal ``dim x dim`` matrices, ``[num, dim, dim]``.

    Implements Mezzadri (2007), Sec. 5: ``G = U R`` (QR of a Gaussian matrix), then
    ``U <- U diag(sign(diag R))`` so that ``R`` has a positive diagonal, which makes
    the factorisation unique and ``U`` exactly Haar on O(dim).
    """
    if num <= 0 or dim <= 0:
        raise ValueError(f"haar_orthogonal needs positive num and dim (got {num}, {dim}).")
    g = torch.randn(num, dim, dim, generator=generator, dtype=dtype)
    u, r = torch.linalg.qr(g)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    sign = torch.where(d >= 0, torch.ones_like(d), -torch.ones_like(d))
    return u * sign[:, None, :]


@dataclass
class LinearTaskParams:
    """Parameters of ``T`` tasks: rotation ``[T, p, p]``, eigenvalues ``[T, p]``, weights ``[T, p]``."""

    rotation: Tensor
    eigenvalues: Tensor
    weights: Tensor

    @property
    def covariance(self) -> Tensor:
        """``Q = U diag(t) U^T``, ``[T, p, p]``."""
        return (self.rotation * self.eigenvalues[:, None, :]) @ self.rotation.transpose(-1, -2)


@dataclass(frozen=True)
class LinearRegressionFamily:
    """Gao & Sener's meta-linear-regression task distribution (see module docstring).

    Args:
        dim: input dimension ``p``.
        beta: eigenvalues of each task's covariance are ``U(0, beta)``.
        noise_std: standard deviation ``sigma`` of the label noise.
        weight_std: ``sigma_w``, spread of task weights around the mean.
        weight_mean: ``w_mean`` (length ``p``); default all ones.
        coupling: ``kappa`` in ``w = w_mean + kappa (2Q/beta - I) w_mean + sigma_w xi``.
        num_tasks: if set, tasks come from a fixed pool of this many tasks drawn with
            ``pool_seed`` and carry their pool index in ``task_ids`` (for MTL's
            one-head-per-training-task); otherwise every task is fresh.
        pool_seed: seed of the fixed pool.
    """

    dim: int = 8
    beta: float = 2.0
    noise_std: float = 0.5
    weight_std: float = 0.5
    weight_mean: tuple[float, ...] | None = None
    coupling: float = 0.0
    num_tasks: int | None = None
    pool_seed: int = 0

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"dim must be positive (got {self.dim}).")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive: eigenvalues are U(0, beta) (got {self.beta}).")
        if self.noise_std < 0 or self.weight_std < 0:
            raise ValueError(f"noise_std and weight_std must be >= 0 (got {self.noise_std}, {self.weight_std}).")
        if self.weight_mean is not None and len(self.weight_mean) != self.dim:
            raise ValueError(f"weight_mean has {len(self.weight_mean)} entries but dim is {self.dim}.")
        if self.num_tasks is not None and self.num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive or None for an infinite family (got {self.num_tasks}).")

    def mean_weights(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``w_mean`` as a ``[p]`` tensor."""
        if self.weight_mean is None:
            return torch.ones(self.dim, dtype=dtype)
        return torch.tensor(self.weight_mean, dtype=dtype)

    # ------------------------------------------------------------------ parameters
    def _draw_params(self, n: int, generator: torch.Generator, dtype: torch.dtype) -> LinearTaskParams:
        u = haar_orthogonal(n, self.dim, generator, dtype)
        t = self.beta * torch.rand(n, self.dim, generator=generator, dtype=dtype)
        w_mean = self.mean_weights(dtype)
        xi = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        w = w_mean + self.weight_std * xi
        if self.coupling != 0.0:
            # (2Q/beta - I) w_mean = U diag(2t/beta - 1) U^T w_mean, batched over tasks.
            coeff = u @ (((2.0 * t / self.beta) - 1.0) * (u.transpose(-1, -2) @ w_mean))[..., None]
            w = w + self.coupling * coeff[..., 0]
        return LinearTaskParams(u, t, w)

    def sample_params(
        self, num_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> tuple[LinearTaskParams, Tensor | None]:
        """Draw ``num_tasks`` task parameters (and pool indices when ``num_tasks`` pool is set)."""
        if num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive (got {num_tasks}).")
        if self.num_tasks is None:
            return self._draw_params(num_tasks, generator, dtype), None
        pool = self._draw_params(self.num_tasks, torch.Generator().manual_seed(self.pool_seed), dtype)
        ids = torch.randint(self.num_tasks, (num_tasks,), generator=generator)
        return LinearTaskParams(pool.rotation[ids], pool.eigenvalues[ids], pool.weights[ids]), ids

    # ------------------------------------------------------------------ data
    def sample_data(self, params: LinearTaskParams, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` points per task: ``x ~ N(0, Q)`` ``[T, n, p]`` and ``y = x^T w + eps`` ``[T, n]``."""
        t_count = params.weights.shape[0]
        dtype = params.weights.dtype
        z = torch.randn(t_count, n, self.dim, generator=generator, dtype=dtype)
        # row form of x = U diag(sqrt t) z: x^T = z^T diag(sqrt t) U^T.
        x = (z * params.eigenvalues.sqrt()[:, None, :]) @ params.rotation.transpose(-1, -2)
        eps = self.noise_std * torch.randn(t_count, n, generator=generator, dtype=dtype)
        y = (x @ params.weights[..., None])[..., 0] + eps
        return x, y

    def sample_with_params(
        self, num_tasks: int, k_shot: int, q_query: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> tuple[TaskBatch, LinearTaskParams]:
        """Draw tasks and their data; also return the task parameters (for exact losses)."""
        if k_shot <= 0 or q_query <= 0:
            raise ValueError(f"need positive k_shot and q_query (got {k_shot}, {q_query}).")
        params, ids = self.sample_params(num_tasks, generator, dtype)
        x, y = self.sample_data(params, k_shot + q_query, generator)
        batch = TaskBatch(
            support_x=x[:, :k_shot],
            support_y=y[:, :k_shot, None],
            query_x=x[:, k_shot:],
            query_y=y[:, k_shot:, None],
            task_ids=ids,
        )
        return batch, params

    def sample(
        self, num_tasks: int, k_shot: int, q_query: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> TaskBatch:
        """``num_tasks`` tasks of ``k_shot`` inner + ``q_query`` outer points (Gao & Sener: N + N)."""
        return self.sample_with_params(num_tasks, k_shot, q_query, generator, dtype)[0]
