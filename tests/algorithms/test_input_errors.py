"""A batch that misfits the network (image channels, number of classes) ends in one line naming the fix,
for every algorithm built by the registry, not in torch's convolution or cross-entropy text."""

from __future__ import annotations

import pytest
import torch

import metabridge as mb


def sampler(channels: int, n_way: int = 5) -> mb.EpisodeSampler:
    images = torch.randint(
        0, 256, (60, channels, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    data = mb.ClassDataset(images, torch.arange(10).repeat_interleave(6), [f"c{i}" for i in range(10)])
    return mb.EpisodeSampler(data, n_way=n_way, k_shot=1, q_query=2)


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "protonet", "metaoptnet", "mtl"])
def test_three_channel_images_on_a_one_channel_network_name_in_channels(name: str) -> None:
    kw = {"num_train_classes": 10} if name == "mtl" else {}
    algorithm = mb.build_algorithm(name, model="conv4", n_way=5, **kw)
    with pytest.raises(
        ValueError, match=r"takes 1-channel images but the batch has 3 channels: build it with in_channels=3"
    ):
        algorithm.meta_loss(sampler(3).sample(2, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "reptile"])
def test_an_algorithm_built_for_fewer_classes_names_n_way(name: str) -> None:
    algorithm = mb.build_algorithm(name, model="conv4", n_way=3, inner_steps=1)
    with pytest.raises(ValueError, match=r"predicts fewer classes .* build it with n_way equal to the episodes' n_way"):
        algorithm.meta_loss(sampler(1).sample(2, torch.Generator().manual_seed(0)))


def test_adapt_explains_the_misfit_too() -> None:
    algorithm = mb.build_algorithm("protonet", model="conv4", n_way=5)
    with pytest.raises(ValueError, match="in_channels=3"):
        algorithm.predict(sampler(3).sample(1, torch.Generator().manual_seed(0)))


class Failing(mb.MetaAlgorithm):
    """Raises a given error from meta_loss and adapt."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def meta_loss(self, batch: mb.TaskBatch) -> torch.Tensor:
        raise self.error

    def adapt(self, batch: mb.TaskBatch) -> mb.Predictor:
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("some other failure"), IndexError("list index out of range")])
def test_other_errors_pass_through_unchanged(error: Exception) -> None:
    batch = sampler(1).sample(1, torch.Generator().manual_seed(0))
    for call in (Failing(error).meta_loss, Failing(error).adapt):
        with pytest.raises(type(error)) as info:
            call(batch)
        assert info.value is error


def test_channels_last_images_are_refused_with_the_permute_fix() -> None:
    images = torch.zeros(20, 28, 28, 1, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"channels-last .* images.permute\(0, 3, 1, 2\)"):
        mb.ClassDataset(images, torch.arange(2).repeat_interleave(10), ["a", "b"])
    mb.ClassDataset(images.permute(0, 3, 1, 2).contiguous(), torch.arange(2).repeat_interleave(10), ["a", "b"])
