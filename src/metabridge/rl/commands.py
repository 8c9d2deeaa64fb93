"""``metabridge rl train | eval RUN | tradeoff | experiment``: typed settings and a run function each.

Every command starts from a preset (:mod:`metabridge.rl.presets`: each paper's protocol as
an :class:`~metabridge.rl.config.RLConfig`) and takes any RLConfig field as an option that
overrides it (``--meta-batch 10 --iterations 50``; left out, the preset's value holds). The
settings are checked when they are built: an unknown algorithm or preset, or a value out of
range, is one ``ValueError`` naming the field and the valid choices. Results go under
``--out``; finished runs are reused and partial ones resumed.

=====================  ====================  ==================
command                settings              run function
=====================  ====================  ==================
``rl train``           :class:`RLTrainConfig`       :func:`run_train`
``rl eval RUN``        :class:`RLEvalConfig`        :func:`run_eval`
``rl tradeoff``        :class:`TradeoffConfig`      :func:`run_tradeoff`
``rl experiment``      :class:`RLExperimentConfig`  :func:`run_experiment`
=====================  ====================  ==================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import Field, PositiveFloat, PositiveInt, ValidationInfo, create_model, field_validator, model_validator

from ..atomic import atomic_write_text
from ..checkpoint import CheckpointManager, CheckpointNotFoundError
from ..config import CommandConfig, KeyValues, RunPath
from ..device import torch_threads
from ..plugins import load_plugins
from ..stats import MeanCI
from .config import RLConfig

__all__ = [
    "RLEvalConfig",
    "RLExperimentConfig",
    "RLTrainConfig",
    "TradeoffConfig",
    "rl_algorithm_names",
    "run_eval",
    "run_experiment",
    "run_tradeoff",
    "run_train",
]

#: Help of the RLConfig fields that carry no description of their own.
_HELP = {
    "activation": "Policy nonlinearity.",
    "init_std": "Initial standard deviation of the Gaussian policy.",
    "gamma": "Discount factor.",
    "gae_lambda": "GAE lambda (1: Monte Carlo returns).",
    "iterations": "Meta-iterations (outer updates).",
    "device": "Torch device of the run.",
    "dtype": "Floating-point type of the policy and the statistics.",
}
#: RLConfig fields a command sets with fields of its own (so they are not overrides).
_OWN = ("algorithm", "seed", "plugins")


def rl_algorithm_names() -> list[str]:
    """The meta-RL algorithms ``--algorithm`` accepts (the built-in ones and those a plugin registered)."""
    try:
        from .algorithms.registry import RL_ALGORITHMS  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return sorted(get_args(RLConfig.model_fields["algorithm"].annotation))
    return sorted(RL_ALGORITHMS)


def _check_algorithm(name: str, plugins: list[str]) -> str:
    load_plugins(plugins)  # a plugin's algorithm is a name like the built-in ones
    names = rl_algorithm_names()
    if name not in names:
        raise ValueError(
            f"unknown meta-RL algorithm {name!r}; choose one of {', '.join(names)} (or register your "
            "own with register_rl_algorithm and --plugin MODULE)"
        )
    return name


def _check_preset(name: str | None) -> str | None:
    from .presets import available_presets

    if name is not None and name not in available_presets():
        raise ValueError(f"unknown meta-RL preset {name!r}; available: {', '.join(available_presets())}")
    return name


class _RLOverrides(CommandConfig):
    """Settings whose RLConfig fields override a preset's (generated below, one per RLConfig field)."""

    def rl_overrides(self) -> dict[str, Any]:
        """The RLConfig fields given (``None``, or an empty mapping, means: keep the preset's)."""
        values = {name: getattr(self, name) for name in RLConfig.model_fields if name not in _OWN}
        return {k: v for k, v in values.items() if v is not None and v != {}}


def _override_fields() -> dict[str, Any]:
    """One optional field per RLConfig field, with its type, bounds and help (the preset's value by default)."""
    fields: dict[str, Any] = {}
    for name, info in RLConfig.model_fields.items():
        if name in _OWN:
            continue
        text = (info.description or _HELP.get(name, name.replace("_", " "))).rstrip(".")
        text = text[0].upper() + text[1:]
        if info.annotation is not None and getattr(info.annotation, "__origin__", None) is dict:
            help_text = f"{text} as KEY=VALUE pairs, added to the preset's [default: the preset's]."
            fields[name] = (Annotated[info.annotation, KeyValues], Field(default_factory=dict, description=help_text))
            continue
        typ: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = (typ | None, Field(None, description=f"{text} [default: the preset's]."))
    return fields


