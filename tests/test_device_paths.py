"""GPU-ready hot paths, checked without a GPU.

* Episodes gathered on the sampler's device are the episodes a host sampler draws from the
  same generator state (``meta`` stands in for an accelerator: shapes, dtypes and devices,
  and the generator's draws, which are all the device sees of the indices).
* The accelerator paths of the heads and of MTL read nothing on the host (or once per
  solver iteration); "accelerator" is simulated on CPU tensors by forcing
  ``reads_are_free`` to False, and host reads are counted at the Python level.
* Those paths give the host path's results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from metabridge.algorithms import MTL
from metabridge.config import ExperimentConfig
from metabridge.data import registry
from metabridge.data.augment import Augment
from metabridge.data.class_dataset import ClassDataset, host_to_device
from metabridge.heads import logistic as logistic_mod
from metabridge.heads import svm as svm_mod
from metabridge.heads.logistic import logistic_fit
from metabridge.heads.prototypes import prototype_logits
from metabridge.heads.ridge import r2d2_logits
from metabridge.heads.svm import metaoptnet_svm_logits
from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.episodes import EpisodeSampler

AUGMENT = Augment(crop_padding=2, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4)


def _rgb_dataset(num_classes: int = 10, per_class: int = 8, size: int = 8, seed: int = 0) -> ClassDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    images = torch.randint(0, 256, (len(labels), 3, size, size), generator=g, dtype=torch.uint8)
    return ClassDataset(images, labels, [f"c{i}" for i in range(num_classes)], name="rgb")


def _tensors(batch: TaskBatch) -> dict[str, torch.Tensor]:
    return {k: getattr(batch, k) for k in ("support_x", "support_y", "query_x", "query_y", "class_ids")}


# --------------------------------------------------------------------- data on the device
@pytest.mark.parametrize("augment", [None, AUGMENT])
def test_a_device_sampler_draws_the_host_samplers_episodes(augment) -> None:
    data = _rgb_dataset()
    host = EpisodeSampler(data, 4, 2, 3, augment=augment)
    built = EpisodeSampler(data, 4, 2, 3, augment=augment, device="cpu")
    moved = host.to("meta")
    g1, g2, g3 = (torch.Generator().manual_seed(7) for _ in range(3))
    for _ in range(2):
        a, b, m = host.sample(3, g1), built.sample(3, g2), moved.sample(3, g3)
        for key, value in _tensors(a).items():
            assert torch.equal(value, _tensors(b)[key]), key
            other = _tensors(m)[key]
            assert other.device.type == "meta", key  # born on the device
            assert other.shape == value.shape and other.dtype == value.dtype, key
        # the device sampler drew exactly what the host sampler drew from the CPU generator
        # (indices and augmentation parameters), so the streams stay in step across devices
        assert torch.equal(g1.get_state(), g3.get_state())
    assert moved.device.type == "meta" and host.device.type == "cpu"
    assert moved.dataset.labels.device.type == "cpu"  # the class index stays on the host
    assert moved.dataset.class_index() is data.class_index()
    assert torch.equal(
        host.sample(2, torch.Generator().manual_seed(3)).query_x,
        built.sample(2, torch.Generator().manual_seed(3)).query_x,
    )


def test_fixed_episodes_are_gathered_on_the_device_and_match() -> None:
    data = _rgb_dataset()
    host, moved = EpisodeSampler(data, 3, 1, 2), EpisodeSampler(data, 3, 1, 2).to("meta")
    a, m = list(host.fixed_episodes(5, seed=4, batch_size=2)), list(moved.fixed_episodes(5, seed=4, batch_size=2))
    assert [b.num_tasks for b in a] == [b.num_tasks for b in m] == [2, 2, 1]
    assert all(b.support_x.device.type == "meta" and b.class_ids.device.type == "meta" for b in m)
    # the indices come from the host in both: the same fixed episodes
    classes, idx = host.sample_indices(5, torch.Generator().manual_seed(4))
    assert torch.equal(torch.cat([b.class_ids for b in a]), classes)


def test_a_batch_already_on_the_device_is_not_copied() -> None:
    batch = EpisodeSampler(_rgb_dataset(), 3, 1, 2).to("meta").sample(2, torch.Generator().manual_seed(0))
    moved = batch.to("meta")
    assert all(getattr(moved, k) is getattr(batch, k) for k in ("support_x", "query_x", "support_y", "class_ids"))
    host = EpisodeSampler(_rgb_dataset(), 3, 1, 2).sample(2, torch.Generator().manual_seed(0))
    assert host.to("cpu").support_x is host.support_x
    assert host_to_device(host.support_x, "meta").device.type == "meta"


def test_dataset_to_moves_the_pixels_only() -> None:
    data = _rgb_dataset()
    assert data.to("cpu") is data and data.device.type == "cpu"
    moved = data.to("meta")
    assert moved.images.device.type == "meta" and moved.labels.device.type == "cpu"
    assert moved.nbytes == data.nbytes == data.images.numel()
    assert moved.class_names == data.class_names and len(moved) == len(data)
    sub = moved.subset_classes([3, 1])
    assert sub.images.device.type == "meta" and sub.num_classes == 2 and len(sub) == 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_sampler_draws_the_host_samplers_pixels() -> None:  # pragma: no cover - GPU machines
    data = _rgb_dataset()
    host, dev = EpisodeSampler(data, 4, 2, 3), EpisodeSampler(data, 4, 2, 3, device="cuda")
    a, b = host.sample(3, torch.Generator().manual_seed(1)), dev.sample(3, torch.Generator().manual_seed(1))
    for key, value in _tensors(a).items():
        assert _tensors(b)[key].is_cuda and torch.equal(value, _tensors(b)[key].cpu()), key
    aug_h, aug_d = (
        EpisodeSampler(data, 4, 2, 3, augment=AUGMENT),
        EpisodeSampler(data, 4, 2, 3, augment=AUGMENT, device="cuda"),
    )
    a, b = aug_h.sample(3, torch.Generator().manual_seed(1)), aug_d.sample(3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.query_x, b.query_x.cpu(), atol=1e-5, rtol=0)


def _toy_loader(root, split, download=False, **kw) -> ClassDataset:
    return _rgb_dataset(seed={"train": 0, "val": 1, "test": 2}[split])


@contextlib.contextmanager
def _toy_registered() -> Iterator[str]:
    registry.register_dataset("devicetoy", _toy_loader)
    try:
        yield "devicetoy"
    finally:
        registry.unregister_dataset("devicetoy")


def test_the_experiment_keeps_a_split_on_cuda_when_it_fits(monkeypatch) -> None:
    from metabridge import experiment

    config = ExperimentConfig(task="devicetoy", n_way=3, k_shot=1, q_query=2, algorithm="protonet", device="auto")
    data = _rgb_dataset()
    assert experiment.data_device(config, data) is None or torch.cuda.is_available()  # CPU here: host
    assert experiment.data_device(config.model_copy(update={"device": "cpu"}), data) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * data.nbytes, 8 * data.nbytes))
    assert experiment.data_device(config, data) == torch.device("cuda")
    assert experiment.data_device(config, data, device="cpu") is None  # where the caller will run it
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * data.nbytes, 8 * data.nbytes))
    assert experiment.data_device(config, data) is None  # more than a quarter of the free memory
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * data.nbytes, 8 * data.nbytes))
    monkeypatch.setenv("METABRIDGE_DATA_ON_DEVICE", "0")
    assert experiment.data_device(config, data) is None


def test_build_task_source_puts_the_sampler_on_the_data_device(monkeypatch) -> None:
    from metabridge import experiment

    seen: list = []

    def fake_device(config, dataset, device=None):
        seen.append(device)
        return torch.device("meta")

    monkeypatch.setattr(experiment, "data_device", fake_device)
    with _toy_registered() as name:
        config = ExperimentConfig(task=name, n_way=3, k_shot=1, q_query=2, algorithm="protonet", augment="color")
        train = experiment.build_task_source(config, "train")
        test = experiment.build_task_source(config, "test", device="cpu")
    assert seen == [None, "cpu"]
    assert train.device.type == "meta" and test.device.type == "meta"
    batch = train.sample(2, torch.Generator().manual_seed(0))  # augmented on the device
    assert batch.support_x.device.type == "meta" and batch.support_x.shape == (2, 3, 3, 8, 8)


# ------------------------------------------------------------- no host reads on devices
_READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


@pytest.fixture()
def host_reads(monkeypatch) -> list[str]:
    """Count Python-level reads of tensor values on the host."""
    seen: list[str] = []
    for name in _READS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _orig=original, **kwargs):
            seen.append(_name)
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return seen


@pytest.fixture()
def accelerator(monkeypatch) -> None:
    """Take the accelerator paths on CPU tensors."""
    from metabridge.algorithms import mtl
    from metabridge.heads import _checks, ridge

    for module in (_checks, logistic_mod, svm_mod, ridge, mtl):
        monkeypatch.setattr(module, "reads_are_free", lambda t: False)


def _features(t: int = 4, n: int = 3, k: int = 2, q: int = 3, d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(t, n, d, generator=g)

    def draw(m):
        y = torch.arange(n).repeat_interleave(m).expand(t, -1).clone()
        return centers.gather(1, y[..., None].expand(-1, -1, d)) + torch.randn(t, n * m, d, generator=g), y

    (xs, ys), (xq, _) = draw(k), draw(q)
    return xs, ys, xq, n


def test_head_checks_read_nothing_on_a_device(accelerator, host_reads) -> None:
    xs, ys, xq, n = _features()
    xs.requires_grad_(True)
    lam = torch.tensor(2.0)
    logits = [prototype_logits(xs, ys, xq, n), r2d2_logits(xs, ys, xq, n, lam), r2d2_logits(xs, ys, xq, n, 1.0)]
    sum(x.sum() for x in logits).backward()
    assert host_reads == []
    assert xs.grad is not None and torch.isfinite(xs.grad).all()


def test_head_checks_still_raise_on_the_host() -> None:
    xs, ys, xq, n = _features()
    bad = ys.clone()
    bad[0, 0] = n
    with pytest.raises(ValueError, match="support labels must lie in 0..n_way-1"):
        prototype_logits(xs, bad, xq, n)
    with pytest.raises(ValueError, match="no support example of class"):
        prototype_logits(xs, torch.zeros_like(ys), xq, n)
    with pytest.raises(ValueError, match="lam must be > 0"):
        r2d2_logits(xs, ys, xq, n, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="lam must be > 0"):
        r2d2_logits(xs, ys, xq, n, 0.0)


def _mtl_batch(num_classes: int) -> tuple[MTL, TaskBatch]:
    torch.manual_seed(0)
    model = MTL(torch.nn.Linear(6, 5), feature_dim=5, num_train_heads=4)
    xs, ys, xq, n = _features()
    ids = torch.tensor([[0, 1, 2], [1, 2, 3], [3, 0, 1], [2, 3, num_classes - 1]])
    return model, TaskBatch(xs, ys, xq, ys.new_zeros(xq.shape[:2]), class_ids=ids, n_way=n)


def test_mtl_checks_its_class_ids_without_a_host_read_on_a_device(accelerator, host_reads) -> None:
    model, batch = _mtl_batch(num_classes=4)
    model.meta_loss(batch).backward()
    assert host_reads == []


def test_mtl_still_names_an_out_of_range_class_on_the_host() -> None:
    model, batch = _mtl_batch(num_classes=5)
    with pytest.raises(ValueError, match="a task uses class 4 but MTL has 4 head rows"):
        model.meta_loss(batch)


# ---------------------------------------------------------- solvers: reads per iteration
def test_logistic_device_path_gives_the_host_fit_with_one_read_per_iteration(monkeypatch, host_reads) -> None:
    from metabridge.heads import _checks

    xs, ys, _, n = _features(t=5, k=4, d=12, seed=1)
    calls = {"objective": 0, "steps": 0}
    objective, line_search = logistic_mod._objective, logistic_mod._line_search

    def counting_objective(*args):
        calls["objective"] += 1
        return objective(*args)

    def counting_line_search(*args):
        calls["steps"] += 1
        return line_search(*args)

    monkeypatch.setattr(logistic_mod, "_objective", counting_objective)
    monkeypatch.setattr(logistic_mod, "_line_search", counting_line_search)
    w_host, b_host = logistic_fit(xs, ys, n, C=1000.0, normalize=True)
    host_steps = calls["steps"]
    assert host_steps >= 2
    for module in (_checks, logistic_mod):
        monkeypatch.setattr(module, "reads_are_free", lambda t: False)
    host_reads.clear()
    calls.update(objective=0, steps=0)
    w_dev, b_dev = logistic_fit(xs, ys, n, C=1000.0, normalize=True)
    # one read per Newton iteration, in one tolist(); the last iteration's sees convergence
    assert host_reads == ["tolist"] * (host_steps + 1)
    assert calls["steps"] == host_steps
    torch.testing.assert_close(w_dev, w_host, rtol=0, atol=1e-6)
    torch.testing.assert_close(b_dev, b_host, rtol=0, atol=1e-6)
    assert calls["objective"] == 1 + host_steps  # all step lengths of a line search in one evaluation


def test_the_batched_line_search_takes_the_sequential_searchs_step_lengths() -> None:
    g = torch.Generator().manual_seed(5)
    t, s_, r, n = 6, 5, 4, 3
    z = torch.randn(t, s_, r, generator=g, dtype=torch.float64)
    y1h = F.one_hot(torch.randint(0, n, (t, s_), generator=g), n).double()
    reg = torch.ones(r, dtype=torch.float64)
    theta = torch.zeros(t, r, n, dtype=torch.float64)
    f = logistic_mod._objective(z, y1h, theta, reg, 3.0)
    grad = reg.view(1, -1, 1) * theta + 3.0 * torch.bmm(z.transpose(1, 2), torch.softmax(torch.bmm(z, theta), -1) - y1h)
    # descent directions far too long for some tasks (scales 1 .. 10^5), and one ascent direction
    step = -grad * torch.logspace(0, 5, t, dtype=torch.float64).view(t, 1, 1)
    step[0] = grad[0]
    step[1] = -1e-3 * grad[1]
    alphas = logistic_mod._step_lengths(theta)
    seq = logistic_mod._line_search(z, y1h, reg, 3.0, theta, f, step, grad, alphas, 1)
    batched = logistic_mod._line_search(z, y1h, reg, 3.0, theta, f, step, grad, alphas, logistic_mod._LS_STEPS)
    assert torch.equal(seq[0], batched[0]) and torch.equal(seq[1], batched[1])
    taken = (seq[0] - theta).flatten(1).norm(dim=1) / step.flatten(1).norm(dim=1)
    assert taken[0] == 1  # not a descent direction (slope >= 0): taken at once, as the sequential rule does
    assert taken[-1] < 1e-3 and taken[1] == 1  # backtracked far; a short step taken in full
    assert bool((seq[1][1:] < f[1:]).all())
    assert torch.equal(alphas, 0.5 ** torch.arange(logistic_mod._LS_STEPS, dtype=torch.float64))


def test_logistic_in_float64_is_the_same_on_both_paths(monkeypatch) -> None:
    xs, ys, _, n = _features(t=3, k=3, d=8, seed=2)
    xs = xs.double()
    w_host, b_host = logistic_fit(xs, ys, n, C=3.0, normalize=True, solver_dtype=None)
    monkeypatch.setattr(logistic_mod, "reads_are_free", lambda t: False)
    w_dev, b_dev = logistic_fit(xs, ys, n, C=3.0, normalize=True, solver_dtype=None)
    torch.testing.assert_close(w_dev, w_host, rtol=0, atol=1e-12)
    torch.testing.assert_close(b_dev, b_host, rtol=0, atol=1e-12)


@pytest.mark.parametrize("every", [3, 5])
def test_svm_checks_convergence_every_k_iterations_on_a_device_and_finds_the_same_solution(
    monkeypatch, host_reads, every: int
) -> None:
    xs, ys, _, n = _features(t=3, k=3, d=8, seed=3)
    gram = torch.bmm(xs, xs.transpose(1, 2)).double()
    y1h = F.one_hot(ys, n).double()
    a_host, _, _, it_host, conv_host = svm_mod._ipm_cs_dual(gram, y1h, 0.1, 0.0, 1e-9, 100)
    host_read_count = len(host_reads)
    assert conv_host and host_read_count == it_host  # the host reads every iteration
    monkeypatch.setattr(svm_mod, "reads_are_free", lambda t: False)
    monkeypatch.setattr(svm_mod, "DEVICE_CHECK_EVERY", every)
    host_reads.clear()
    a_dev, _, _, it_dev, conv_dev = svm_mod._ipm_cs_dual(gram, y1h, 0.1, 0.0, 1e-9, 100)
    assert conv_dev and torch.equal(a_dev, a_host)  # frozen tasks: bit for bit
    assert it_dev % every == 0 and it_host <= it_dev < it_host + every
    assert len(host_reads) == it_dev // every


def test_svm_logits_and_gradients_are_the_same_on_the_device_path(monkeypatch) -> None:
    xs, ys, xq, n = _features(t=3, k=2, d=8, seed=4)

    def run():
        s, q = xs.clone().requires_grad_(True), xq.clone().requires_grad_(True)
        out = metaoptnet_svm_logits(s, ys, q, n, 0.1)
        out.square().sum().backward()
        return out.detach(), s.grad, q.grad

    host = run()
    monkeypatch.setattr(svm_mod, "reads_are_free", lambda t: False)
    for a, b in zip(host, run()):
        assert torch.equal(a, b)
