"""A tiny generated multi-task benchmark for the tests (imported as a plugin by worker processes):
vector inputs x ~ N(0, I_8), task "cls" = sign pattern of two coordinates (4 classes), task "reg" =
a linear function of x plus noise (regression), task "reg2" = another one."""

import torch

from metabridge.multitask.data import register_mtl_benchmark
from metabridge.multitask.tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec


def _split(n: int, seed: int, tasks: list[TaskSpec], name: str) -> MultiTaskData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    cls = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    reg = x @ torch.linspace(-1, 1, 8) + 0.1 * torch.randn(n, generator=g)
    reg2 = x[:, :4].sum(1) * 3.0 + 5.0
    return MultiTaskData(x, torch.stack([cls.float(), reg, reg2], 1), tasks, name)


@register_mtl_benchmark("toy_mtl")
def load_toy(root=None, n_train: int = 512) -> MultiTaskBenchmark:
    tasks = [
        TaskSpec("cls", "classification", 4, unit="%"),
        TaskSpec("reg", "regression", 1, 0.0, 1.5),
        TaskSpec("reg2", "regression", 1, 5.0, 3.4),
    ]
    return MultiTaskBenchmark(
        "toy_mtl",
        _split(n_train, 0, tasks, "train"),
        _split(128, 1, tasks, "val"),
        _split(128, 2, tasks, "test"),
        input_kind="vector",
    )
