"""The command table: every ``metabridge`` command is a settings model plus a run function,
both named as ``module:attribute`` and imported only when that command runs (so
``metabridge --help`` imports neither plotting, benchmark nor meta-RL code)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..config import CommandConfig
from ._parse import UsageError, parse


@dataclass(frozen=True)
class Command:
    """One command: its settings model, its run function and the line ``metabridge --help`` shows."""

    config: str
    run: str
    summary: str


def _here(name: str) -> str:
    return f"metabridge.cli.{name}"


COMMANDS: dict[str, Command] = {
    "eval": Command(
        _here("_runs:EvalConfig"),
        _here("_runs:run_eval"),
        "Score a trained run RUN on fixed episodes (mean +- 95% CI; accuracy in percent).",
    ),
    "export": Command(
        _here("_runs:ExportConfig"),
        _here("_runs:run_export"),
        "Write a run's weights as safetensors with its construction record.",
    ),
    "list": Command(
        _here("_list:ListConfig"),
        _here("_list:run_list"),
        "List the names a registry holds: algorithms, models, datasets, weightings, ...",
    ),
    "compare": Command(
        "metabridge.benchmarks.compare:CompareConfig",
        "metabridge.benchmarks.compare:run",
        "Train few-shot methods on equal budgets and score them on identical test episodes.",
    ),
    "multitask": Command(
        "metabridge.multitask.commands:MultitaskConfig",
        "metabridge.multitask.commands:run",
        "Compare multi-task loss-weighting methods on a benchmark (delta_m, per-task metrics).",
    ),
}
GROUPS: dict[str, tuple[str, dict[str, Command]]] = {
    "theory": (
        "Theory lab: the MAML/DRS trade-off in linear regression and the MTL/GBML closeness.",
        {
            "linreg": Command(
                "metabridge.theory.commands:LinregConfig",
                "metabridge.theory.commands:run_linreg",
                "Gao & Sener's linear-regression trade-off between MAML and DRS.",
            ),
            "closeness": Command(
                "metabridge.theory.commands:ClosenessConfig",
                "metabridge.theory.commands:run_closeness",
                "Wang et al.'s closeness of MTL and gradient-based meta-learning.",
            ),
        },
    ),
    "rl": (
        "Meta-RL: MAML-TRPO and domain-randomized search on navigation, MuJoCo and Meta-World.",
        {
            "train": Command(
                "metabridge.rl.commands:RLTrainConfig",
                "metabridge.rl.commands:run_train",
                "Train a meta-RL algorithm (or a preset protocol).",
            ),
            "eval": Command(
                "metabridge.rl.commands:RLEvalConfig",
                "metabridge.rl.commands:run_eval",
                "Score a trained meta-RL run RUN: return after adaptation, mean +- 95% CI.",
            ),
            "tradeoff": Command(
                "metabridge.rl.commands:TradeoffConfig",
                "metabridge.rl.commands:run_tradeoff",
                "The MAML/DRS trade-off across task-variance levels.",
            ),
            "experiment": Command(
                "metabridge.rl.commands:RLExperimentConfig",
                "metabridge.rl.commands:run_experiment",
                "Several seeds of several algorithms on one protocol, with a summary.",
            ),
        },
    ),
}
TRAIN_SUMMARY = "Train a few-shot algorithm on a task family; checkpoints and metrics go to --out."
BENCH_SUMMARY = "Run a benchmark harness by name: metabridge bench NAME [OPTIONS]."
#: Old command names that still work, for one release, with a warning naming the new one.
ALIASES = {"mtl": "multitask"}


def _load(spec: str) -> Any:
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def _listing(commands: dict[str, str]) -> str:
    width = max(map(len, commands)) + 2
    return "\n".join(f"  {name:<{width}}{text}" for name, text in commands.items())


def top_help() -> str:
    """``metabridge --help``: every command with one line (nothing imported)."""
    lines = {
        "train": TRAIN_SUMMARY,
        **{n: c.summary for n, c in COMMANDS.items()},
        **{n: text for n, (text, _) in GROUPS.items()},
        "bench": BENCH_SUMMARY,
    }
    return (
        "usage: metabridge COMMAND [OPTIONS]\n\nMulti-task learning and meta-learning in one library: train, "
        "evaluate and benchmark.\n\ncommands:\n" + _listing(lines) + "\n\n'metabridge COMMAND --help' lists a "
        "command's options; every command also takes --config FILE (TOML, YAML or JSON). Accuracy is "
        "reported in percent.\n"
    )


def _unknown(what: str, name: str, known: Sequence[str], prog: str) -> UsageError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return UsageError(f"unknown {what} {name!r}{hint} (choose one of {', '.join(known)}; see {prog} --help)")


def run_command(command: Command, argv: Sequence[str], prog: str) -> int:
    """Parse ``argv`` into the command's settings, write them into its out folder, run it."""
    model: type[BaseModel] = _load(command.config)
    run: Callable[[Any], Any] = _load(command.run)
    config = parse(model, argv, prog, description=command.summary.replace("``", ""))
    if isinstance(config, CommandConfig):
        config.write_resolved()
    result = run(config)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def available_benchmarks() -> list[str]:
    """Modules of :mod:`metabridge.benchmarks` that ``bench NAME`` runs (not ``_private``, not ``compare``)."""
    import metabridge.benchmarks as pkg

    return sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and m.name != "compare"
    )


def run_bench(argv: Sequence[str]) -> int:
    """``metabridge bench NAME [OPTIONS]``: ``metabridge.benchmarks.NAME``'s ``CONFIG`` and ``run``."""
    names = available_benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: metabridge bench NAME [OPTIONS]\n\n{BENCH_SUMMARY}\n\nbenchmarks:\n  " + "\n  ".join(names))
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    if name not in names:
        raise _unknown("benchmark", name, names, "metabridge bench")
    module = importlib.import_module(f"metabridge.benchmarks.{name}")
    config = getattr(module, "CONFIG", None)
    if config is None:
        raise UsageError(f"benchmark {name} defines no CONFIG settings model; it cannot run from the command line.")
    summary = (module.__doc__ or "").strip().split("\n\n")[0]  # the docstring's first paragraph
    command = Command(f"{module.__name__}:CONFIG", f"{module.__name__}:run", summary)
    return run_command(command, rest, f"metabridge bench {name}")


def dispatch(argv: Sequence[str]) -> int:
    """Run the command ``argv`` names; the exit status."""
    from ._fewshot import train_command

    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(top_help(), end="")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "--version":
        from .. import __version__

        print(f"metabridge {__version__}")
        return 0
    if name in ALIASES:
        print(
            f"metabridge: '{name}' is now 'metabridge {ALIASES[name]}'; the old name will be removed.", file=sys.stderr
        )
        name = ALIASES[name]
    if name == "train":
        return train_command(rest)
    if name == "bench":
        return run_bench(rest)
    if name in COMMANDS:
        return run_command(COMMANDS[name], rest, f"metabridge {name}")
    if name in GROUPS:
        text, commands = GROUPS[name]
        if not rest or rest[0] in ("-h", "--help"):
            print(
                f"usage: metabridge {name} COMMAND [OPTIONS]\n\n{text}\n\ncommands:\n"
                + _listing({n: c.summary for n, c in commands.items()})
            )
            return 0 if rest else 2
        if rest[0] not in commands:
            raise _unknown(f"{name} command", rest[0], list(commands), f"metabridge {name}")
        return run_command(commands[rest[0]], rest[1:], f"metabridge {name} {rest[0]}")
    known = ["train", *COMMANDS, *GROUPS, "bench"]
    raise _unknown("command", name, known, "metabridge")
