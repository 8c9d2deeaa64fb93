"""Meta-RL algorithms by name: the built-in ones are registered classes built by one constructor
contract, RLConfig.algorithm is checked against the registry when the config is made, and an
algorithm a plugin registers is trained like a built-in one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import metabridge
from metabridge.rl import (
    DRSPPO,
    DRSTRPO,
    MAMLTRPO,
    RL_ALGORITHMS,
    MetaRLAlgorithm,
    RLConfig,
    load_rl_run,
    register_rl_algorithm,
    train_rl,
)
from metabridge.rl.algorithms import FirstOrderMAMLTRPO, unregister_rl_algorithm
from metabridge.rl.envs import make_env
from metabridge.rl.trainer import build_policy, build_rl_algorithm

TINY = dict(
    env="navigation-2d",
    env_kwargs={"horizon": 6},
    hidden=[8],
    meta_batch=2,
    rollouts=2,
    iterations=2,
    eval_tasks=2,
    eval_rollouts=2,
    eval_updates=1,
    checkpoint_every=1,
)


def test_the_built_in_algorithms_are_registered_classes() -> None:
    assert RL_ALGORITHMS.names() == ["drs-ppo", "drs-trpo", "fo-maml-trpo", "maml-trpo"]
    assert RL_ALGORITHMS["maml-trpo"] is MAMLTRPO and RL_ALGORITHMS["drs-trpo"] is DRSTRPO
    assert RL_ALGORITHMS["drs_ppo"] is DRSPPO and RL_ALGORITHMS["FO-MAML-TRPO"] is FirstOrderMAMLTRPO
    assert metabridge.RL_ALGORITHMS is RL_ALGORITHMS and metabridge.register_rl_algorithm == register_rl_algorithm
    config = RLConfig(**TINY, algorithm="fo-maml-trpo", algorithm_kwargs={"max_kl": 0.02})
    algorithm = build_rl_algorithm(config, build_policy(config, make_env(config.env, **config.env_kwargs)))
    assert type(algorithm) is FirstOrderMAMLTRPO and algorithm.first_order and algorithm.max_kl == 0.02
    assert algorithm.name == "fo-maml-trpo" and RLConfig(**TINY, algorithm="DRS_TRPO").algorithm == "drs-trpo"
    assert config.env_steps_per_iteration(6) == 2 * 2 * 2 * 6  # MAML samples twice per task


def test_an_unknown_algorithm_is_refused_when_the_config_is_made() -> None:
    with pytest.raises(
        ValidationError,
        match="unknown meta-RL algorithm 'drs-trp'; did you mean 'drs-trpo'\\? "
        "Known: drs-ppo, drs-trpo, fo-maml-trpo, maml-trpo",
    ):
        RLConfig(algorithm="drs-trp")
    with pytest.raises(ValidationError, match="plugin module 'no_such_plugin_module' could not be imported"):
        RLConfig(algorithm="maml-trpo", plugins=["no_such_plugin_module"])


def test_only_a_fitting_class_registers() -> None:
    with pytest.raises(TypeError, match="MetaRLAlgorithm subclass"):
        register_rl_algorithm("test-linear", torch.nn.Linear)

    class Rigid(MetaRLAlgorithm):
        def __init__(self, policy: torch.nn.Module) -> None:  # no inner_lr / gamma / gae_lambda
            super().__init__(policy)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="constructor must accept \\(policy, inner_lr=..., gamma=..."):
        register_rl_algorithm("test-rigid", Rigid)
    assert "test-rigid" not in RL_ALGORITHMS
    with pytest.raises(ValueError, match="built-in meta-RL algorithm, which cannot be removed"):
        unregister_rl_algorithm("maml-trpo")


def test_a_plugin_algorithm_trains_through_the_registry(tmp_path: Path) -> None:
    config = RLConfig(**TINY, algorithm="toy-reinforce", algorithm_kwargs={"step": 0.05}, plugins=["rl_toy_plugin"])
    try:
        before = build_policy(config, make_env(config.env, **config.env_kwargs)).state_dict()
        result = train_rl(config, tmp_path, progress=False)
        assert result.iteration == 2 and result.env_steps == 2 * 2 * 2 * 6
        assert [r["kind"] for r in result.history] == ["train", "train", "eval"]
        saved, _, algorithm, step = load_rl_run(tmp_path)  # the plugin is in the config: the run rebuilds
        assert saved.plugins == ["rl_toy_plugin"] and step == 2 and algorithm.hparams()["step"] == 0.05
        assert type(algorithm).__name__ == "ToyReinforce"
        after = algorithm.policy.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    finally:
        unregister_rl_algorithm("toy-reinforce")
        sys.modules.pop("rl_toy_plugin", None)
