"""The ``metabridge`` command line: ``train``, ``eval``, ``bench NAME`` (and ``theory``, ``compare``
when those modules are installed).

Every command's ``--help`` explains each option. Errors caused by the input (bad
option values, episode shapes the data cannot supply, missing or damaged
checkpoints, a diverging run) print one ``Error: ...`` line naming the fix and exit
with status 2, without a traceback; set ``METABRIDGE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from typer.core import TyperGroup

from .checkpoint import BEST, LAST, CheckpointError
from .config import ExperimentConfig

F = TypeVar("F", bound=Callable[..., Any])
_D = ExperimentConfig()

app = typer.Typer(
    name="metabridge",
    help="Multi-task learning and meta-learning in one library: train, evaluate and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# --------------------------------------------------------------------- errors
def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input is wrong", not "metabridge has a bug"."""
    from .train import NonFiniteLossError

    types: list[type[BaseException]] = [ValueError, FileNotFoundError, CheckpointError, NonFiniteLossError]
    for module, name in (("metabridge.data.spec", "DatasetFormatError"), ("metabridge.data.download", "DownloadError")):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def friendly_errors(fn: F) -> F:
    """Turn input errors into ``Error: ...`` on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_error_types() as exc:
            if os.environ.get("METABRIDGE_DEBUG"):
                raise
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------- train
def _parse_hparams(pairs: list[str]) -> dict[str, Any]:
    """``["inner_lr=0.01", "first_order=true"]`` -> ``{"inner_lr": 0.01, "first_order": True}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--hp expects KEY=VALUE (got {pair!r}); e.g. --hp inner_lr=0.01.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string such as --hp head=logistic
        out[key] = value
    return out


#: train-command option name -> ExperimentConfig field (where they differ).
_OPTION_FIELD = {"out": "out_dir"}
_NOT_CONFIG = {"ctx", "config_file", "resume", "overwrite", "progress", "hp"}


