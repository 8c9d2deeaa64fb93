"""The multi-task half of metabridge: models that share across tasks, loss-weighting
methods, negative-transfer diagnostics and multi-task benchmarks (CS330 lecture 2; the
methods' papers are cited in each file)."""

from .tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec

__all__ = ["MultiTaskBenchmark", "MultiTaskData", "TaskSpec"]