if TYPE_CHECKING:
    _RLSettings = _RLOverrides
else:
    _RLSettings = create_model("_RLSettings", __base__=_RLOverrides, **_override_fields())


# ------------------------------------------------------------------- train
class RLTrainConfig(_RLSettings):
    """Settings of ``metabridge rl train``: a preset, an algorithm and any RLConfig field overriding the preset.

    The run directory's ``config.json`` (written by the trainer) is the resolved RLConfig; it
    reads back as ``--config RUN/config.json``."""

    out: Path = Field(
        Path("runs/rl/train"), description="Run directory: config.json (the resolved RLConfig), metrics.jsonl, last.pt."
    )
    preset: str | None = Field(
        "navigation-finn",
        description=(
            "The protocol the run starts from: navigation-finn, halfcheetah-vel-gao, halfcheetah-vel-small, "
            "halfcheetah-vel-small-gao-steps or metaworld-ml1-reach (metabridge list rl-presets); None: RLConfig's "
            "defaults."
        ),
    )
    algorithm: str = Field(
        "maml-trpo",
        description=(
            "maml-trpo, fo-maml-trpo, drs-trpo, drs-ppo, or one a --plugin module registered (metabridge list "
            "rl-algorithms)."
        ),
    )
    seed: int = Field(0, description="Seed of the policy initialisation and of every sampled task and action.")
    resume: bool = Field(
        False,
        description="Continue the run in --out from its last checkpoint (bit-exact); its "
        "own settings hold, changed only by the options given (e.g. --iterations to train longer).",
    )
    overwrite: bool = Field(False, description="Start again in an --out that holds a run.")
    threads: PositiveInt | None = Field(None, description="Torch CPU threads while the run trains [default: torch's].")
    progress: bool = Field(True, description="Show a progress bar.")

    _preset = field_validator("preset")(_check_preset)

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, name: str, info: ValidationInfo) -> str:
        return _check_algorithm(name, info.data.get("plugins") or [])

    @model_validator(mode="after")
    def _consistent(self) -> RLTrainConfig:
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite discards it; pass one of them")
        return self

    def rl_config(self) -> RLConfig:
        """The run's RLConfig: the preset for the algorithm, with the fields given here applied; with
        ``resume``, the settings the run in ``out`` was started with, with the fields given here applied."""
        from .presets import preset_config, validated_rl_config

        saved = self._saved_run()
        if saved is not None:
            return validated_rl_config(**self._applied_to(saved))
        over = {**self.rl_overrides(), "seed": self.seed, "plugins": list(self.plugins)}
        if self.preset is None:
            return validated_rl_config(algorithm=self.algorithm, **over)
        return preset_config(self.preset, self.algorithm, **over)

    def write_resolved(self) -> Path:
        """Write the command's settings as ``out/command.json`` (``--config`` reads them back). The run's
        resolved RLConfig is the trainer's own ``config.json``, written when the run starts and read back
        by ``--resume``, so this never writes over it."""
        path = Path(self.out) / "command.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path

    def _saved_run(self) -> dict[str, Any] | None:
        """The RLConfig the run in ``out`` was started with, when resuming one."""
        path = Path(self.out) / "config.json"
        return json.loads(path.read_text(encoding="utf-8")) if self.resume and path.is_file() else None

    def _applied_to(self, saved: dict[str, Any]) -> dict[str, Any]:
        """``saved`` with the fields given here (mappings added to the saved ones; algorithm, seed and
        plugins only where they differ from their defaults, so that a plain ``--resume`` keeps the run's)."""
        over = self.rl_overrides()
        for key in ("env_kwargs", "algorithm_kwargs"):
            if key in over:
                over[key] = {**saved.get(key, {}), **over[key]}
        defaults = {k: type(self).model_fields[k].get_default(call_default_factory=True) for k in _OWN}
        own = {k: getattr(self, k) for k in _OWN if getattr(self, k) != defaults[k]}
        return {**saved, **own, **over}