def _explicit(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@app.command()
@friendly_errors
def train(
    ctx: typer.Context,
    task: str = typer.Option(_D.task, help="Task family: 'sinusoid' (Finn et al. 2017 regression) or a dataset "
                             "name known to metabridge.data.registry (e.g. omniglot, glyphs)."),
    data_root: str = typer.Option(_D.data_root, help="Directory holding datasets (ignored for sinusoid)."),
    download: bool = typer.Option(_D.download, help="Let dataset loaders download missing files (checksummed)."),
    n_way: int = typer.Option(_D.n_way, help="Classes per episode (classification only)."),
    k_shot: int = typer.Option(_D.k_shot, help="Training support examples per class (classification) or "
                               "support points per task (sinusoid)."),
    q_query: int = typer.Option(_D.q_query, help="Query examples per class (classification) or query points "
                                "per task (sinusoid)."),
    eval_k_shot: Optional[int] = typer.Option(None, help="Support size of validation/test episodes "
                                              "[default: same as --k-shot]."),
    num_train_tasks: Optional[int] = typer.Option(None, help="Sinusoid only: draw training tasks from a fixed "
                                                  "pool of this many (MTL's one head per task) [default: fresh "
                                                  "tasks every step]."),
    image_size: Optional[int] = typer.Option(None, help="Side length in pixels that images are loaded at "
                                             "[default: the dataset's standard size]."),
    algorithm: str = typer.Option(_D.algorithm, help="Method: mtl, drs, maml, fomaml, anil, reptile, metasgd "
                                  "or protonet."),
    hp: list[str] = typer.Option([], "--hp", metavar="KEY=VALUE",
                                 help="Algorithm hyperparameter, repeatable; VALUE is read as JSON when it "
                                 "parses (e.g. --hp inner_steps=5 --hp inner_lr=0.01 --hp first_order=true)."),
    model: Optional[str] = typer.Option(None, help="Backbone: mlp, conv4 or resnet12 [default: mlp for "
                                        "sinusoid, conv4 for images]."),
    optimizer: str = typer.Option(_D.optimizer, help="Outer optimizer: adam, adamw, radam or sgd."),
    lr: float = typer.Option(_D.lr, help="Outer learning rate (> 0)."),
    weight_decay: float = typer.Option(_D.weight_decay, help="Weight decay of the outer optimizer (>= 0)."),
    momentum: float = typer.Option(_D.momentum, help="Momentum (sgd only), in [0, 1)."),
    lr_schedule: str = typer.Option(_D.lr_schedule, help="Learning-rate schedule: constant or cosine."),
    grad_clip: Optional[float] = typer.Option(None, help="Clip the global gradient norm to this value "
                                              "[default: no clipping]."),
    meta_batch_size: int = typer.Option(_D.meta_batch_size, help="Tasks per outer step."),
    steps: int = typer.Option(_D.steps, help="Number of outer optimizer steps (>= 1); with --resume, may "
                              "be raised to train longer."),
    eval_every: int = typer.Option(_D.eval_every, help="Validate every this many steps and at the end "
                                   "(0 = never)."),
    val_episodes: int = typer.Option(_D.val_episodes, help="Fixed validation episodes per validation."),
    test_episodes: int = typer.Option(_D.test_episodes, help="Fixed test episodes (used by metabridge eval)."),
    eval_batch_size: int = typer.Option(_D.eval_batch_size, help="Episodes evaluated at once."),
    checkpoint_every: int = typer.Option(_D.checkpoint_every, help="Write a checkpoint every this many steps "
                                         "and at the end (0 = only at the end)."),
    log_every: int = typer.Option(_D.log_every, help="Write a training record to metrics.jsonl every this "
                                  "many steps."),
    seed: int = typer.Option(_D.seed, help="Seed for initialisation and training tasks."),
    val_seed: int = typer.Option(_D.val_seed, help="Seed fixing the validation episodes."),
    test_seed: int = typer.Option(_D.test_seed, help="Seed fixing the test episodes."),
    device: str = typer.Option(_D.device, help="auto (CUDA when available), cpu, cuda or cuda:N."),
    deterministic: bool = typer.Option(_D.deterministic, help="Use deterministic kernels (slower; needed for "
                                       "bit-exact resume on GPU)."),
    out: str = typer.Option(_D.out_dir, help="Run directory: config.json, metrics.jsonl, last.pt, "
                            "last.prev.pt, best.pt."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Start from this JSON config (e.g. a "
                                               "run's config.json); options given here override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest "
                                "checkpoint, with its saved config (only --steps, --device, intervals and "
                                "episode counts may change)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh in --out even if it holds "
                                   "checkpoints (they are deleted)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train an algorithm on a task family; checkpoints and metrics go to --out."""
    from .train import RESUMABLE_OVERRIDES, Trainer, resume_config

    params = {k: v for k, v in ctx.params.items() if k not in _NOT_CONFIG}
    explicit = {_OPTION_FIELD.get(k, k): v for k, v in params.items() if _explicit(ctx, k)}
    if resume:
        if config_file is not None or hp:
            raise ValueError("--resume uses the run's saved config; drop --config and --hp.")
        explicit.pop("out_dir", None)
        fixed = sorted(set(explicit) - RESUMABLE_OVERRIDES)
        if fixed:
            raise ValueError(
                f"--resume keeps the run's config; {', '.join('--' + f.replace('_', '-') for f in fixed)} "
                "cannot change (start a new run in another --out instead)."
            )
        config = resume_config(out, **explicit)
    else:
        base = ExperimentConfig.load(config_file) if config_file is not None else ExperimentConfig()
        data = base.to_dict()
        data.update(explicit)
        if config_file is None:
            data["out_dir"] = out
        data["hparams"] = {**base.hparams, **_parse_hparams(hp)}
        config = ExperimentConfig.from_dict(data).validate()
    trainer = Trainer(config, resume=resume, overwrite=overwrite, progress=progress)
    try:
        result = trainer.run()
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted at step {trainer.step}; continue from the last checkpoint with: "
                   f"metabridge train --resume --out {config.out_dir}", err=True)
        raise typer.Exit(130) from None
    msg = f"trained {config.algorithm} on {config.task} to step {result.step}; final loss {result.last_loss:.4g}"
    if result.val is not None:
        msg += f"; validation {'accuracy' if not config.is_regression else 'MSE'} {result.val}"
    typer.echo(msg)
    typer.echo(f"checkpoints in {result.run_dir}; evaluate with: metabridge eval {result.run_dir}")


# ----------------------------------------------------------------------- eval
def _pick_checkpoint(run: Path, which: str) -> Path:
    if run.is_file():
        return run
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is neither a run directory nor a checkpoint file; pass the --out of a run.")
    if which == "auto":
        return run / BEST if (run / BEST).is_file() else run / LAST
    if which in ("best", "last"):
        return run / (BEST if which == "best" else LAST)
    raise ValueError(f"--checkpoint must be auto, best or last (got {which!r}).")


@app.command("eval")
@friendly_errors
def eval_cmd(
    run: Path = typer.Argument(..., help="A run directory (the --out of metabridge train) or a checkpoint file."),
    checkpoint: str = typer.Option("auto", help="Which checkpoint of the run: best, last, or auto (best when "
                                   "the run validated, else last)."),
    split: str = typer.Option("test", help="Episodes to score: test or val."),
    episodes: Optional[int] = typer.Option(None, help="Number of fixed episodes [default: the run's "
                                           "test_episodes / val_episodes, 600 unless changed]."),
    seed: Optional[int] = typer.Option(None, help="Seed fixing the episodes [default: the run's test_seed / "
                                       "val_seed, so every method is scored on the same tasks]."),
    k_shot: Optional[int] = typer.Option(None, help="Support size of the evaluation episodes [default: the "
                                         "run's eval_k_shot]."),
    batch_size: Optional[int] = typer.Option(None, help="Episodes evaluated at once [default: the run's "
                                             "eval_batch_size]."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu, cuda or cuda:N."),
    output: Optional[Path] = typer.Option(None, help="Also write the result as JSON to this file."),
    hp: list[str] = typer.Option([], "--hp", metavar="KEY=VALUE",
                                 help="Override a test-time hyperparameter of the run's algorithm, repeatable "
                                 "(e.g. --hp finetune_steps=20 for MTL, --hp eval_steps=10 for MAML, "
                                 "--hp C=1 for a logistic head refit). Weights are the checkpoint's; an "
                                 "override that changes parameter shapes is refused."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score a trained run on fixed episodes: mean +- 95% confidence interval."""
    from .checkpoint import load_checkpoint
    from .device import resolve_device, tune_cpu_allocator
    from .evaluate import evaluate
    from .experiment import build_experiment
    from .train import seed_everything

    if split not in ("test", "val"):
        raise ValueError(f"--split must be test or val (got {split!r}).")
    path = _pick_checkpoint(run, checkpoint)
    ckpt = load_checkpoint(path)
    config = ExperimentConfig.from_dict(ckpt["config"])
    if k_shot is not None:
        config.eval_k_shot = k_shot
    overrides = _parse_hparams(hp)
    config.hparams = {**config.hparams, **overrides}
    config.validate()
    n = episodes if episodes is not None else (config.test_episodes if split == "test" else config.val_episodes)
    s = seed if seed is not None else (config.test_seed if split == "test" else config.val_seed)
    bs = batch_size if batch_size is not None else config.eval_batch_size
    if n < 1 or bs < 1:
        raise ValueError(f"--episodes and --batch-size must be >= 1 (got {n}, {bs}).")
    dev = resolve_device(device)
    if dev.type == "cpu":
        tune_cpu_allocator()
    seed_everything(config.seed)
    exp = build_experiment(config)
    try:
        exp.algorithm.load_state_dict(ckpt["algorithm"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the algorithm its config describes ({exc}).") from exc
    exp.algorithm.to(dev)
    source = exp.test if split == "test" else exp.val
    result = evaluate(exp.algorithm, source.fixed_episodes(n, s, bs), dev, progress=progress, total=-(-n // bs))
    metric = "MSE" if config.is_regression else "accuracy"
    changed = "".join(f", {k}={v}" for k, v in overrides.items())
    typer.echo(f"{config.algorithm} on {config.task} ({split}, step {ckpt['step']}, {path.name}{changed}): {metric} "
               f"{result.mean:.4g} ± {result.ci95:.3g} (95% CI over {result.n} episodes, seed {s})")
    if output is not None:
        record = {"run": str(run), "checkpoint": str(path), "step": ckpt["step"], "split": split, "seed": s,
                  "metric": metric.lower(), "hparam_overrides": overrides, **result.as_dict()}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2) + "\n")


# ---------------------------------------------------------------------- bench
def available_benchmarks() -> list[str]:
    """Names of the modules in ``metabridge.benchmarks`` (those not starting with ``_``)."""
    try:
        pkg = importlib.import_module("metabridge.benchmarks")
    except ModuleNotFoundError:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def _split_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """``(summary, {arg: help})`` from a Google-style docstring's ``Args:`` section."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    helps: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if stripped and not line.startswith(" "):  # a new section ends Args
                in_args = False
                continue
            name, sep, text = stripped.partition(":")
            if sep and line.startswith("    ") and not line.startswith("     ") and name.isidentifier():
                current = name
                helps[name] = text.strip()
            elif current is not None and stripped:
                helps[current] += " " + stripped
            continue
        summary.append(line)
    return "\n".join(summary).strip(), helps


def with_option_help(main: Callable[..., Any]) -> Callable[..., Any]:
    """``main`` with each plain-default parameter turned into a ``typer.Option`` whose help
    text comes from the docstring's ``Args:`` section, so ``bench NAME --help`` explains
    every option even when the benchmark was written as an ordinary function."""
    summary, helps = _split_docstring(main.__doc__)
    sig = inspect.signature(main)
    params = []
    for p in sig.parameters.values():
        default = p.default
        if not isinstance(default, (typer.models.OptionInfo, typer.models.ArgumentInfo)) and p.name in helps:
            opt_default = ... if default is inspect.Parameter.empty else default
            p = p.replace(default=typer.Option(opt_default, help=helps[p.name]))
        params.append(p)

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return main(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__doc__ = summary or None
    return wrapper


class BenchGroup(TyperGroup):
    """``metabridge bench NAME [OPTIONS]``: runs ``metabridge.benchmarks.NAME.main``, found at call time."""

    def list_commands(self, ctx: Any) -> list[str]:
        return available_benchmarks()

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in available_benchmarks():
            return None
        module = importlib.import_module(f"metabridge.benchmarks.{cmd_name}")
        main = getattr(module, "main", None)
        if main is None:
            return None
        sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
        command = with_option_help(main)
        text = command.__doc__ or inspect.cleandoc(module.__doc__ or "")
        short = text.strip().splitlines()[0] if text.strip() else None
        sub.command(name=cmd_name, help=text, short_help=short)(friendly_errors(command))
        return typer.main.get_command(sub)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0]
        cmd = self.get_command(ctx, name) if not name.startswith("-") else None
        if cmd is None and not name.startswith("-"):
            names = available_benchmarks()
            listing = ", ".join(names) if names else "none are installed"
            ctx.fail(f"unknown benchmark {name!r}; available benchmarks: {listing}.")
        return super().resolve_command(ctx, args)


bench_app = typer.Typer(
    cls=BenchGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Run a benchmark by name: metabridge bench NAME [OPTIONS]; 'metabridge bench NAME --help' lists "
    "its options. Each is metabridge.benchmarks.NAME.main.",
)
app.add_typer(bench_app, name="bench")


# ------------------------------------------------------ optional sub-commands
#: (command name, module, attribute) of sub-apps mounted when their module exists.
#: A ``metabridge compare`` command goes here: write ``compare_app`` (a typer.Typer)
#: in ``metabridge/compare.py`` and it appears automatically.
OPTIONAL_APPS: tuple[tuple[str, str, str], ...] = (
    ("theory", "metabridge.theory.cli", "theory_app"),
    ("compare", "metabridge.compare", "compare_app"),
)


def _mount_optional_apps(target: typer.Typer) -> None:
    """Add each sub-app of :data:`OPTIONAL_APPS` whose module imports to ``target``."""
    for name, module_name, attr in OPTIONAL_APPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # not written / not installed: no such command
            print(f"metabridge: '{name}' command unavailable ({exc})", file=sys.stderr)
            continue
        except Exception as exc:  # a broken optional module must not break train/eval
            print(f"metabridge: '{name}' command unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        sub = getattr(module, attr, None)
        if isinstance(sub, typer.Typer):
            target.add_typer(sub, name=name)


_mount_optional_apps(app)


if __name__ == "__main__":  # pragma: no cover
    app()
