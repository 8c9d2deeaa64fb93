"""The ``metabridge`` command line: ``train``, ``eval``, ``export``, ``list``, ``bench NAME``,
``theory NAME`` and ``compare``.

One mechanism builds every command: ``train``'s options are generated from the fields
of :class:`~metabridge.config.ExperimentConfig`; every harness (``bench NAME``, ``theory
NAME``, ``compare``) is a plain function whose typed parameters and docstring ``Args:``
become its options (:func:`with_option_help`).

Every command's ``--help`` explains each option. Errors caused by the input (bad
option values, episode shapes the data cannot supply, missing or damaged
checkpoints, a diverging run) print one ``Error: ...`` line naming the fix and exit
with status 2, without a traceback; set ``METABRIDGE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import os
import pkgutil
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from typer.core import TyperGroup

from .checkpoint import CheckpointError
from .config import ExperimentConfig, option_name

F = TypeVar("F", bound=Callable[..., Any])

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
    from .data.download import DownloadError
    from .data.spec import DatasetFormatError
    from .rl.trainer import RLTrainingError
    from .train import NonFiniteLossError

    return (ValueError, FileNotFoundError, FileExistsError, CheckpointError, NonFiniteLossError, RLTrainingError,
            FloatingPointError, DatasetFormatError, DownloadError)


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
def _parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["inner_lr=0.01", "first_order=true"]`` -> ``{"inner_lr": 0.01, "first_order": True}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE (got {pair!r}); e.g. {flag} inner_lr=0.01.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string such as --hp head=logistic
        out[key] = value
    return out


def _parse_hparams(pairs: list[str]) -> dict[str, Any]:
    return _parse_pairs(pairs, "--hp")


#: Options of ``train`` that are not config fields.
_TRAIN_EXTRA = ("config_file", "resume", "overwrite", "progress", "tune_cpu")
#: Config fields given as repeatable KEY=VALUE / NAME options.
_PAIR_FIELDS = {"hparams": "--hp", "model_kwargs": "--model-arg"}


def _option_type(annotation: Any) -> Any:
    """The click-friendly type of a config field (``Literal`` choices become ``str``; pydantic checks them)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return str
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return Optional[_option_type(inner[0])] if len(inner) == 1 else Optional[str]
    return annotation


def _train_parameters() -> list[inspect.Parameter]:
    """One typer option per :class:`ExperimentConfig` field (help = the field's description),
    then the options that steer the command itself. Nothing here is kept by hand."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for name, field in ExperimentConfig.model_fields.items():
        help_text = field.description or ""
        if name in _PAIR_FIELDS:
            option = typer.Option([], _PAIR_FIELDS[name], metavar="KEY=VALUE", help=help_text)
            annotation: Any = list[str]
        elif name == "plugins":
            option = typer.Option([], option_name(name), metavar="MODULE", help=help_text)
            annotation = list[str]
        else:
            annotation = _option_type(field.annotation)
            decls = [option_name(name)]
            if annotation is bool:
                decls = [f"{option_name(name)}/--no-{option_name(name)[2:]}"]
            if name == "out_dir":
                decls.append("--out-dir")
            option = typer.Option(field.default, *decls, help=help_text)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    extra = {
        "config_file": (Optional[Path], typer.Option(None, "--config", help="Start from this config file (.json, "
                        ".toml or .yaml; e.g. a run's config.json); options given here override it.")),
        "resume": (bool, typer.Option(False, "--resume", help="Continue the run in --out from its newest "
                   "checkpoint with its saved config; repeating the original options is fine, changing one "
                   "other than --steps, --device, intervals and episode counts is an error.")),
        "overwrite": (bool, typer.Option(False, "--overwrite", help="Start afresh in --out even if it holds "
                      "checkpoints (they are deleted).")),
        "progress": (bool, typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")),
        "tune_cpu": (bool, typer.Option(True, "--tune-cpu/--no-tune-cpu", help="On CPU, tune this process's "
                     "glibc allocator to keep freed memory (measured 1.6x faster Conv-4 steps on 2 cores); a "
                     "library call never does this, the command opts in for its own process.")),
    }
    for name, (annotation, option) in extra.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def _explicit(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _given_config(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The config fields the user actually typed (KEY=VALUE options parsed)."""
    given: dict[str, Any] = {}
    for name in ExperimentConfig.model_fields:
        if not _explicit(ctx, name):
            continue
        value = values[name]
        if name in _PAIR_FIELDS:
            value = _parse_pairs(list(value), _PAIR_FIELDS[name])
        elif name == "plugins":
            value = list(value)
        given[name] = value
    return given


