"""``metabridge list KIND``: the names each registry holds (what ``--algorithm``, ``--model``,
``--task``, ``--methods`` ... accept), one line each."""

from __future__ import annotations

from typing import Annotated

import tyro
from pydantic import BaseModel, ConfigDict, Field

from ..config import PluginList, Positional
from ._parse import UsageError

#: Listing names of earlier releases, still accepted.
OLD_KINDS = {"mtl-models": "multitask-models", "mtl-benchmarks": "multitask-benchmarks", "rl-envs": "envs"}
EXTRA_KINDS = ("rl-presets",)


class ListConfig(BaseModel):
    """List what can be named in a command's options: the entries of one registry (algorithms with
    their hyperparameters, models, datasets, weightings, multitask-models, multitask-benchmarks,
    envs, rl-algorithms) or the meta-RL protocols (rl-presets)."""

    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, Positional, tyro.conf.arg(metavar="KIND")] = Field(
        "algorithms",
        description=(
            "What to list: a registry's plural name (algorithms, models, datasets, weightings, multitask-models, "
            "multitask-benchmarks, envs, rl-algorithms) or rl-presets."
        ),
    )
    plugins: PluginList = Field(
        default_factory=list,
        description=("Modules to import first (given once per module), so their registrations are listed too."),
    )


def kinds() -> list[str]:
    """Every KIND ``metabridge list`` accepts."""
    import metabridge  # noqa: F401  (creates every built-in registry)

    from ..registry import Registry

    return [*Registry.all_registries(), *EXTRA_KINDS]


def _algorithm_lines() -> list[str]:
    from ..algorithms.registry import ALGORITHMS
    from ..config import hparams_model

    return [
        f"{name}: " + ", ".join(f"{k}={f.default!r}" for k, f in hparams_model(name).model_fields.items())
        for name in sorted(ALGORITHMS)
    ]


def _weighting_lines() -> list[str]:
    """``name [what it reads]: keyword=default, ...`` for every weighting method."""
    import inspect

    from ..multitask.weighting.registry import WEIGHTINGS, registered_defaults, weighting_class

    lines = []
    for name in sorted(WEIGHTINGS):
        cls = weighting_class(name)
        params = list(inspect.signature(cls).parameters.values())[1:]  # after num_tasks
        defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        args = [f"{k}={v!r}" for k, v in {**defaults, **registered_defaults(name)}.items()]
        needs = "+".join(str(n.name).lower() for n in type(cls.needs) if n in cls.needs)
        lines.append(f"{name} [{needs}]: " + ", ".join(args))
    return lines


def _preset_lines() -> list[str]:
    from ..rl.presets import available_presets, preset_config

    lines = []
    for name in available_presets():
        c = preset_config(name)
        lines.append(
            f"{name}: env={c.env} {c.env_kwargs} policy={c.hidden} {c.activation} inner_lr={c.inner_lr} "
            f"meta_batch={c.meta_batch} rollouts={c.rollouts} iterations={c.iterations}"
        )
    return lines


def run_list(config: ListConfig) -> list[str]:
    """Print the entries of ``config.kind``, one per line; return the lines."""
    from ..registry import describe_all, normalize_name

    kind = OLD_KINDS.get(config.kind, config.kind)
    known = kinds()
    match = {normalize_name(k): k for k in known}.get(normalize_name(kind))
    if match is None:
        import difflib

        close = difflib.get_close_matches(kind, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"metabridge list takes one of {', '.join(known)}; got {config.kind!r}{hint}.")
    if match == "algorithms":
        lines = _algorithm_lines()
    elif match == "weightings":
        lines = _weighting_lines()
    elif match == "rl-presets":
        lines = _preset_lines()
    else:
        lines = [f"{name}: {text}" if text else name for name, text in describe_all(match)]
    print("\n".join(lines))
    return lines
