"""Multi-task architectures: shapes on image and vector inputs, the two conditioning
claims (multiplicative one-hot gating = separate per-task networks; FiLM at initialisation = the
unconditioned network), the shared/task parameter split, gradient flow, order independence of the
task-conditioned forward, the features contract of the weighting methods, the registry and
argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metabridge.multitask.models import (
    ConvEncoder,
    CrossStitch,
    HardSharing,
    HypernetworkHead,
    MLPEncoder,
    MMoE,
    MultiTaskModel,
    StackedLinear,
    TaskConditioned,
    available_mtl_models,
    build_mtl_model,
    register_mtl_model,
    unregister_mtl_model,
)
from metabridge.multitask.models.cross_stitch import cross_stitch_init
from metabridge.multitask.weighting import build_weighting, weighted_backward

NAMES = ["hard_sharing", "concat", "add", "multiply", "film", "hypernetwork", "mmoe", "cross_stitch"]
MODES = ["concat", "add", "multiply", "film"]
OUT_DIMS = [10, 10, 1]
IMAGE_SHAPE = (1, 36, 36)
VECTOR_DIM = 11
SMALL = {"encoder_width": 4, "encoder_out_dim": 16}  # image encoder kept small: the tests stay fast


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is faster than several (and steadier on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6, rtol: float = 0.0) -> None:
    """|actual - expected| <= atol + rtol |expected| everywhere (torch.testing's first call imports
    torch.distributed, which costs seconds)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    assert bool((err <= bound).all()), f"max abs error {err.max().item():.3g} (atol {atol}, rtol {rtol})"


