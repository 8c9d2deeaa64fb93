"""Episode sampling: shapes, disjoint support/query, determinism, clear errors."""

from __future__ import annotations

import pytest
import torch

from metabridge.data.class_dataset import ClassDataset
from metabridge.tasks.episodes import EpisodeSampler


def _dataset(num_classes: int = 12, per_class: int = 9, uneven: bool = True) -> ClassDataset:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    if uneven:  # drop some images of the first classes so that class sizes differ
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[:3] = False
        labels = labels[keep]
    n = len(labels)
    # every image is unique: its first pixels encode its index
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ClassDataset(images, labels, [f"c{i}" for i in range(num_classes)], name="toy")


def _image_ids(x: torch.Tensor) -> torch.Tensor:
    px = (x * 255).round().long()
    return px[..., 0, 0, 0] + 256 * px[..., 0, 0, 1]


def test_episode_shape_labels_and_disjoint_sets():
    ds = _dataset()
    sampler = EpisodeSampler(ds, n_way=5, k_shot=2, q_query=3)
    batch = sampler.sample(50, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (50, 10, 1, 4, 4)
    assert batch.query_x.shape == (50, 15, 1, 4, 4)
    assert batch.n_way == 5 and batch.class_ids.shape == (50, 5)
    for t in range(50):
        assert torch.bincount(batch.support_y[t], minlength=5).tolist() == [2] * 5
        assert torch.bincount(batch.query_y[t], minlength=5).tolist() == [3] * 5
        assert len(set(batch.class_ids[t].tolist())) == 5
        s_ids, q_ids = _image_ids(batch.support_x[t]), _image_ids(batch.query_x[t])
        assert len(set(s_ids.tolist()) | set(q_ids.tolist())) == 25  # no image twice
        # every image belongs to the class its label names
        for ids, ys in ((s_ids, batch.support_y[t]), (q_ids, batch.query_y[t])):
            assert torch.equal(ds.labels[ids], batch.class_ids[t][ys])


def test_same_seed_same_episodes_other_seed_different():
    sampler = EpisodeSampler(_dataset(), 5, 1, 4)
    a = list(sampler.fixed_episodes(40, seed=7, batch_size=16))
    b = list(sampler.fixed_episodes(40, seed=7, batch_size=16))
    c = list(sampler.fixed_episodes(40, seed=8, batch_size=16))
    assert [x.support_x.shape[0] for x in a] == [16, 16, 8]
    assert all(torch.equal(x.support_x, y.support_x) and torch.equal(x.class_ids, y.class_ids) for x, y in zip(a, b))
    assert not all(torch.equal(x.class_ids, y.class_ids) for x, y in zip(a, c))


def _cat(batches, name):
    return torch.cat([getattr(b, name) for b in batches])


def test_fixed_episodes_do_not_depend_on_the_batch_size():
    """Evaluating with another batch size must not change which tasks are scored."""
    from metabridge.experiment import RegressionSource
    from metabridge.tasks.sinusoid import SinusoidFamily

    sampler = EpisodeSampler(_dataset(), 5, 2, 3)
    regression = RegressionSource(SinusoidFamily(), 5, 10)
    for source, fields in ((sampler, ("support_x", "query_x", "class_ids")), (regression, ("support_x", "query_y"))):
        one = list(source.fixed_episodes(37, seed=3, batch_size=37))
        small = list(source.fixed_episodes(37, seed=3, batch_size=5))
        assert len(one) == 1 and len(small) == 8 and small[-1].num_tasks == 2
        for name in fields:
            assert torch.equal(_cat(one, name), _cat(small, name)), (type(source).__name__, name)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        next(sampler.fixed_episodes(10, seed=0, batch_size=0))


def test_sampling_covers_all_classes_and_instances():
    ds = _dataset(uneven=False)
    batch = EpisodeSampler(ds, 3, 1, 0).sample(2000, torch.Generator().manual_seed(1))
    counts = torch.bincount(_image_ids(batch.support_x).flatten(), minlength=len(ds))
    assert (counts > 0).all()  # every image is reachable
    expected = 2000 * 3 / len(ds)
    assert (counts.float() - expected).abs().max() < 0.5 * expected  # roughly uniform


def test_impossible_episodes_name_the_fix():
    ds = _dataset(num_classes=4)
    with pytest.raises(ValueError, match="fewer than n_way=5"):
        EpisodeSampler(ds, 5, 1, 1)
    with pytest.raises(ValueError, match=r"lower k_shot \+ q_query to at most 9"):
        EpisodeSampler(ds, 3, 5, 5)
    with pytest.raises(ValueError, match="k_shot >= 1"):
        EpisodeSampler(ds, 3, 0, 5)
