"""Open registries: one's own algorithms and backbones go through the same build path as
the built-in ones; hyperparameters come from constructor signatures."""

from __future__ import annotations

import inspect
import typing

import pytest
import torch
from torch import Tensor, nn

from metabridge.algorithms import (
    ALGORITHMS,
    ANIL,
    DRS,
    FOMAML,
    MAML,
    MTL,
    JointTraining,
    MetaAlgorithm,
    MetaOptNet,
    MetaSGD,
    ProtoNet,
    Reptile,
    algorithm_hparams,
    build_algorithm,
    register_algorithm,
    unregister_algorithm,
)
from metabridge.algorithms.base import SUPPLIED_ARGS, DataInfo, ModelMaker, Predictor
from metabridge.algorithms.execution import ExecutionOptions
from metabridge.models import MLP, MODELS, Conv4, build_model, register_model, unregister_model
from metabridge.tasks.batch import TaskBatch

MINE = [MAML, FOMAML, ANIL, MetaSGD, Reptile, DRS]


def _bns(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.fixture
def clean_registries():
    algos, models = set(ALGORITHMS), set(MODELS)
    yield
    for name in set(ALGORITHMS) - algos:
        unregister_algorithm(name)
    for name in set(MODELS) - models:
        unregister_model(name)


class _ModelAlgo(MetaAlgorithm):
    """Takes the whole network; predicts with it unchanged."""

    name = "test_model_algo"

    def __init__(self, model: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        return self.predict(batch).pow(2).mean()

    def adapt(self, batch: TaskBatch) -> Predictor:
        return lambda xq: self.scale * self.model(xq.flatten(0, 1)).unflatten(0, xq.shape[:2])


# ------------------------------------------------------------------------ algorithms
def test_register_as_decorator_and_build_by_name(clean_registries):
    register_algorithm()(_ModelAlgo)
    assert ALGORITHMS["test_model_algo"] is _ModelAlgo
    alg = build_algorithm("test_model_algo", model="conv4", out_dim=3, image_size=16, scale=2.0)
    assert isinstance(alg, _ModelAlgo) and alg.scale == 2.0
    assert isinstance(alg.model, Conv4) and alg.model.head.out_features == 3
    assert all(not bn.track_running_stats for bn in _bns(alg.model))  # `model`: per-task batch norm
    assert list(algorithm_hparams("test_model_algo")) == ["scale"]
    with pytest.raises(ValueError, match="no hyperparameter 'scal'.*scale"):
        build_algorithm("test_model_algo", model="mlp", out_dim=1, scal=2.0)


def test_body_rule_and_custom_build(clean_registries):
    @register_algorithm()
    class BodyAlgo(_ModelAlgo):
        name = "test_body_algo"

        def __init__(self, body: nn.Module, feature_dim: int, num_train_heads: int, temperature: float = 1.0) -> None:
            MetaAlgorithm.__init__(self)
            self.body, self.feature_dim, self.num_train_heads, self.temperature = (
                body,
                feature_dim,
                num_train_heads,
                temperature,
            )

    @register_algorithm("test_custom_algo")
    class CustomAlgo(_ModelAlgo):
        build_supplies = frozenset({"model", "width"})

        def __init__(self, model: nn.Module, width: int, scale: float = 1.0) -> None:
            super().__init__(model, scale)
            self.width = width

        @classmethod
        def build(cls, make_model: ModelMaker, data: DataInfo, **hparams: typing.Any) -> CustomAlgo:
            return cls(make_model(7, running_stats=True), width=data.out_dim * 10, **hparams)

    alg = build_algorithm("test_body_algo", model="conv4", out_dim=5, image_size=16, num_train_classes=12)
    assert isinstance(alg.body, nn.Module) and not hasattr(alg.body, "head")
    assert alg.feature_dim == 64 and alg.num_train_heads == 12 and alg.backbone is alg.body
    assert all(bn.track_running_stats for bn in _bns(alg.body))  # `body`: running statistics
    assert list(algorithm_hparams("test_body_algo")) == ["temperature"]
    with pytest.raises(ValueError, match="num_train_classes.*num_train_tasks"):
        build_algorithm("test_body_algo", model="mlp", out_dim=1)  # regression without a task pool
    custom = build_algorithm("test_custom_algo", model="mlp", out_dim=2)
    assert ALGORITHMS["test_custom_algo"] is CustomAlgo and custom.width == 20 and custom.model.head.out_features == 7
    assert list(algorithm_hparams("test_custom_algo")) == ["scale"]


def test_duplicates_replace_unregister_and_bad_classes(clean_registries):
    register_algorithm(None, _ModelAlgo)
    register_algorithm("test_model_algo", _ModelAlgo)  # the same class again: a no-op

    class Other(_ModelAlgo):
        name = "test_model_algo"

    with pytest.raises(ValueError, match="already registered.*replace=True"):
        register_algorithm()(Other)
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("MAML")(Other)  # names ignore case
    assert register_algorithm(None, Other, replace=True) is Other and ALGORITHMS["test_model_algo"] is Other
    assert unregister_algorithm("test_model_algo") is Other  # the replacement goes, the class it replaced is back
    assert ALGORITHMS["test_model_algo"] is _ModelAlgo
    assert unregister_algorithm("test-model-algo") is _ModelAlgo and "test_model_algo" not in ALGORITHMS
    with pytest.raises(ValueError, match="algorithm 'test_model_algo' is not registered"):
        unregister_algorithm("test_model_algo")
    with pytest.raises(ValueError, match="built-in algorithm, which cannot be removed"):
        unregister_algorithm("maml")
    with pytest.raises(TypeError):
        ALGORITHMS["x"] = Other  # type: ignore[index]  # a read-only mapping

    class Nameless(_ModelAlgo):
        pass  # inherits a name, but does not define its own: registered under its class name

    register_algorithm()(Nameless)
    assert ALGORITHMS["nameless"] is Nameless and "Nameless" in ALGORITHMS

    class Abstract(MetaAlgorithm):
        name = "test_abstract"

    with pytest.raises(TypeError, match="does not implement adapt, meta_loss"):
        register_algorithm()(Abstract)
    with pytest.raises(TypeError, match="MetaAlgorithm subclass"):
        register_algorithm("test_module")(nn.Linear)
    assert "test_abstract" not in ALGORITHMS and "test_module" not in ALGORITHMS

    class NoNetwork(_ModelAlgo):
        name = "test_no_network"

        def __init__(self, scale: float = 1.0) -> None:
            MetaAlgorithm.__init__(self)

    register_algorithm()(NoNetwork)
    with pytest.raises(TypeError, match="neither `model` nor `body`.*build"):
        build_algorithm("test_no_network", model="mlp", out_dim=1)


def test_the_old_bare_decorator_still_registers_with_a_deprecation_warning(clean_registries):
    with pytest.warns(DeprecationWarning, match="register_algorithm\\(\\)"):
        register_algorithm(_ModelAlgo)
    assert ALGORITHMS["test_model_algo"] is _ModelAlgo


def test_unknown_names_suggest_the_closest_one():
    with pytest.raises(
        ValueError,
        match="unknown algorithm 'mamll'; did you mean 'maml'\\? Known: .*anil.*"
        "register your own with metabridge.register_algorithm",
    ) as err:
        build_algorithm("mamll")
    assert isinstance(err.value, KeyError) and "\n" not in str(err.value)
    assert build_algorithm("ProtoNet", model="mlp", out_dim=2).__class__ is ProtoNet  # names ignore case
    with pytest.raises(ValueError, match="unknown model 'conv5'; did you mean 'conv4'"):
        build_model("conv5", 5)


def test_joint_training_is_listed_as_joint_and_drs_still_builds_it():
    """The few-shot joint training is ``joint`` (not RL's drs-trpo / drs-ppo); ``drs``, its 0.x name, is an alias."""
    import metabridge

    assert "joint" in list(ALGORITHMS) and "drs" not in list(ALGORITHMS)
    for name in ("joint", "drs", "DRS"):
        assert type(build_algorithm(name, model="mlp", out_dim=1)) is JointTraining
    assert ALGORITHMS.canonical("drs") == "joint" and "drs" in ALGORITHMS
    assert DRS is JointTraining and JointTraining.name == "joint"
    assert metabridge.DRS is metabridge.JointTraining is JointTraining


def test_builtins_are_built_as_before():
    """The rule each built-in had in build_algorithm's old if/elif, now in its classmethod."""
    kw = {"model": "conv4", "out_dim": 5, "image_size": 16, "num_train_classes": 20}
    for name in ("maml", "fomaml", "anil", "reptile", "metasgd"):
        alg = build_algorithm(name, **kw)
        assert type(alg) is ALGORITHMS[name] and alg.model.head.out_features == 5
        assert all(not bn.track_running_stats for bn in _bns(alg.model)) and alg.batched
        assert alg.backbone is alg.model.body
    drs = build_algorithm("joint", **kw)
    assert drs.model.head.out_features == 20 and all(bn.track_running_stats for bn in _bns(drs.model))
    assert drs.model.body.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert build_algorithm("joint", model="mlp", out_dim=1).model.head.out_features == 1
    for name, cls in (("protonet", ProtoNet), ("metaoptnet", MetaOptNet), ("mtl", MTL)):
        alg = build_algorithm(name, **kw)
        assert type(alg) is cls and all(bn.track_running_stats for bn in _bns(alg.body))
        assert alg.backbone is alg.body and not hasattr(alg.body, "head")
    mtl = build_algorithm("mtl", **kw)
    assert tuple(mtl.heads.shape) == (20, 64) and mtl.task == "classification"
    reg = build_algorithm("mtl", model="mlp", out_dim=2, num_train_tasks=9, model_kwargs={"hidden": (8,)})
    assert tuple(reg.heads.shape) == (9, 8, 2) and reg.task == "regression"
    with pytest.raises(ValueError, match="num_train_tasks"):
        build_algorithm("mtl", model="mlp", out_dim=1)
    with pytest.raises(ValueError, match="unknown algorithm 'mamll'.*maml"):
        build_algorithm("mamll")


def test_execution_options_pass_through_build_algorithm():
    alg = build_algorithm("maml", model="conv4", image_size=16, execution={"task_chunk": 2})
    assert alg.execution == ExecutionOptions(task_chunk=2)
    with pytest.raises(ValueError, match="valid keys"):
        build_algorithm("maml", model="conv4", image_size=16, execution={"chunk": 2})


def test_hparams_are_typed_defaulted_and_documented():
    for name, cls in ALGORITHMS.items():
        hints = typing.get_type_hints(cls.__init__)  # resolvable: the config layer builds schemas from them
        params = algorithm_hparams(name)
        assert not set(params) & SUPPLIED_ARGS
        for k, p in params.items():
            assert k in hints, f"{name}.{k} has no type annotation"
            assert p.default is not inspect.Parameter.empty, f"{name}.{k} has no default"
    for cls in MINE:
        doc = inspect.getdoc(cls) or ""
        args = doc.split("Args:", 1)[1]
        for k in algorithm_hparams(cls.name):
            assert f"\n{k}:" in "\n" + "\n".join(line.strip() for line in args.splitlines()), (
                f"{cls.__name__}'s docstring does not describe {k}"
            )
    assert list(algorithm_hparams("maml")) == [
        "inner_lr",
        "inner_steps",
        "first_order",
        "learn_inner_lr",
        "eval_steps",
        "inner_loss",
        "outer_loss",
        "execution",
    ]
    hints = typing.get_type_hints(MAML.__init__)
    assert hints["learn_inner_lr"] == (typing.Literal["per_step", "per_parameter"] | None)
    assert hints["inner_steps"] is int and hints["first_order"] is bool and hints["inner_lr"] is float


# ------------------------------------------------------------------------- backbones
def test_mlp_hidden_is_honoured():
    """Defect 1: build_model("mlp", hidden=...) used to ignore hidden (a conv4-only keyword swallowed it)."""
    net = build_model("mlp", 1, hidden=(8, 8))
    widths = [m.out_features for m in net.body if isinstance(m, nn.Linear)]
    assert widths == [8, 8] and net.feature_dim == 8
    alg = build_algorithm("maml", model="mlp", out_dim=1, model_kwargs={"hidden": (5,)})
    assert [m.out_features for m in alg.model.body if isinstance(m, nn.Linear)] == [5]


def test_unknown_model_keywords_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="'hiden'.*hidden, track_running_stats"):
        build_model("conv4", 5, hiden=3)
    with pytest.raises(ValueError, match="'width'.*hidden"):
        build_model("mlp", 1, width=3)
    with pytest.raises(ValueError, match="unknown model 'conv5'.*conv4"):
        build_model("conv5", 5)


def test_register_model_and_build_with_it(clean_registries):
    calls = []

    @register_model("test_tiny")
    def tiny(out_dim: int, *, in_channels: int, image_size: int, width: int = 6) -> nn.Module:
        calls.append((out_dim, in_channels, image_size, width))
        return MLP(in_dim=in_channels * image_size * image_size, out_dim=out_dim, hidden=(width,))

    assert MODELS["test_tiny"] is tiny
    net = build_model("test_tiny", 3, in_channels=1, image_size=4, width=5)
    assert net.feature_dim == 5 and calls[-1] == (3, 1, 4, 5)
    with pytest.raises(ValueError, match="'depth'.*width"):
        build_model("test_tiny", 3, depth=2)
    # through the algorithm registry; the factory takes no track_running_stats, so none is passed
    alg = build_algorithm("anil", model="test_tiny", out_dim=2, in_channels=1, image_size=4, model_kwargs={"width": 7})
    assert alg.model.feature_dim == 7 and calls[-1] == (2, 1, 4, 7)
    unregistered = build_algorithm("protonet", model=tiny, out_dim=2, in_channels=1, image_size=3)  # a factory
    assert unregistered.body[0].in_features == 9 and calls[-1] == (2, 1, 3, 6)
    with pytest.raises(ValueError, match="already registered.*replace=True"):
        register_model("test_tiny")(lambda out_dim, **kw: None)
    register_model("test_tiny", replace=True)(tiny)
    assert unregister_model("test_tiny") is tiny and "test_tiny" not in MODELS
    with pytest.raises(TypeError):
        MODELS["x"] = tiny  # type: ignore[index]


def test_a_factory_without_body_head_is_refused_at_build(clean_registries):
    @register_model("test_plain")
    def plain(out_dim: int, *, in_channels: int, image_size: int) -> nn.Module:
        return nn.Linear(in_channels, out_dim)

    with pytest.raises(TypeError, match="'test_plain' lacks body, head, feature_dim"):
        build_model("test_plain", 2)

    @register_model("test_rigid")
    def rigid(out_dim: int) -> nn.Module:
        return MLP(out_dim=out_dim)

    with pytest.raises(ValueError, match="must accept factory\\(out_dim, \\*, in_channels, image_size"):
        build_model("test_rigid", 2)


def test_backbone_property():
    model = MLP(hidden=(4,))
    for alg in (MAML(model), ANIL(model), Reptile(model), DRS(model)):
        assert alg.backbone is model.body
    assert ProtoNet(model.body).backbone is model.body
    with pytest.raises(NotImplementedError, match="no `body`"):
        _ = MAML(nn.Linear(1, 1)).backbone
