"""Multi-task learning as a meta-learner (Wang, Zhao & Li, ICML 2021).

Training (their Sec. 3 and 5): a shared body f_theta and one head per training
task or class, learned jointly, single level and first order:

    min_{theta, W}  (1/T) sum_i  L( W_{c(i)} f_theta(x) ; D_i^tr u D_i^ts )

* classification: W is ``[C_train, D]``, one bias-free row per training class; task
  i with classes (c_1..c_N) uses the rows W[c_1..c_N] as its N-way head, on
  L2-normalized features, with support and query merged into one loss;
* regression: one linear head (weights and bias) per training task (``task_ids``).

Test-time adaptation refits the head on the frozen support features, optionally
followed by ``finetune_steps`` SGD steps of the whole network on the support set:

* classification: multinomial L2 logistic regression with C = 3 on normalized
  features (Wang et al.'s protocol);
* regression, ``regression_refit="prior"`` (default): the posterior mean of the head
  under the Gaussian prior fitted to the learned training heads (an empirical-Bayes
  refit, our choice: the paper only treats classification). With v = (w, b),
  z = (f(x), 1), head mean mu and covariance Sigma (+ eps I) over the training heads,

      v* = argmin_v ||Z v - y||^2 + lambda (v - mu)^T Sigma^{-1} (v - mu)
         = (Z^T Z + lambda Sigma^{-1})^{-1} (Z^T y + lambda Sigma^{-1} mu).

  The training heads span the low-dimensional space in which tasks differ (for
  sinusoids, a sin x + b cos x), so a 5-shot refit stays in it; plain ridge
  (``"ridge"``: mu = 0, Sigma = I, unpenalized bias) over a 40-d feature space
  overfits 5 points: they do not determine 41 coefficients, and shrinking toward zero
  instead of toward the heads' span leaves the fit off the task family (not measured in a
  stored experiment; experiments/sinusoid_finn_table2 holds the prior refit's results).

Against Wang et al.'s code (GitHub AI-secure/multi-task-learning at 81ea1f5; "file:line"
below is there):

* heads: one bias-free row per training class, applied as ``F.linear(features, rows)``
  to the rows of the task's classes (lightning_mtl.py:119-122, 182-189); support and
  query are one training set (lightning_mtl.py:171, train.py:109); features
  L2-normalized in training by ``--norm_train_features`` (train.py:71, 129-132;
  utils.py:28-31), which every README command but FC100's passes (README.md:103-161);
  no temperature or scale; cross-entropy, mean over the task (train.py:136).
  ``head_init="official"`` is their initialisation (below). Their in-place relabelling
  ``labels[labels == c] = i`` (lightning_mtl.py:187-188) merges two classes when a
  global index c equals an earlier local index i; this code relabels correctly.
* training step: one task per forward (the data loader yields one task,
  lightning_utils.py:46-47; the body in training mode, lightning_mtl.py:176), and
  PyTorch Lightning's ``accumulate_grad_batches=meta_batch_size`` (train.py:201; default
  6, train.py:46; 1-2 in five of the eight README commands) divides each task's loss by
  the number accumulated (PL 1.0's ``TrainLoop.training_step``) before summing the
  gradients: one optimizer step on the mean over tasks of each task's loss.
  ``train_forward="per_task"`` is that step.
* test: frozen features in eval mode (running statistics), L2-normalized, and sklearn's
  ``LogisticRegression(C=3)`` on the support set (lightning_episodic_module.py:309-334,
  80): ``C=3``, ``test_batch_norm="running"``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..heads._checks import assert_on_device, reads_are_free
from ..heads.logistic import logistic_fit
from ..heads.ridge import ridge_fit
from ..registry import Registry
from ..tasks.batch import TaskBatch
from .anil import sub_params
from .base import SUPPLIED_ARGS, DataInfo, MetaAlgorithm, ModelMaker, Predictor, task_loss
from .embedding import autocast_off, embed_each_task, embed_tasks, embed_tasks_with_task_statistics, head_features
from .inner_loop import Params, check_positive, map_tasks, sgd_inner_loop

#: the per-class loss combinations MTL accepts as ``class_weighting`` (stateless loss-only methods).
CLASS_WEIGHTINGS = ("mean", "minmax", "scale_invariant", "rlw")


class MTL(MetaAlgorithm):
    """Shared body + per-class (or per-task) heads; head refit at test time.

    Args:
        body: embedding network ``[B, *x] -> [B, D]``.
        feature_dim: D.
        num_train_heads: how many heads are learned in training: one per training class
            (classification: the classes of the training split) or one per training task
            (regression: the size of the finite training task pool).
        task: ``"classification"`` or ``"regression"``.
        out_dim: regression output size d_y.
        normalize: L2-normalize features (Wang et al.; classification default).
        C: inverse L2 strength of the test-time logistic regression.
        ridge_lambda: ridge strength of the test-time regression refit with
            ``regression_refit="ridge"``.
        finetune_steps: optional SGD fine-tuning of body and refit head on each task's
            support loss after the refit (0: none).
        finetune_lr: learning rate of that fine-tuning.
        regression_refit: regression only: ``"prior"`` (default; the posterior mean of the
            head under the Gaussian prior fitted to the learned training heads, module
            docstring) or ``"ridge"`` (plain ridge regression, unpenalized bias).
        prior_lambda: weight lambda of the prior in the ``"prior"`` refit (smaller: closer
            to least squares; larger: closer to the mean training head).
        prior_eps: ridge eps added to the training heads' covariance Sigma before it is
            inverted (keeps Sigma^{-1} finite when the heads span fewer than D+1 dimensions).
        test_batch_norm: ``"running"`` (default, the paper's protocol: frozen features with
            the running statistics of the training classes) or ``"task"`` (at test time each
            task's support and query batches are normalized with their own statistics, as
            MAML does; a diagnostic for distribution shift between training and test classes).
            A body whose batch norm has no running statistics (e.g. a default
            ``Conv4Backbone()``) has only the second choice: it is run one task at a time in
            training and testing (:func:`~metabridge.algorithms.embedding.embed_tasks`), so
            no statistic is shared between tasks and scores do not depend on the
            evaluation batch size.
        head_init: classification heads' initialisation. ``"uniform"`` (default):
            U(-1/sqrt(D), 1/sqrt(D)), row norm about 0.58. ``"official"``: Wang et al.'s,
            ``kaiming_uniform_(a=sqrt(5))`` (the same U(-1/sqrt(D), 1/sqrt(D)): the same
            draws) times ``sqrt(num_train_heads / n_way)`` (lightning_mtl.py:119-121,
            ``n_train_class`` / ``train_ways``): row norm about 0.58 sqrt(C_train / N), e.g.
            2.1 for 64 classes 5-way. Needs ``n_way``; classification only.
        train_forward: how a training batch of T tasks goes through the body.
            ``"batched"`` (default): one forward of all T tasks' images, batch norm
            normalizing over the meta-batch and updating running statistics once per step.
            ``"per_task"``: one forward per task (Wang et al.'s training step, module
            docstring): each task is normalized with its own statistics, the running
            statistics are updated once per task, and the loss is the mean over tasks of each
            task's loss, so its gradient is the mean of T single-task gradients (their
            gradient accumulation). All T graphs are alive until the backward, so peak memory
            is that of ``"batched"``, not of one task as with their accumulation. The same
            for a body without running statistics, which is always run per task. Evaluation
            is unaffected.
        n_way: N of the training tasks, for ``head_init="official"`` (the registry fills it
            in from the data; unused otherwise).
        class_weighting: the bridge to the multi-task half: how the training loss combines the
            per-class losses when each training class is a task (Wang et al.'s MTL is hard
            sharing with one head per class). ``"mean"`` (default): the mean over all examples,
            as above. Otherwise the name of a stateless loss-only weighting method of
            :mod:`metabridge.multitask.weighting` applied to the T*N per-class losses of the batch
            (each the mean cross-entropy of one class of one task): ``"minmax"`` (CS330's
            min-max objective; ``class_weighting_temperature`` > 0 for its smooth version),
            ``"scale_invariant"`` (sum of log losses) or ``"rlw"`` (random weights).
            Classification only.
        class_weighting_temperature: ``"minmax"`` only: 0 for the exact max, t > 0 for
            t * logsumexp(L / t).
    """

    name: ClassVar[str] = "mtl"
    #: the body may run in bfloat16; normalisation, head logits and the test-time refit run in float32/64
    supports_autocast: ClassVar[bool] = True
    build_supplies: ClassVar[frozenset[str]] = SUPPLIED_ARGS | {"n_way"}

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        num_train_heads: int,
        task: Literal["classification", "regression"] = "classification",
        out_dim: int = 1,
        normalize: bool | None = None,
        C: float = 3.0,
        ridge_lambda: float = 1e-3,
        finetune_steps: int = 0,
        finetune_lr: float = 0.01,
        regression_refit: Literal["prior", "ridge"] = "prior",
        prior_lambda: float = 1e-2,
        prior_eps: float = 1e-4,
        test_batch_norm: Literal["running", "task"] = "running",
        head_init: Literal["uniform", "official"] = "uniform",
        train_forward: Literal["batched", "per_task"] = "batched",
        n_way: int | None = None,
        class_weighting: str = "mean",
        class_weighting_temperature: float = 0.0,
    ) -> None:
        super().__init__()
        self._check_args(
            feature_dim=feature_dim,
            num_train_heads=num_train_heads,
            task=task,
            C=C,
            ridge_lambda=ridge_lambda,
            finetune_steps=finetune_steps,
            finetune_lr=finetune_lr,
            regression_refit=regression_refit,
            prior_lambda=prior_lambda,
            prior_eps=prior_eps,
            test_batch_norm=test_batch_norm,
            head_init=head_init,
            train_forward=train_forward,
            n_way=n_way,
            class_weighting=class_weighting,
            class_weighting_temperature=class_weighting_temperature,
        )
        self.class_weighting, self.class_weighting_temperature = class_weighting, class_weighting_temperature
        self._class_weighters: dict[int, Any] = {}  # T*N -> weighting method (not a submodule)
        self.test_batch_norm = test_batch_norm
        self.head_init, self.train_forward, self.n_way = head_init, train_forward, n_way
        self.regression_refit, self.prior_lambda, self.prior_eps = regression_refit, prior_lambda, prior_eps
        self.body = body
        self.task = task
        self.normalize = (task == "classification") if normalize is None else normalize
        self.C, self.ridge_lambda = C, ridge_lambda
        self.finetune_steps, self.finetune_lr = finetune_steps, finetune_lr
        bound = 1.0 / math.sqrt(feature_dim)
        if task == "classification":
            heads = torch.empty(num_train_heads, feature_dim)
            if head_init == "official":
                # lightning_mtl.py:119-121: kaiming_uniform_(a=sqrt(5)) on [C, D] is U(+-1/sqrt(D)) (gain
                # sqrt(2/6) times sqrt(3/D)), drawn by the same uniform_ call as below, then scaled
                nn.init.kaiming_uniform_(heads, a=math.sqrt(5))
                assert n_way is not None
                heads.mul_(math.sqrt(num_train_heads / n_way))
            else:
                heads.uniform_(-bound, bound)
            self.heads = nn.Parameter(heads)
        else:
            self.heads = nn.Parameter(torch.empty(num_train_heads, feature_dim, out_dim).uniform_(-bound, bound))
            self.head_bias = nn.Parameter(torch.zeros(num_train_heads, out_dim))

    @staticmethod
    def _check_args(
        *,
        feature_dim: int,
        num_train_heads: int,
        task: str,
        C: float,
        ridge_lambda: float,
        finetune_steps: int,
        finetune_lr: float,
        regression_refit: str,
        prior_lambda: float,
        prior_eps: float,
        test_batch_norm: str,
        head_init: str,
        train_forward: str,
        n_way: int | None,
        class_weighting: str,
        class_weighting_temperature: float,
    ) -> None:
        """Validate :meth:`__init__`'s arguments (``ValueError`` naming the first bad one)."""
        if class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(
                f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)} (got {class_weighting!r}); "
                "the classes of a training batch change every step, so only stateless weighting "
                "methods apply to classes-as-tasks."
            )
        if class_weighting != "mean" and task != "classification":
            raise ValueError("class_weighting weights per-class losses: classification only.")
        if class_weighting_temperature < 0 or (class_weighting_temperature and class_weighting != "minmax"):
            raise ValueError(
                "class_weighting_temperature must be >= 0 and is used by class_weighting='minmax' only "
                f"(got {class_weighting_temperature} with {class_weighting!r})."
            )
        check_positive(feature_dim=feature_dim, num_train_heads=num_train_heads, C=C, ridge_lambda=ridge_lambda)
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression' (got {task!r}).")
        if finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0 (got {finetune_steps}).")
        if finetune_steps:
            check_positive(finetune_lr=finetune_lr)
        if regression_refit not in ("prior", "ridge"):
            raise ValueError(f"regression_refit must be 'prior' or 'ridge' (got {regression_refit!r}).")
        check_positive(prior_lambda=prior_lambda, prior_eps=prior_eps)
        if test_batch_norm not in ("running", "task"):
            raise ValueError(f"test_batch_norm must be 'running' or 'task' (got {test_batch_norm!r}).")
        if head_init not in ("uniform", "official"):
            raise ValueError(f"head_init must be 'uniform' or 'official' (got {head_init!r}).")
        if train_forward not in ("batched", "per_task"):
            raise ValueError(f"train_forward must be 'batched' or 'per_task' (got {train_forward!r}).")
        if head_init == "official":
            if task != "classification":
                raise ValueError(
                    "head_init='official' is Wang et al.'s classification head initialisation; "
                    "a regression MTL has head_init='uniform' only."
                )
            if n_way is None:
                raise ValueError(
                    "head_init='official' scales the heads by sqrt(num_train_heads / n_way) and needs "
                    "n_way, the N of the training tasks: pass MTL(..., n_way=N) (build_algorithm "
                    "fills it in from n_way)."
                )
        if n_way is not None:
            check_positive(n_way=n_way)

    @classmethod
    def build(cls, make_model: ModelMaker, data: DataInfo, **hparams: Any) -> MTL:
        """:meth:`MetaAlgorithm.build`, plus ``n_way`` from the data (for ``head_init="official"``)."""
        hparams.setdefault("n_way", data.n_way)
        return super().build(make_model, data, **hparams)

    def features(self, x: Tensor) -> Tensor:
        """``[T, S, *x] -> [T, S, D]`` (L2-normalized when ``normalize``), float32 or wider
        even when the body ran in bfloat16 under autocast (:func:`head_features`)."""
        if self.training:
            f = embed_each_task(self.body, x) if self.train_forward == "per_task" else embed_tasks(self.body, x)
        elif self.test_batch_norm == "task":
            f = embed_tasks_with_task_statistics(self.body, x)
        else:
            f = embed_tasks(self.body, x)
        f = head_features(f)
        with autocast_off(f):
            return F.normalize(f, dim=-1) if self.normalize else f

    # --- training: the joint multi-head loss -----------------------------------------
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Cross-entropy (MSE) of each task's support and query examples under its heads.

        The mean runs over all examples of all tasks; the tasks being of equal size, it is
        the mean over tasks of each task's mean loss, Wang et al.'s accumulated loss
        (module docstring), whichever ``train_forward``.
        """
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        f = self.features(x)
        with autocast_off(f):  # the heads in full precision; only the body runs under autocast
            return self._head_loss(f, y, batch)

    def _head_loss(self, f: Tensor, y: Tensor, batch: TaskBatch) -> Tensor:
        """The training loss of :meth:`meta_loss` from the features ``f`` of support + query."""
        if self.task == "classification":
            if batch.class_ids is None:
                raise ValueError("MTL classification needs the global class_ids of each task in the batch.")
            self._check_head_index(
                batch.class_ids,
                "a task uses class {} but MTL has {} head rows; set num_train_heads to the number of training classes.",
            )
            logits = torch.bmm(f, self.heads[batch.class_ids].transpose(1, 2))
            if self.class_weighting == "mean":
                return task_loss(logits, y)
            return self._class_weighted_loss(logits, y)
        if batch.task_ids is None:
            raise ValueError(
                "MTL regression needs task_ids: draw tasks from a finite pool (e.g. SinusoidFamily(num_tasks=M))."
            )
        self._check_head_index(
            batch.task_ids,
            "a task has id {} but MTL has {} heads; set num_train_heads to the size of the training task pool.",
        )
        pred = torch.bmm(f, self.heads[batch.task_ids]) + self.head_bias[batch.task_ids].unsqueeze(1)
        return task_loss(pred, y)

    def _check_head_index(self, ids: Tensor, message: str) -> None:
        """Require ``ids < num_train_heads`` (``message.format(max id, heads)`` otherwise).

        Checked exactly, with a ``ValueError``, when ``ids`` are on the host (the read is
        free). On an accelerator (a batch born on the GPU) reading them would synchronise
        every training step, so there it is a device-side assertion queued with the step
        (CUDA; :func:`~metabridge.heads._checks.assert_on_device`), and an out-of-range id
        can only come from a sampler over more classes than the heads were sized for."""
        heads = self.heads.shape[0]
        if not reads_are_free(ids):
            assert_on_device(ids.max() < heads, message.format("id >= num_train_heads", heads))
            return
        top = int(ids.max())
        if top >= heads:
            raise ValueError(message.format(top, heads))

    def _class_weighted_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """sum_c w_c L_c over the T*N (task, class) pairs of the batch, L_c the mean cross-entropy
        of that class's examples, w from the ``class_weighting`` method."""
        t, s, n = logits.shape
        ce = F.cross_entropy(logits.reshape(-1, n), y.reshape(-1), reduction="none").view(t, s)
        onehot = F.one_hot(y, n).to(ce.dtype)
        per_class = ((ce.unsqueeze(-1) * onehot).sum(1) / onehot.sum(1).clamp_min(1.0)).reshape(-1)
        weighter = self._class_weighters.get(t * n)
        if weighter is None:
            kwargs = {"temperature": self.class_weighting_temperature} if self.class_weighting == "minmax" else {}
            # through the registry (the multitask package registers its weightings on import), so the
            # few-shot algorithms do not import the multi-task half
            method = Registry.all_registries()["weightings"].get(self.class_weighting)
            weighter = self._class_weighters[t * n] = method(t * n, **kwargs)
        objective, _ = weighter.objective(per_class)
        return objective

    # --- testing: refit the head on frozen support features ----------------------------
    def _refit(self, fs: Tensor, batch: TaskBatch) -> tuple[Tensor, Tensor]:
        if self.task == "classification":
            w, b = logistic_fit(fs, batch.support_y, int(batch.n_way), self.C)  # type: ignore[arg-type]
        elif self.regression_refit == "ridge":
            w, b = ridge_fit(fs, batch.support_y, self.ridge_lambda, fit_bias=True)
        else:
            w, b = self._prior_refit(fs, batch.support_y)
        assert b is not None
        return w, b

    def _prior_refit(self, fs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior-mean head under the Gaussian prior of the training heads (module docstring)."""
        d_y = self.heads.shape[-1]
        heads = torch.cat([self.heads, self.head_bias.unsqueeze(1)], 1).double()  # [M, D+1, d_y]
        mu = heads.mean(0)  # [D+1, d_y]
        flat = heads.permute(2, 0, 1)  # [d_y, M, D+1]: one prior per output
        centred = flat - flat.mean(1, keepdim=True)
        eye = torch.eye(heads.shape[1], dtype=torch.float64, device=fs.device)
        cov = centred.transpose(1, 2) @ centred / max(heads.shape[0] - 1, 1) + self.prior_eps * eye
        # Cholesky, not LU: both systems are symmetric positive definite, and torch 2.13's CPU
        # LU (linalg.solve / linalg.inv) fails with 2+ threads for sizes >= ~200 (MKL DLASWP error).
        prec = torch.cholesky_inverse(torch.linalg.cholesky(cov))  # [d_y, D+1, D+1]
        z = torch.cat([fs, torch.ones_like(fs[..., :1])], -1).double()  # [T, S, D+1]
        y = ys.double()
        cols = []
        for j in range(d_y):  # d_y is tiny (1 for sinusoids); tasks are batched
            a = z.transpose(1, 2) @ z + self.prior_lambda * prec[j]
            rhs = z.transpose(1, 2) @ y[..., j : j + 1] + self.prior_lambda * (prec[j] @ mu[:, j : j + 1])
            cols.append(torch.cholesky_solve(rhs, torch.linalg.cholesky(a)))
        v = torch.cat(cols, -1).to(fs.dtype)  # [T, D+1, d_y]
        return v[:, :-1], v[:, -1]

    def adapt(self, batch: TaskBatch) -> Predictor:
        if (self.task == "classification") != batch.is_classification:
            raise ValueError(f"this MTL model was built for {self.task} but got the other kind of task.")
        with torch.no_grad():
            fs = self.features(batch.support_x)
            with autocast_off(fs):  # the refit solvers in full precision, also under autocast
                w, b = self._refit(fs, batch)
        if self.finetune_steps:
            return self._finetuned_predictor(batch, w, b)

        def predictor(xq: Tensor) -> Tensor:
            fq = self.features(xq)
            with autocast_off(fq):
                return torch.bmm(fq, w) + b.unsqueeze(1)

        return predictor

    def _finetuned_predictor(self, batch: TaskBatch, w: Tensor, b: Tensor) -> Predictor:
        """SGD on body and refit head per task, on the support loss (full fine-tuning)."""
        body_params = {f"body.{k}": v.detach() for k, v in self.body.named_parameters()}
        buffers = dict(self.body.named_buffers())

        def forward(p: Params, x: Tensor) -> Tensor:
            f = functional_call(self.body, {**sub_params(p, "body."), **buffers}, (x,))
            f = F.normalize(f, dim=-1) if self.normalize else f
            return f @ p["w"] + p["b"]

        names = [*body_params, "w", "b"]
        lr: dict[str, Tensor | float] = {k: self.finetune_lr for k in names}

        def adapt_one(shared: Params, wt: Tensor, bt: Tensor, xs: Tensor, ys: Tensor) -> Params:
            return sgd_inner_loop(
                forward, {**shared, "w": wt, "b": bt}, xs, ys, self.finetune_steps, lambda s: lr, True
            )

        with torch.enable_grad():
            fast = map_tasks(adapt_one, body_params, w, b, batch.support_x, batch.support_y, mode="loop")
        fast = {k: v.detach() for k, v in fast.items()}
        return lambda xq: map_tasks(lambda _, p, x: forward(p, x), None, fast, xq, mode="loop")