def run_train(config: RLTrainConfig) -> Any:
    """Train one meta-RL run (MAML-TRPO, first-order MAML-TRPO, DRS-TRPO, DRS-PPO or a registered
    algorithm) and print the returns after 0..K test updates with their 95% intervals.

    Data-parallel over W processes: ``torchrun --nproc-per-node W -m metabridge rl train ...``
    (the meta-batch must split evenly; each rank samples its own tasks, the update is the
    one-process update on all of them; resume with the same W). Returns the
    :class:`~metabridge.rl.trainer.RLResult`."""
    from ..distributed import init_from_environment
    from .trainer import train_rl

    load_plugins(config.plugins)
    rl_config = config.rl_config()
    with torch_threads(config.threads):
        context = init_from_environment(rl_config.device)  # one process outside torchrun
        result = train_rl(
            rl_config,
            config.out,
            resume=config.resume,
            overwrite=config.overwrite,
            progress=config.progress,
            distributed=context,
        )
    if context.is_main:
        final = result.final or {}
        print(
            f"{rl_config.algorithm} on {rl_config.env}: {result.iteration} iterations, {result.env_steps:,} env "
            f"steps, {result.seconds:.0f} s of training"
        )
        _print_returns(final.get("returns", []), final.get("returns_ci95"), final.get("success"), rl_config.eval_tasks)
    return result


def _print_returns(returns: list[float], ci95: list[float] | None, success: list[float] | None, tasks: int) -> None:
    """One line per number of test updates: mean return +- 95% CI over the held-out tasks (and success)."""
    print(f"returns after k updates (mean ± 95% CI over {tasks} held-out tasks):")
    for k, r in enumerate(returns):
        ci = MeanCI(r, ci95[k], tasks) if ci95 else None
        text = f"{ci.mean:.2f} ± {ci.ci95:.2f}" if ci is not None else f"{r:.2f}"
        extra = f"  success {success[k]:.3f}" if success else ""
        print(f"  after {k} updates: return {text}{extra}")


# -------------------------------------------------------------------- eval
class RLEvalConfig(CommandConfig):
    """Settings of ``metabridge rl eval RUN``: fine-tune a trained run's policy on held-out tasks."""

    run: RunPath = Field(description="Run directory of metabridge rl train.")
    out: Path = Field(Path("runs/rl/eval"), description="Folder for eval.json and config.json.")
    updates: int | None = Field(
        None, ge=0, description="Test-time policy-gradient updates K [default: the run's eval_updates]."
    )
    tasks: PositiveInt | None = Field(None, description="Held-out tasks [default: the run's eval_tasks].")
    rollouts: PositiveInt | None = Field(
        None, description="Episodes per task per update [default: the run's eval_rollouts]."
    )
    lrs: list[PositiveFloat] | None = Field(
        None, min_length=1, description=("Step size of each update, the last repeating [default: the run's eval_lrs].")
    )
    threads: PositiveInt | None = Field(None, description="Torch CPU threads while evaluating [default: torch's].")


def run_eval(config: RLEvalConfig) -> dict[str, Any]:
    """Returns after 0..K fine-tuning updates of a trained run, as mean ± 95% CI over the held-out
    tasks (Finn et al. 2017, Fig. 5); printed, written to ``out/eval.json`` and returned."""
    from .trainer import evaluate_policy, load_rl_run

    load_plugins(config.plugins)
    run = Path(config.run)
    if not CheckpointManager(run).exists():
        raise CheckpointNotFoundError(f"no run in {run}; train one with metabridge rl train --out {run}.")
    with torch_threads(config.threads):
        rl_config, env, algorithm, iteration = load_rl_run(run)
        over = {
            "eval_updates": config.updates,
            "eval_tasks": config.tasks,
            "eval_rollouts": config.rollouts,
            "eval_lrs": config.lrs,
        }
        rl_config = rl_config.model_copy(update={k: v for k, v in over.items() if v is not None})
        try:
            res = evaluate_policy(rl_config, env, algorithm.policy)
        finally:
            env.close()
    returns, ci95, success = res.mean_returns(), res.returns_ci95(), res.mean_success()
    report = {
        "run": str(run),
        "iteration": iteration,
        "returns": returns,
        "returns_ci95": ci95,
        "success": success,
        "success_ci95": res.success_ci95(),
        "eval_tasks": rl_config.eval_tasks,
        "eval_rollouts": rl_config.eval_rollouts,
        "lrs": rl_config.eval_schedule(),
    }
    config.write_resolved()
    atomic_write_text(Path(config.out) / "eval.json", json.dumps(report, indent=2) + "\n")
    print(f"{rl_config.algorithm} at iteration {iteration} on {rl_config.env}:")
    _print_returns(returns, ci95, success, rl_config.eval_tasks)
    return report