def resume_changes(saved: ExperimentConfig, given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The given values that differ from the saved run's (``hparams`` / ``model_kwargs`` per key)."""
    old = saved.to_dict()
    changed: dict[str, tuple[Any, Any]] = {}
    for name, value in given.items():
        if name in _PAIR_FIELDS:
            for key, v in value.items():
                if old[name].get(key, _MISSING) != v:
                    changed[f"{_PAIR_FIELDS[name]} {key}"] = (old[name].get(key), v)
            continue
        if name == "out_dir":
            continue
        normalized = ExperimentConfig.from_dict({**old, name: value}).to_dict()[name]
        if normalized != old[name]:
            changed[name] = (old[name], value)
    return changed


_MISSING = object()


def _absolute_if_path(task: str) -> str:
    """An own-image dataset path is stored absolute, so ``eval`` and ``--resume`` work from any
    directory; a dataset name stays as it is."""
    from .config import REGRESSION_FAMILIES
    from .data.image_folder import is_image_dataset_path
    from .data.registry import available_datasets

    if task in REGRESSION_FAMILIES or task.lower() in available_datasets():  # a name wins over a folder
        return task
    return str(Path(task).expanduser().resolve()) if is_image_dataset_path(task) else task


def _train(ctx: typer.Context, **values: Any) -> None:
    """Train an algorithm on a task family; checkpoints and metrics go to --out."""
    from .train import CONFIG_FILE, RESUMABLE_OVERRIDES, Trainer, resume_config

    given = _given_config(ctx, values)
    if "task" in given:
        given["task"] = _absolute_if_path(given["task"])
    out = values["out_dir"]
    if values["resume"]:
        if values["config_file"] is not None:
            raise ValueError("--resume uses the run's saved config; drop --config.")
        saved = resume_config(out)
        changed = resume_changes(saved, given)
        fixed = {k: v for k, v in changed.items() if k not in RESUMABLE_OVERRIDES}
        if fixed:
            detail = ", ".join(f"{k if k.startswith('--') else option_name(k)} {a!r} -> {b!r}"
                               for k, (a, b) in fixed.items())
            raise ValueError(f"--resume keeps the run's config; these differ from {Path(out) / CONFIG_FILE}: "
                             f"{detail} (repeat the run's own values, or start a new run in another --out).")
        config = resume_config(out, **{k: given[k] for k in changed})
    else:
        data = (ExperimentConfig.load(values["config_file"]).to_dict() if values["config_file"] is not None
                else ExperimentConfig().to_dict())
        for name, value in given.items():
            data[name] = {**data[name], **value} if name in _PAIR_FIELDS else value
        if values["config_file"] is None:
            data["out_dir"] = out
        config = ExperimentConfig.from_dict(data).validate()
    from .device import resolve_device
    from .distributed import init_from_environment

    context = init_from_environment(resolve_device(config.device))  # one process outside torchrun
    trainer = Trainer(config, resume=values["resume"], overwrite=values["overwrite"], progress=values["progress"],
                      distributed=context)
    with _cpu_tuning(values["tune_cpu"] and trainer.device.type == "cpu"), _one_line_warnings(), \
            _cudnn_autotune(trainer.device.type == "cuda" and not config.deterministic):
        try:
            result = trainer.run()
        except KeyboardInterrupt:
            resume = "torchrun --nproc-per-node {} -m metabridge".format(context.world_size) \
                if context.enabled else "metabridge"
            typer.echo(f"\ninterrupted at step {trainer.step}; continue from the last checkpoint with: "
                       f"{resume} train --resume --out {config.out_dir}", err=True)
            raise typer.Exit(130) from None
    if not context.is_main:
        return
    msg = f"trained {config.algorithm} on {config.task} to step {result.step}"
    if result.last_loss == result.last_loss:  # NaN when resuming trained no further step
        msg += f"; final loss {result.last_loss:.4g}"
    if result.val is not None:
        msg += f"; validation {trainer.metric} {result.val}"
    typer.echo(msg)
    if result.stopped_early:
        best = result.best or {}
        typer.echo(f"stopped early at step {result.step} of {config.steps}: validation {trainer.metric} did not "
                   f"improve for {trainer.validations_since_best} validations (--early-stopping-patience "
                   f"{config.early_stopping_patience}); best {best.get('mean', float('nan')):.4g} at step "
                   f"{best.get('step')} (best.pt)")
    typer.echo(f"checkpoints in {result.run_dir}; evaluate with: metabridge eval {result.run_dir}")


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = True`` while the block runs (fixed-shape episodes:
    cuDNN's autotuner picks each convolution's fastest kernel once); restored after it."""
    import torch

    before = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show warnings as ``metabridge: MESSAGE`` on stderr (no file:line, no source line)
    while the block runs; the previous warning display is restored after it."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: typer.echo(f"metabridge: {message}", err=True)
        yield


@contextlib.contextmanager
def _cpu_tuning(enabled: bool) -> Iterator[None]:
    """The CLI's opt-in to process-wide CPU allocator tuning (restored on exit)."""
    if not enabled:
        yield
        return
    from .device import cpu_allocator_tuning

    with cpu_allocator_tuning():
        yield


_train.__signature__ = inspect.Signature(_train_parameters())  # type: ignore[attr-defined]
_train.__annotations__ = {p.name: p.annotation for p in _train.__signature__.parameters.values()}  # type: ignore
train = app.command("train")(friendly_errors(_train))


# ----------------------------------------------------------------------- eval
def _load_for_eval(run: Path, which: str) -> tuple[dict[str, Any], Path]:
    """The checkpoint to score, falling back past damaged files with a one-line note on stderr."""
    from .checkpoint import CheckpointManager, load_checkpoint

    if run.is_file():
        return load_checkpoint(run), run
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is neither a run directory nor a checkpoint file; pass the --out of a run.")
    with _one_line_warnings():
        return CheckpointManager(run).load_for_eval(which)


@app.command("eval")
@friendly_errors
def eval_cmd(
    run: Path = typer.Argument(..., help="A run directory (the --out of metabridge train) or a checkpoint file."),
    checkpoint: str = typer.Option("auto", help="Which checkpoint of the run: best, last, or auto (best when "
                                   "the run validated, else last); a damaged one is passed over with a note."),
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
    tune_cpu: bool = typer.Option(True, "--tune-cpu/--no-tune-cpu", help="On CPU, tune this process's glibc "
                                  "allocator (see metabridge train --help)."),
) -> None:
    """Score a trained run on fixed episodes: mean +- 95% confidence interval.

    Only the scored split's data is loaded: the algorithm is rebuilt from the
    construction record stored in the checkpoint."""
    from .checkpoint import CheckpointError
    from .config import validate_hparams
    from .device import resolve_device
    from .evaluate import evaluate
    from .experiment import build_from_record, build_task_source, build_task_sources, algorithm_record
    from .train import seed_everything, task_metric

    if split not in ("test", "val"):
        raise ValueError(f"--split must be test or val (got {split!r}).")
    ckpt, path = _load_for_eval(run, checkpoint)
    config = ExperimentConfig.from_dict(ckpt["config"])
    if k_shot is not None:
        config.eval_k_shot = k_shot
    overrides = _parse_hparams(hp)
    n = episodes if episodes is not None else (config.test_episodes if split == "test" else config.val_episodes)
    s = seed if seed is not None else (config.test_seed if split == "test" else config.val_seed)
    bs = batch_size if batch_size is not None else config.eval_batch_size
    if n < 1 or bs < 1:
        raise ValueError(f"--episodes and --batch-size must be >= 1 (got {n}, {bs}).")
    dev = resolve_device(device)
    seed_everything(config.seed)
    record = ckpt.get("build")
    if record is None:  # checkpoints written before construction records: derive it from the data
        config.validate()
        train_source, _, _, info = build_task_sources(config)
        record = algorithm_record(config, info)
    record = {**record, "hparams": {**record["hparams"], **overrides}}
    config.hparams = record["hparams"]
    config.validate()
    validate_hparams(record["algorithm"], record["hparams"])
    algorithm = build_from_record(record)
    try:
        algorithm.load_state_dict(ckpt["algorithm"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the algorithm its config describes ({exc}).") from exc
    algorithm.to(dev)
    source = build_task_source(config, split, dev)  # the data follow --device, not the run's saved device
    with _cpu_tuning(tune_cpu and dev.type == "cpu"):
        result = evaluate(algorithm, source.fixed_episodes(n, s, bs), dev, progress=progress, total=-(-n // bs))
    metric = task_metric(source)
    label = "MSE" if metric == "mse" else "accuracy"
    changed = "".join(f", {k}={v}" for k, v in overrides.items())
    typer.echo(f"{config.algorithm} on {config.task} ({split}, step {ckpt['step']}, {path.name}{changed}): {label} "
               f"{result.mean:.4g} ± {result.ci95:.3g} (95% CI over {result.n} episodes, seed {s})")
    if output is not None:
        out_record = {"run": str(run), "checkpoint": str(path), "step": ckpt["step"], "split": split, "seed": s,
                      "metric": metric, "hparam_overrides": overrides, **result.as_dict()}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(out_record, indent=2) + "\n")


# --------------------------------------------------------------------- export
@app.command("export")
@friendly_errors
def export_cmd(
    run: Path = typer.Argument(..., help="A run directory (the --out of metabridge train) or a checkpoint file."),
    out: Path = typer.Option(..., "--out", help="The .safetensors file to write."),
    checkpoint: str = typer.Option("auto", help="Which checkpoint of the run: best, last or auto."),
) -> None:
    """Write a run's weights as safetensors, with the construction record as metadata
    (metabridge.load_pretrained(path) rebuilds the trained algorithm from the file alone)."""
    from .export import save_weights

    ckpt, path = _load_for_eval(run, checkpoint)
    if ckpt.get("build") is None:
        raise ValueError(f"{path} predates construction records; re-train, or load it with metabridge eval.")
    save_weights(ckpt["algorithm"], out, ckpt["build"], step=int(ckpt["step"]))
    typer.echo(f"wrote {out} ({ckpt['build']['algorithm']}, step {ckpt['step']}, from {path.name})")


# ----------------------------------------------------------------------- list
@app.command("list")
@friendly_errors
def list_cmd(
    what: str = typer.Argument("algorithms", help="algorithms (with their hyperparameters), models, datasets, "
                               "weightings (multi-task methods, with what each reads), mtl-models, mtl-benchmarks, "
                               "rl-envs (meta-RL environment families) or rl-presets (meta-RL protocols)."),
    plugin: list[str] = typer.Option([], "--plugin", metavar="MODULE", help="Import this module first (one's own "
                                     "registrations), repeatable."),
) -> None:
    """List what can be named in --algorithm, --model and --task (and in metabridge mtl's --methods,
    --model and --benchmark)."""
    from .config import hparams_model, load_plugins

    load_plugins(plugin)
    if what == "algorithms":
        from .algorithms.registry import ALGORITHMS

        for name in sorted(ALGORITHMS):
            fields = hparams_model(name).model_fields
            typer.echo(f"{name}: " + ", ".join(f"{k}={f.default!r}" for k, f in fields.items()))
    elif what == "models":
        from .models import MODELS

        typer.echo("\n".join(sorted(MODELS)))
    elif what == "datasets":
        from .data.registry import available_datasets

        typer.echo("\n".join(available_datasets()) + "\n(or the path of a folder of class folders / an .npz)")
    elif what == "weightings":
        import inspect

        from .multitask.weighting import WEIGHTINGS
        from .multitask.weighting.registry import registered_defaults

        for name in sorted(WEIGHTINGS):
            cls = WEIGHTINGS[name]
            defaults = {p.name: p.default for p in list(inspect.signature(cls.__init__).parameters.values())[2:]
                        if p.default is not inspect.Parameter.empty}
            args = [f"{k}={v!r}" for k, v in {**defaults, **registered_defaults(name)}.items()]
            needs = "+".join(n.name.lower() for n in type(cls.needs) if n in cls.needs)
            typer.echo(f"{name} [{needs}]: " + ", ".join(args))
    elif what == "mtl-models":
        from .multitask.models import available_mtl_models

        typer.echo("\n".join(available_mtl_models()))
    elif what == "mtl-benchmarks":
        from .multitask.data import available_mtl_benchmarks

        typer.echo("\n".join(available_mtl_benchmarks()))
    elif what == "rl-envs":
        from .rl.envs.registry import available_envs, extra_of

        typer.echo("\n".join(f"{n}" + (f" [needs metabridge[{extra_of(n)}]]" if extra_of(n) else "")
                              for n in available_envs()))
    elif what == "rl-presets":
        from .rl.presets import available_presets, preset_config

        for name in available_presets():
            c = preset_config(name)
            typer.echo(f"{name}: env={c.env} {c.env_kwargs} policy={c.hidden} {c.activation} inner_lr={c.inner_lr} "
                       f"meta_batch={c.meta_batch} rollouts={c.rollouts} iterations={c.iterations}")
    else:
        raise ValueError("metabridge list takes algorithms, models, datasets, weightings, mtl-models, mtl-benchmarks, "
                         f"rl-envs or rl-presets (got {what!r}).")


# ---------------------------------------------------------------------- bench
def available_benchmarks() -> list[str]:
    """Names of the modules in ``metabridge.benchmarks`` (not starting with ``_``; ``compare``
    is its own top-level command)."""
    import metabridge.benchmarks as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
                  and m.name != "compare")


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


# --------------------------------------------------- theory and compare
def _function_command(target: typer.Typer, name: str, fn: Callable[..., Any]) -> None:
    """Mount plain function ``fn`` as command ``name`` (options from its signature and docstring)."""
    command = with_option_help(fn)
    text = command.__doc__ or ""
    short = text.strip().splitlines()[0] if text.strip() else None
    target.command(name=name, help=text, short_help=short)(friendly_errors(command))


class LazyFunctionGroup(TyperGroup):
    """A group whose commands are plain functions ``module:function``, imported when used
    (so ``metabridge --help`` never imports matplotlib or the theory code)."""

    commands_spec: dict[str, str] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands_spec)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        spec = self.commands_spec.get(cmd_name)
        if spec is None:
            return None
        module, attr = spec.split(":")
        sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
        _function_command(sub, cmd_name, getattr(importlib.import_module(module), attr))
        return typer.main.get_command(sub)


class TheoryGroup(LazyFunctionGroup):
    commands_spec = {"linreg": "metabridge.theory.commands:linreg",
                     "closeness": "metabridge.theory.commands:closeness"}


theory_app = typer.Typer(cls=TheoryGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                         help="Theory lab: Gao & Sener's MAML/DRS trade-off (linreg) and Wang et al.'s MTL/GBML "
                         "closeness (metabridge.theory.commands).")
app.add_typer(theory_app, name="theory")


class RLGroup(LazyFunctionGroup):
    commands_spec = {"train": "metabridge.rl.commands:train", "eval": "metabridge.rl.commands:evaluate",
                     "tradeoff": "metabridge.rl.commands:tradeoff", "experiment": "metabridge.rl.commands:experiment"}


rl_app = typer.Typer(cls=RLGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                     help="Meta-RL: MAML-TRPO vs domain-randomized search (DRS-TRPO, DRS-PPO) on 2D navigation, "
                     "MuJoCo locomotion and Meta-World (metabridge.rl.commands).")
app.add_typer(rl_app, name="rl")


def _mount_compare() -> None:
    from .benchmarks.compare import main
    from .multitask.command import mtl

    _function_command(app, "compare", main)
    _function_command(app, "mtl", mtl)


_mount_compare()


if __name__ == "__main__":  # pragma: no cover
    app()
