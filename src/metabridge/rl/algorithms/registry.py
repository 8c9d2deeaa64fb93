"""Meta-RL algorithms by name: :data:`RL_ALGORITHMS` (a :class:`~metabridge.registry.Registry`, with
every registry's rules) and :func:`register_rl_algorithm`.

Built in: ``maml-trpo`` and ``fo-maml-trpo`` (Finn et al. 2017), ``drs-trpo`` and ``drs-ppo``
(Gao & Sener 2020). An algorithm of one's own subclasses :class:`MetaRLAlgorithm` and is
registered like them, e.g. in a plugin module::

    @register_rl_algorithm("my-pg")
    class MyPG(MetaRLAlgorithm):
        def __init__(self, policy, inner_lr=0.1, *, step=0.01, **kwargs): ...
        def train_iteration(self, env, meta_batch, rollouts, generator): ...

after which ``RLConfig(algorithm="my-pg", plugins=["my_plugin"])`` and
``metabridge rl train --algorithm my-pg --plugin my_plugin`` train it.

The constructor contract, the same for every algorithm (:func:`metabridge.rl.trainer.build_rl_algorithm`):
``cls(policy, inner_lr=..., gamma=..., gae_lambda=..., **algorithm_kwargs)``, where ``policy`` is
the :class:`~metabridge.rl.policy.GaussianMLPPolicy` it trains and ``algorithm_kwargs`` its own
settings (``max_kl``, ``clip``, ...).
"""

from __future__ import annotations

import inspect

from ...registry import Registry
from .base import MetaRLAlgorithm
from .drs_ppo import DRSPPO
from .drs_trpo import DRSTRPO
from .maml_trpo import MAMLTRPO, FirstOrderMAMLTRPO

__all__ = ["COMMON_ARGS", "RL_ALGORITHMS", "register_rl_algorithm", "unregister_rl_algorithm"]

#: the keywords every algorithm's constructor takes besides the policy
COMMON_ARGS = ("inner_lr", "gamma", "gae_lambda")


def _check_rl_algorithm(name: str, cls: object) -> None:
    """A :class:`MetaRLAlgorithm` subclass whose constructor takes the policy and :data:`COMMON_ARGS`."""
    if not (isinstance(cls, type) and issubclass(cls, MetaRLAlgorithm)):
        raise TypeError(
            f"register_rl_algorithm takes a MetaRLAlgorithm subclass (got {cls!r}); subclass "
            "metabridge.rl.MetaRLAlgorithm and implement train_iteration (or collect and update)."
        )
    try:
        inspect.signature(cls).bind(None, **dict.fromkeys(COMMON_ARGS, 0.5))
    except TypeError:
        raise TypeError(
            f"{cls.__name__} cannot be registered: its constructor must accept "
            f"(policy, inner_lr=..., gamma=..., gae_lambda=..., **algorithm_kwargs), as "
            "MetaRLAlgorithm's does."
        ) from None


#: name -> meta-RL algorithm class (add one with :func:`register_rl_algorithm`).
RL_ALGORITHMS: Registry[type[MetaRLAlgorithm]] = Registry(
    "meta-RL algorithm", "rl-algorithms", register_hint="metabridge.register_rl_algorithm", check=_check_rl_algorithm
)

#: ``@register_rl_algorithm("name")``, ``@register_rl_algorithm()`` (the class attribute ``name``) or
#: ``register_rl_algorithm("name", cls)``; ``replace=True`` replaces a registered name.
register_rl_algorithm = RL_ALGORITHMS.register

#: Remove a registered meta-RL algorithm (returns its class); built-in ones cannot be removed.
unregister_rl_algorithm = RL_ALGORITHMS.unregister

for _cls in (MAMLTRPO, FirstOrderMAMLTRPO, DRSTRPO, DRSPPO):
    register_rl_algorithm(None, _cls)