# ---------------------------------------------------------------- tradeoff
class TradeoffConfig(_RLSettings):
    """Settings of ``metabridge rl tradeoff``: Gao & Sener's trade-off map over seeds."""

    out: Path = Field(
        Path("runs/rl/tradeoff"), description="Folder for tradeoff.json, tradeoff.png, table.md and config.json."
    )
    runs: Path | None = Field(
        None, description="Folder of the per-seed runs, reused or resumed on a re-run [default: OUT/runs]."
    )
    preset: str = Field(
        "navigation-finn",
        description="The protocol (navigation-finn, halfcheetah-vel-small, halfcheetah-vel-gao, ...).",
    )
    seeds: list[int] = Field(
        [0, 1, 2, 3, 4], min_length=2, description="Seeds of every method (>= 2 for the Welch test; Gao & Sener use 5)."
    )
    drs: Literal["drs-trpo", "drs-ppo"] = Field(
        "drs-trpo", description="The DRS method; it gets 2x MAML's iterations (equal samples)."
    )
    maml: Literal["maml-trpo", "fo-maml-trpo"] = Field("maml-trpo", description="The MAML method.")
    threads: PositiveInt | None = Field(None, description="Torch CPU threads while training [default: torch's].")
    progress: bool = Field(True, description="Show progress bars.")

    _preset = field_validator("preset")(_check_preset)


def run_tradeoff(config: TradeoffConfig) -> dict[str, Any]:
    """Gao & Sener's trade-off map: sign(DRS - MAML)(1 - 2p) per checkpoint x test updates over seeds,
    p the one-sided Welch p-value (:func:`metabridge.rl.experiments.tradeoff_experiment`)."""
    from .experiments import tradeoff_experiment

    load_plugins(config.plugins)
    config.write_resolved()
    runs = config.runs or Path(config.out) / "runs"
    with torch_threads(config.threads):
        return tradeoff_experiment(
            config.preset,
            Path(config.out),
            runs,
            config.seeds,
            config.drs,
            config.maml,
            config.progress,
            **config.rl_overrides(),
        )


# -------------------------------------------------------------- experiment
EXPERIMENTS = {
    "navigation": "Finn et al.'s 2D navigation: MAML-TRPO, DRS-TRPO and a random policy against Finn's returns",
    "halfcheetah-vel": "HalfCheetah-Vel, scaled down: MAML-TRPO vs DRS-TRPO vs DRS-PPO at equal samples",
    "halfcheetah-vel-gao-steps": "the same with Gao & Sener's step sizes (inner 0.01, MAML max KL 0.001)",
    "metaworld-reach": "Meta-World ML1 reach-v3, scaled down: success after adaptation for MAML-TRPO and DRS-TRPO",
}
ExperimentName = Literal["navigation", "halfcheetah-vel", "halfcheetah-vel-gao-steps", "metaworld-reach"]


class RLExperimentConfig(_RLSettings):
    """Settings of ``metabridge rl experiment``: one of the papers' meta-RL experiments."""

    name: ExperimentName = Field("navigation", description="; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()) + ".")
    out: Path = Field(
        Path("runs/rl/experiment"), description="Folder for results.json, returns.png, table.md and config.json."
    )
    runs: Path | None = Field(
        None, description="Folder of the runs, reused or resumed on a re-run [default: OUT/runs]."
    )
    seed: int = Field(0, description="Seed of every run.")
    threads: PositiveInt | None = Field(None, description="Torch CPU threads while training [default: torch's].")
    progress: bool = Field(True, description="Show progress bars.")


def run_experiment(config: RLExperimentConfig) -> dict[str, Any]:
    """Run one of the papers' meta-RL experiments and write results.json, returns.png and table.md
    (:mod:`metabridge.rl.experiments`)."""
    from .experiments import comparison_experiment, navigation_experiment

    load_plugins(config.plugins)
    config.write_resolved()
    out = Path(config.out)
    runs = config.runs or out / "runs"
    over = config.rl_overrides()
    with torch_threads(config.threads):
        if config.name == "navigation":
            return navigation_experiment(out, runs, config.seed, config.progress, **over)
        if config.name.startswith("halfcheetah-vel"):
            preset = "halfcheetah-vel-small" if config.name == "halfcheetah-vel" else "halfcheetah-vel-small-gao-steps"
            return comparison_experiment(
                preset,
                out,
                runs,
                ("maml-trpo", "drs-trpo", "drs-ppo"),
                config.seed,
                True,
                None,
                "scaled down: 10 tasks x 10 rollouts, horizon 100, 60 MAML "
                "iterations; the paper's budget: metabridge rl tradeoff --preset "
                "halfcheetah-vel-gao",
                config.progress,
                **over,
            )
        return comparison_experiment(
            "metaworld-ml1-reach",
            out,
            runs,
            ("maml-trpo", "drs-trpo"),
            config.seed,
            True,
            None,
            "scaled down: 10 tasks x 10 rollouts, 40 MAML iterations (Gao & Sener: 20 x 10, 10001 iterations)",
            config.progress,
            **over,
        )
