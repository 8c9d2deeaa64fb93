"""The multi-task half of metabridge: models that share across tasks, loss-weighting
methods, negative-transfer diagnostics and multi-task benchmarks (CS330 lecture 2; the
methods' papers are cited in each file).

* :mod:`.tasks`: :class:`TaskSpec`, :class:`MultiTaskData`, :class:`MultiTaskBenchmark`;
* :mod:`.models`: hard sharing, task-conditioned (concat/add/multiply/FiLM), hypernetwork,
  MMoE, cross-stitch; :func:`build_mtl_model`, :func:`register_mtl_model`;
* :mod:`.weighting`: 18 methods on one contract; :func:`build_weighting`, :func:`register_weighting`;
* :mod:`.diagnostics`: Delta_m, mean rank, gradient conflict, TAG affinity and grouping, plots;
* :mod:`.data`: Multi-Fashion-MNIST, QM9; :func:`load_mtl_benchmark`, :func:`register_mtl_benchmark`;
* :mod:`.trainer`: :func:`train_multitask`; :mod:`.commands`: ``metabridge multitask``.
"""

from .data import available_mtl_benchmarks, load_mtl_benchmark, register_mtl_benchmark
from .diagnostics import delta_m, mean_rank, relative_changes
from .models import MultiTaskModel, TaskOutputs, available_mtl_models, build_mtl_model, register_mtl_model
from .tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec
from .trainer import MultiTaskResult, evaluate_split, train_multitask
from .weighting import Needs, Weighting, available_weightings, build_weighting, register_weighting, weighted_backward

__all__ = [
    "MultiTaskBenchmark",
    "MultiTaskData",
    "MultiTaskModel",
    "MultiTaskResult",
    "Needs",
    "TaskOutputs",
    "TaskSpec",
    "Weighting",
    "available_mtl_benchmarks",
    "available_mtl_models",
    "available_weightings",
    "build_mtl_model",
    "build_weighting",
    "delta_m",
    "evaluate_split",
    "load_mtl_benchmark",
    "mean_rank",
    "register_mtl_benchmark",
    "register_mtl_model",
    "register_weighting",
    "relative_changes",
    "train_multitask",
    "weighted_backward",
]