def _inputs(kind: str, batch: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        return torch.randint(0, 256, (batch, *IMAGE_SHAPE), generator=g, dtype=torch.uint8)
    return torch.randn(batch, VECTOR_DIM, generator=g)


def _build(name: str, kind: str, **kwargs) -> MultiTaskModel:
    torch.manual_seed(0)
    shape = IMAGE_SHAPE if kind == "image" else (VECTOR_DIM,)
    extra = dict(SMALL) if kind == "image" else {"encoder_hidden": (32,), "encoder_out_dim": 16}
    return build_mtl_model(name, input_kind=kind, input_shape=shape, out_dims=OUT_DIMS, **{**extra, **kwargs})


def _losses(predictions: list[torch.Tensor], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for p in predictions:
        if p.shape[1] > 1:
            out.append(nn.functional.cross_entropy(p, torch.randint(0, p.shape[1], (p.shape[0],), generator=g)))
        else:
            out.append(nn.functional.mse_loss(p.squeeze(1), torch.randn(p.shape[0], generator=g)))
    return torch.stack(out)


def test_registry_lists_every_architecture():
    assert set(NAMES) <= set(available_mtl_models())


@pytest.mark.parametrize("kind", ["image", "vector"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes(name, kind):
    model = _build(name, kind)
    x = _inputs(kind)
    out = model(x)
    assert model.num_tasks == len(OUT_DIMS)
    assert [tuple(p.shape) for p in out.predictions] == [(6, d) for d in OUT_DIMS]
    if name in ("hard_sharing", "hypernetwork"):
        assert tuple(out.features.shape) == (6, 16)
    elif name == "mmoe":  # the encoder output read by the gates, then 4 experts of size 64
        assert tuple(out.features.shape) == (6, 16 + 4 * 64)
    else:
        assert out.features is None


@pytest.mark.parametrize("name", ["concat", "add", "multiply", "film", "mmoe", "cross_stitch"])
def test_architectures_read_the_raw_vector_without_encoder(name):
    torch.manual_seed(0)
    model = build_mtl_model(name, input_kind="vector", input_shape=(VECTOR_DIM,), out_dims=[3, 1], encoder="none")
    out = model(_inputs("vector"))
    assert [tuple(p.shape) for p in out.predictions] == [(6, 3), (6, 1)]


def test_encoders():
    torch.manual_seed(0)
    enc = ConvEncoder(in_channels=1, image_size=36, width=4, out_dim=8)
    x = _inputs("image")
    z = enc(x)
    assert z.shape == (6, 8) and z.dtype == torch.float32 and bool((z >= 0).all())
    _assert_close(enc(x.float() / 255), z)  # uint8 is scaled inside; float is used as given
    _assert_close(enc(x[:, 0]), z)  # [B, S, S] for one channel
    mlp = MLPEncoder(VECTOR_DIM, hidden=(20, 20), out_dim=5)
    assert mlp(_inputs("vector")).shape == (6, 5)
    with pytest.raises(ValueError, match="expects images"):
        enc(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expects inputs"):
        mlp(torch.zeros(2, 3))


def test_stacked_linear_equals_separate_linears():
    torch.manual_seed(0)
    layer = StackedLinear(3, 5, 4)
    x = torch.randn(7, 5)
    xs = torch.randn(3, 7, 5)
    for g in range(3):
        _assert_close(layer(x)[g], x @ layer.weight[g].T + layer.bias[g])
        _assert_close(layer(xs)[g], xs[g] @ layer.weight[g].T + layer.bias[g])


# ----------------------------------------------------------------------------------------------
# The two conditioning claims.


def test_multiplicative_onehot_gating_equals_separate_networks():
    """Multiply mode, one-hot z, hidden units of both hidden layers split into K blocks of m units
    and the gate V_l with column k = 1 on block k, 0 elsewhere. Claim: for every k, task k's
    prediction equals that of a separate MLP (feature_dim -> m -> m -> out) whose weights are
    block k's: W_1[block k, :], b_1[block k]; W_2[block k, block k], b_2[block k]; W_out[:, block k],
    b_out. The K separate networks are independent ordinary MLPs (no gating), so multiplicative
    conditioning with one-hot descriptors contains "K separate networks" exactly."""
    k_tasks, m, d_in, out = 3, 4, 6, 2
    torch.manual_seed(0)
    net = TaskConditioned(None, d_in, k_tasks, out, mode="multiply", descriptor="onehot", hidden=(k_tasks * m,) * 2)
    net = net.double()
    with torch.no_grad():
        for cond in net.conditioners:
            gate = torch.zeros(k_tasks * m, k_tasks, dtype=torch.float64)
            for k in range(k_tasks):
                gate[k * m : (k + 1) * m, k] = 1.0
            cond.gate.weight.copy_(gate)
    x = torch.randn(9, d_in, dtype=torch.float64)
    predictions = net(x).predictions
    l1, l2 = net.layers
    for k in range(k_tasks):
        b = slice(k * m, (k + 1) * m)
        separate = nn.Sequential(nn.Linear(d_in, m), nn.ReLU(), nn.Linear(m, m), nn.ReLU(), nn.Linear(m, out)).double()
        with torch.no_grad():
            separate[0].weight.copy_(l1.weight[b])
            separate[0].bias.copy_(l1.bias[b])
            separate[2].weight.copy_(l2.weight[b, b])
            separate[2].bias.copy_(l2.bias[b])
            separate[4].weight.copy_(net.output.weight[:, b])
            separate[4].bias.copy_(net.output.bias)
        _assert_close(predictions[k], separate(x), atol=1e-6, rtol=0)
    # the tasks really are different networks
    assert not torch.allclose(predictions[0], predictions[1], atol=1e-3)


@pytest.mark.parametrize("descriptor", ["onehot", "embedding"])
@pytest.mark.parametrize("with_encoder", [False, True])
def test_film_at_initialisation_is_the_unconditioned_network(descriptor, with_encoder):
    """gamma = 1, beta = 0 at initialisation: every task's prediction equals the plain MLP made of
    the same trunk layers (same weights, no z) applied to the encoder's output."""
    torch.manual_seed(0)
    if with_encoder:
        encoder: nn.Module | None = ConvEncoder(1, 36, width=4, out_dim=12)
        x = _inputs("image")
    else:
        encoder, x = None, torch.randn(6, 12)
    net = TaskConditioned(encoder, 12, 3, 5, mode="film", descriptor=descriptor, hidden=(16, 8))
    plain = nn.Sequential(net.layers[0], nn.ReLU(), net.layers[1], nn.ReLU(), net.output)
    expected = plain(net.encoder(x))
    for prediction in net(x).predictions:
        _assert_close(prediction, expected, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------
# Parameter split and gradients.


@pytest.mark.parametrize("name", NAMES + ["film_embedding"])
def test_shared_and_task_parameters_partition_the_model(name):
    kwargs = {"descriptor": "embedding"} if name == "film_embedding" else {}
    model = _build(name.replace("_embedding", ""), "image", **kwargs)
    every = {id(p) for p in model.parameters()}
    shared = [id(p) for p in model.shared_parameters()]
    task = [id(p) for p in model.task_parameters()]
    assert len(set(shared)) == len(shared) and len(set(task)) == len(task)
    assert set(shared) | set(task) == every and not set(shared) & set(task)
    assert shared, "every architecture shares something"
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert encoder_ids <= set(shared)
    expected_task = {
        "hard_sharing": lambda m: list(m.heads.parameters()),
        "concat": lambda m: [],
        "add": lambda m: [],
        "multiply": lambda m: [],
        "film": lambda m: [],
        "film_embedding": lambda m: [m.task_embedding],
        "hypernetwork": lambda m: [m.task_embedding],
        "mmoe": lambda m: [m.gates, *m.towers.parameters()],
        "cross_stitch": lambda m: [*m.columns.parameters(), *m.output.parameters()],
    }[name](model)
    assert set(task) == {id(p) for p in expected_task}


def test_hypernetwork_generator_can_count_as_task_specific():
    model = HypernetworkHead(MLPEncoder(4, (8,), 6), None, 2, 3, share_generator=False)
    task = {id(p) for p in model.task_parameters()}
    assert {id(p) for p in model.generator.parameters()} <= task
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.encoder.parameters()}


@pytest.mark.parametrize("kind", ["image", "vector"])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name, kind):
    model = _build(name, kind, **({"descriptor": "embedding"} if name in MODES else {}))
    if name == "film":
        # At FiLM's identity initialisation W_gamma = W_beta = 0, so d L / d z = 0 exactly: the learned
        # descriptor gets its first nonzero gradient once those have moved (after one step).
        model(_inputs(kind)).predictions[0].sum().backward()
        assert model.task_embedding.grad is not None and bool((model.task_embedding.grad == 0).all())
        with torch.no_grad():
            for p in model.conditioners.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model.zero_grad(set_to_none=True)
    _losses(model(_inputs(kind)).predictions).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert bool(p.grad.abs().sum() > 0), f"{pname} got a zero gradient"


@pytest.mark.parametrize(
    "model_name, kind",
    [(name, kind) for name in ("hard_sharing", "mmoe", "hypernetwork_task_generator") for kind in ("image", "vector")]
    + [("mmoe_raw", "vector")],
)
def test_features_carry_every_path_to_the_shared_parameters(model_name, kind):
    """The contract the feature-gradient methods rely on: back-propagating dL/d features through
    the shared parameters gives their full gradient dL/d theta (every shared parameter lies upstream
    of ``features`` and the predictions are computed from ``features``)."""
    if model_name == "mmoe_raw":  # no encoder: the experts and gates read x
        torch.manual_seed(0)
        model = build_mtl_model(
            "mmoe", input_kind="vector", input_shape=(VECTOR_DIM,), out_dims=OUT_DIMS, encoder="none"
        )
    elif model_name == "hypernetwork_task_generator":
        model = _build("hypernetwork", kind, share_generator=False)
    else:
        model = _build(model_name, kind)
    out = model(_inputs(kind))
    loss = _losses(out.predictions).sum()
    shared = list(model.shared_parameters())
    direct = torch.autograd.grad(loss, shared, retain_graph=True)
    (grad_features,) = torch.autograd.grad(loss, [out.features], retain_graph=True)
    through = torch.autograd.grad(out.features, shared, grad_outputs=grad_features, allow_unused=True)
    for _p, a, b in zip(shared, direct, through):
        assert b is not None
        _assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["equal", "mgda", "mgda_ub"])
@pytest.mark.parametrize("name", NAMES)
def test_weighted_backward_fills_every_gradient(name, method):
    """One step of a loss-only, a parameter-gradient and a feature-gradient method on each model."""
    kwargs = {"share_generator": False} if name == "hypernetwork" and method == "mgda_ub" else {}
    model = _build(name, "vector", **kwargs)
    out = model(_inputs("vector"))
    if method == "mgda_ub" and out.features is None:
        with pytest.raises(ValueError, match="shared features"):
            weighted_backward(
                build_weighting(method, 3),
                _losses(out.predictions),
                list(model.shared_parameters()),
                list(model.task_parameters()),
                out.features,
            )
        return
    weighted_backward(
        build_weighting(method, 3),
        _losses(out.predictions),
        list(model.shared_parameters()),
        list(model.task_parameters()),
        out.features,
    )
    for pname, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), pname


# ----------------------------------------------------------------------------------------------
# Task-conditioned forward: one batched pass, independent of the other tasks evaluated with it.


@pytest.mark.parametrize("descriptor", ["onehot", "embedding"])
@pytest.mark.parametrize("mode", MODES)
def test_conditioned_forward_does_not_depend_on_task_order(mode, descriptor):
    torch.manual_seed(0)
    net = TaskConditioned(
        MLPEncoder(VECTOR_DIM, (16,), 12), None, 4, [3, 3, 2, 1], mode=mode, descriptor=descriptor, hidden=(10, 10)
    )
    with torch.no_grad():  # move FiLM and the gates away from their initialisation so z matters
        for cond in net.conditioners:
            for p in cond.parameters():
                p.add_(0.5 * torch.randn_like(p))
    x = _inputs("vector")
    together = net(x).predictions
    for k in range(4):
        (alone,) = net.forward_tasks(x, [k])
        _assert_close(alone, together[k], atol=1e-6, rtol=0)
    order = [2, 0, 3, 1]
    for k, p in zip(order, net.forward_tasks(x, order)):
        _assert_close(p, together[k], atol=1e-6, rtol=0)
    assert not torch.allclose(together[0], together[1], atol=1e-4)  # the tasks are told apart


def test_mmoe_gates_are_distributions_and_cross_stitch_starts_near_identity():
    torch.manual_seed(0)
    model = MMoE(None, VECTOR_DIM, [2, 1], num_experts=5, expert_hidden=(8, 6))
    g = model.gate_weights(_inputs("vector"))
    assert g.shape == (2, 6, 5)
    _assert_close(g.sum(-1), torch.ones(2, 6))
    a = cross_stitch_init(4, 0.9)
    _assert_close(a.diagonal(), torch.full((4,), 0.9))
    _assert_close(a.sum(1), torch.ones(4))
    assert torch.allclose(a[0, 1], torch.tensor(0.1 / 3))
    assert cross_stitch_init(1, 0.9).tolist() == [[1.0]]
    # with alpha = identity the columns are independent: task k's output ignores the other columns
    net = CrossStitch(None, VECTOR_DIM, [2, 2], hidden=(8,), self_weight=1.0)
    x = _inputs("vector")
    before = net(x).predictions[0]
    with torch.no_grad():
        net.columns[0].weight[1].add_(1.0)
    _assert_close(net(x).predictions[0], before)


# ----------------------------------------------------------------------------------------------
# Registry and validation.


def test_registry_custom_model_and_errors():
    @register_mtl_model("tiny_test_arch")
    def tiny(*, encoder, feature_dim, input_kind, input_shape, out_dims, head_hidden=None):
        return HardSharing(encoder, feature_dim, out_dims, head_hidden=head_hidden)

    try:
        m = build_mtl_model(
            "tiny_test_arch",
            input_kind="vector",
            input_shape=(5,),
            out_dims=[2, 3],
            head_hidden=4,
            encoder_hidden=(7,),
            encoder_out_dim=9,
        )
        assert m.feature_dim == 9 and m.encoder.net[0].out_features == 7
        with pytest.raises(ValueError, match="already registered"):
            register_mtl_model("tiny_test_arch")(lambda **kw: None)
    finally:
        unregister_mtl_model("tiny_test_arch")
    own = MLPEncoder(5, (8,), 6)
    m = build_mtl_model("hard_sharing", input_kind="vector", input_shape=(5,), out_dims=[2], encoder=own)
    assert m.encoder is own and m.feature_dim == 6
    bad = [
        dict(name="nope"),
        dict(input_kind="audio"),
        dict(out_dims=[]),
        dict(out_dims=[2, 0]),
        dict(input_shape=(3, 36, 30)),
        dict(hidden=(8,)),  # hard_sharing has no trunk
        dict(encoder_depth=3),  # not a ConvEncoder keyword
        dict(encoder="none"),  # images need an encoder
        dict(encoder="resnet"),
    ]
    for case in bad:
        args = dict(name="hard_sharing", input_kind="image", input_shape=IMAGE_SHAPE, out_dims=[10, 10], **SMALL)
        args.update(case)
        if "encoder" in case:
            args = {k: v for k, v in args.items() if not k.startswith("encoder_")} | {"encoder": case["encoder"]}
        with pytest.raises(ValueError):
            build_mtl_model(args.pop("name"), **args)
    with pytest.raises(ValueError, match="needs an encoder"):
        build_mtl_model("hypernetwork", input_kind="vector", input_shape=(5,), out_dims=[2], encoder="none")


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConvEncoder(image_size=8),
        lambda: ConvEncoder(width=0),
        lambda: MLPEncoder(0),
        lambda: MLPEncoder(4, hidden=(8, -1)),
        lambda: HardSharing(MLPEncoder(4), None, []),
        lambda: HardSharing(MLPEncoder(4), None, [2], head_hidden=0),
        lambda: HardSharing(None, 4, [2]),
        lambda: TaskConditioned(None, 4, 2, 3, mode="gate"),
        lambda: TaskConditioned(None, 4, 2, 3, descriptor="text"),
        lambda: TaskConditioned(None, 4, 2, 3, hidden=()),
        lambda: TaskConditioned(None, 4, 2, [3, 3, 3]),
        lambda: TaskConditioned(None, 4, 0, 3),
        lambda: TaskConditioned(None, 4, 2, 3, descriptor="onehot", embedding_dim=5),
        lambda: TaskConditioned(None, 4, 2, 3, descriptor="embedding", embedding_dim=0),
        lambda: TaskConditioned(nn.Linear(3, 3), None, 2, 3),  # no out_dim attribute to read the feature size
        lambda: HypernetworkHead(MLPEncoder(4), None, 2, 3, embedding_dim=0),
        lambda: HypernetworkHead(MLPEncoder(4), None, 2, [3]),
        lambda: MMoE(None, 4, [2], num_experts=0),
        lambda: MMoE(None, 4, [2], expert_hidden=()),
        lambda: CrossStitch(None, 4, [2, 2], hidden=()),
        lambda: CrossStitch(None, 4, [2, 2], self_weight=1.5),
    ],
)
def test_bad_arguments_raise_value_error(build):
    with pytest.raises(ValueError):
        build()


def test_bad_inputs_raise_value_error():
    torch.manual_seed(0)
    net = TaskConditioned(None, 4, 2, 3, hidden=(5,))
    with pytest.raises(ValueError, match="feature_dim"):
        net(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="task indices"):
        net.forward_tasks(torch.zeros(2, 4), [2])
    with pytest.raises(ValueError, match="descriptors"):
        net.forward_descriptors(torch.zeros(2, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="feature_dim"):
        HardSharing(nn.Linear(4, 6), 5, [2])(torch.zeros(2, 4))
