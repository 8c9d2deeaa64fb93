"""``ExperimentConfig``: everything that defines one training run, in one typed place.

A run is fully described by this pydantic model: the task family (``sinusoid``, a
dataset name, or the path of one's own image folder / ``.npz``) with its episode
shape, the algorithm and its hyperparameters, the backbone, the optimizer, the step
budget, evaluation and checkpoint intervals, the seeds, the device and the output
directory. It round-trips through JSON, TOML and YAML, is stored in every checkpoint
and as ``config.json`` in the run directory, so a run can be resumed or
re-evaluated from its directory alone.

This class is the single source of truth for settings: each field's type and
constraint is its validation, its ``description`` is the help text, and the
``metabridge train`` options are generated from the fields by tyro
(:mod:`metabridge.cli`), so the three can no longer drift apart. Every other command
has a model of its own, a subclass of :class:`CommandConfig`. The algorithm's own
hyperparameters (``hparams``) are validated against a model generated from that
algorithm's constructor signature (:func:`hparams_model`), so a registered algorithm
of one's own gets the same checks. Why pydantic and tyro: ``docs/concepts/configuration.md``.

The command-line spelling of a field lives beside its type, in ``Annotated`` markers
tyro reads: :data:`Positional` (``metabridge eval RUN``), ``tyro.conf.arg(name=...)``
(``out_dir`` is ``--out``) and :data:`KeyValues` (``--hp KEY=VALUE``).

``build_experiment`` (in :mod:`metabridge.experiment`) turns a config into the
algorithm and its train/val/test task sources.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib
import tyro
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._validation_messages import plain_message as _plain_message
from .atomic import atomic_write_text
from .hparams import hparams_model as hparams_model  # re-exported: the hyperparameter schema
from .hparams import validate_hparams
from .plugins import load_plugins

#: Task family names handled without a dataset loader.
REGRESSION_FAMILIES = ("sinusoid",)
Optimizer = Literal["adam", "adamw", "radam", "sgd"]
LRSchedule = Literal["constant", "cosine", "step", "plateau"]
OPTIMIZERS: tuple[str, ...] = Optimizer.__args__  # type: ignore[attr-defined]
LR_SCHEDULES: tuple[str, ...] = LRSchedule.__args__  # type: ignore[attr-defined]
_DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def parse_key_values(items: list[str], option: str = "--hp") -> dict[str, Any]:
    """``["inner_lr=0.01", "first_order=true"]`` -> ``{"inner_lr": 0.01, "first_order": True}``.

    A VALUE is read as JSON when it parses (numbers, ``true``, ``[40, 40]``), else kept as a
    string (``head=logistic``); ``ValueError`` naming ``option`` when an item has no ``=``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{option} expects KEY=VALUE (got {item!r}); e.g. {option} inner_lr=0.01.")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


#: Marks a ``dict[str, Any]`` field as the option ``--NAME KEY=VALUE [KEY=VALUE ...]`` (given once
#: or repeated: ``--hp inner_lr=0.01 --hp first_order=true``).
KeyValues = tyro.constructors.PrimitiveConstructorSpec(
    nargs="*",
    metavar="KEY=VALUE",
    instance_from_str=parse_key_values,
    is_instance=lambda value: isinstance(value, dict),
    str_from_instance=lambda value: [f"{k}={json.dumps(v)}" for k, v in value.items()],
)
#: Marks a field as a positional argument (``Annotated[Path, Positional]``: ``metabridge eval RUN``).
Positional = tyro.conf.Positional
#: A trained run named on the command line: the positional ``RUN`` (a run directory, or one
#: checkpoint file of it) of ``metabridge eval``, ``export`` and ``rl eval``.
RunPath = Annotated[Path, Positional, tyro.conf.arg(metavar="RUN")]
#: The ``--plugin MODULE`` option (given once per module) of every command.
PluginList = Annotated[list[str], tyro.conf.arg(name="plugin", metavar="MODULE")]


class ExperimentConfig(BaseModel):
    """A complete, JSON-serializable description of one training run (see the fields'
    descriptions, which are also the ``metabridge train --help`` texts)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # task
    task: str = Field(
        "sinusoid",
        min_length=1,
        description=(
            "Task family: 'sinusoid' (Finn et al. 2017 regression), a dataset name (omniglot, mini_imagenet, "
            "tiered_imagenet, cifar_fs, fc100, glyphs, or one registered with register_dataset), or the path of "
            "one's own images: a folder of class folders or an .npz with uint8 'images' and 'labels'."
        ),
    )
    data_root: str = Field("data", description="Directory holding datasets (ignored for sinusoid and paths).")
    download: bool = Field(False, description="Let dataset loaders download missing files (checksummed).")
    n_way: int = Field(5, ge=2, description="Classes per episode (classification only).")
    k_shot: int = Field(
        10,
        ge=1,
        description="Training support examples per class (classification) or support points per task (sinusoid).",
    )
    q_query: int = Field(
        10, ge=1, description="Query examples per class (classification) or query points per task (sinusoid)."
    )
    eval_k_shot: int | None = Field(
        None, ge=1, description="Support size of validation/test episodes [default: same as --k-shot]."
    )
    num_train_tasks: int | None = Field(
        None,
        ge=1,
        description="Sinusoid only: draw training tasks from a "
        "fixed pool of this many (MTL's one head per task) [default: fresh "
        "tasks every step].",
    )
    image_size: int | None = Field(
        None,
        ge=1,
        description="Side length in pixels that images are loaded at "
        "[default: the dataset's standard size; own images: their size].",
    )
    # method
    algorithm: str = Field(
        "maml",
        min_length=1,
        description=(
            "Method: mtl, joint, maml, fomaml, anil, reptile, metasgd, protonet, metaoptnet, or one registered with "
            "register_algorithm (metabridge list algorithms shows each one's hyperparameters)."
        ),
    )
    hparams: Annotated[dict[str, Any], KeyValues, tyro.conf.arg(name="hp")] = Field(
        default_factory=dict,
        description=(
            "Algorithm hyperparameters KEY=VALUE, repeatable; VALUE is read as JSON when it parses (e.g. --hp "
            "inner_steps=5 --hp inner_lr=0.01 --hp first_order=true)."
        ),
    )
    model: str | None = Field(
        None,
        description="Backbone: mlp, conv4, resnet12 or one registered with "
        "register_model [default: mlp for sinusoid, conv4 for images].",
    )
    model_kwargs: Annotated[dict[str, Any], KeyValues, tyro.conf.arg(name="model_arg")] = Field(
        default_factory=dict,
        description=(
            "Backbone arguments KEY=VALUE, repeatable, read as JSON when it parses (e.g. --model-arg "
            "hidden=[40,40] for mlp, --model-arg hidden=32 for conv4)."
        ),
    )
    plugins: PluginList = Field(
        default_factory=list,
        description=(
            "Python module to import before building, repeatable: where one's own register_algorithm / "
            "register_model / register_dataset calls live (compare's worker processes import it too)."
        ),
    )
    # optimization
    optimizer: Optimizer = Field("adam", description="Outer optimizer: adam, adamw, radam or sgd.")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Outer learning rate (> 0).")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay of the outer optimizer (>= 0).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (sgd only), in [0, 1).")
    lr_schedule: LRSchedule = Field(
        "constant",
        description=(
            "Learning-rate schedule: constant; cosine (annealed to 0 over --steps, stepped every step); step (the "
            "rate multiplied by --plateau-factor once, after 80% of --steps: the official recipe's cut at a fixed "
            "point of the budget); or "
            "plateau (torch's ReduceLROnPlateau on the validation score, as Wang et al.'s official MTL code: the "
            "rate is multiplied by --plateau-factor once more than --plateau-patience validations in a row did "
            "not improve; stepped on validations, so it needs --eval-every or --eval-every-seconds)."
        ),
    )
    plateau_factor: float = Field(
        0.1,
        gt=0,
        lt=1,
        description=(
            "With --lr-schedule plateau: the factor the learning rate is multiplied by on a plateau, in (0, 1) "
            "(official MTL code: 0.1)."
        ),
    )
    plateau_patience: int = Field(
        4,
        ge=0,
        description=(
            "With --lr-schedule plateau: validations in a row without improvement of the validation score "
            "(relative threshold 1e-4, torch's default) tolerated before the rate is reduced (patience 4: cut at "
            "the 5th). Patience counts validations, not steps or epochs: set --eval-every (or "
            "--eval-every-seconds) to the interval meant; the official MTL code validates once per epoch of 1600 "
            "tasks, i.e. --eval-every 1600/meta_batch_size, with patience 4."
        ),
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description=(
            "Stop training after this many validations in a row without improvement of the best validation "
            "score (accuracy up, MSE down; any improvement counts), writing the final checkpoint there; patience "
            "counts validations, so set --eval-every / --eval-every-seconds accordingly (official MTL code: 15, "
            "one validation per epoch) [default: never stop early]."
        ),
    )
    augment: str | None = Field(
        None,
        description=(
            "Augment training episodes (never validation or test), with random parameters drawn from the "
            "training-task generator (seeded runs repeat, --resume stays exact): auto = the dataset's preset "
            "(mini_imagenet / tiered_imagenet: crop padding 8 at 84 px, colour jitter 0.4, flip; cifar_fs / "
            "fc100: padding 4 at 32 px, jitter, flip; glyphs / omniglot: crop only, padding 2 at 28 px; a "
            "dataset without a preset or one's own images: crop + jitter without flip if RGB (color), crop only "
            "if not (grayscale)), or a preset name (none, glyphs, omniglot, mini-imagenet, tiered-imagenet, cifar-fs, "
            "fc100, grayscale, color); crop padding scales with --image-size [default: no augmentation]."
        ),
    )
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the global gradient norm to this value [default: no clipping]."
    )
    meta_batch_size: int = Field(25, ge=1, description="Tasks per outer step.")
    steps: int = Field(
        1000, ge=1, description="Number of outer optimizer steps; with --resume, may be raised to train longer."
    )
    max_train_seconds: float | None = Field(
        None,
        gt=0,
        description="Stop once this many seconds were spent "
        "in training steps (validation and checkpoints not counted) "
        "[default: run all --steps].",
    )
    # evaluation and bookkeeping
    eval_every: int = Field(500, ge=0, description="Validate every this many steps and at the end (0 = never).")
    eval_every_seconds: float | None = Field(
        None,
        gt=0,
        description="Also validate each time this many more "
        "seconds of training have passed (accuracy against wall-clock).",
    )
    val_episodes: int = Field(600, ge=1, description="Fixed validation episodes per validation.")
    test_episodes: int = Field(600, ge=1, description="Fixed test episodes (used by metabridge eval).")
    eval_batch_size: int = Field(50, ge=1, description="Episodes evaluated at once.")
    checkpoint_every: int = Field(
        500, ge=0, description="Write a checkpoint every this many steps and at the end (0 = only at the end)."
    )
    log_every: int = Field(10, ge=1, description="Write a training record to metrics.jsonl every this many steps.")
    seed: int = Field(0, description="Seed for initialisation and training tasks.")
    val_seed: int = Field(1000, description="Seed fixing the validation episodes.")
    test_seed: int = Field(2000, description="Seed fixing the test episodes.")
    device: str = Field(
        "auto", pattern=_DEVICE_PATTERN, description="auto (CUDA when available), cpu, cuda, cuda:N or mps."
    )
    deterministic: bool = Field(
        False, description="Use deterministic kernels (slower; needed for bit-exact resume on GPU)."
    )
    amp: Literal["off", "bf16"] = Field(
        "off",
        description="Mixed precision: bf16 runs the meta-loss under "
        "torch.autocast(bfloat16); only for the first-order embedding methods "
        "(mtl, protonet, metaoptnet), whose heads and solvers stay in float32/64.",
    )
    out_dir: Annotated[str, tyro.conf.arg(name="out")] = Field(
        "runs/default", description="Run directory: config.json, metrics.jsonl, last.pt, last.prev.pt, best.pt."
    )

    # ------------------------------------------------------------------ checks
    @field_validator("hparams", "model_kwargs")
    @classmethod
    def _string_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not all(isinstance(k, str) and k for k in v):
            raise ValueError("keys must be non-empty strings")
        return dict(v)

    @field_validator("augment")
    @classmethod
    def _known_augment(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from .data.augment import check_augment_name  # torch is imported only when augmenting

        return check_augment_name(v)

    @model_validator(mode="after")
    def _recipe_is_consistent(self) -> ExperimentConfig:
        steered = [
            name
            for name, on in (
                ("--lr-schedule plateau", self.lr_schedule == "plateau"),
                ("--early-stopping-patience", self.early_stopping_patience is not None),
            )
            if on
        ]
        if steered and self.eval_every == 0 and self.eval_every_seconds is None:
            verb = "act" if len(steered) > 1 else "acts"
            raise ValueError(
                f"{' and '.join(steered)} {verb} on validation scores, but this run never validates (--eval-every "
                "0 and no --eval-every-seconds); set --eval-every N (patience counts validations) or "
                "--eval-every-seconds S."
            )
        if self.augment not in (None, "none") and self.is_regression:
            raise ValueError(
                f"--augment {self.augment} transforms images; the {self.task} task has none (drop --augment)."
            )
        return self

    @property
    def is_regression(self) -> bool:
        """True for the built-in regression task families (no classes, no ``n_way``).

        Only for defaults (the backbone) and messages: the training metric of a run
        is derived from its data (:func:`metabridge.train.task_metric`)."""
        return self.task in REGRESSION_FAMILIES

    @property
    def resolved_model(self) -> str:
        """The backbone name, with the default filled in from the task family."""
        if self.model is not None:
            return self.model
        return "mlp" if self.is_regression else "conv4"

    @property
    def resolved_eval_k_shot(self) -> int:
        return self.k_shot if self.eval_k_shot is None else self.eval_k_shot

    def validate(self) -> ExperimentConfig:  # type: ignore[override]
        """Re-check every field and the algorithm's hyperparameters; return ``self``.

        Raises ``ValueError`` naming each offending field and its command-line option.
        """
        try:
            type(self).model_validate(self.model_dump())
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None
        load_plugins(self.plugins)
        self.hparams = validate_hparams(self.algorithm, self.hparams)
        return self

    # --------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build from a dict; unknown keys and wrong values are errors naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a mapping of field names to values (got {type(data).__name__}).")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (atomically, fsync'ed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:
        """Read a ``.json``, ``.toml`` or ``.yaml`` / ``.yml`` config file."""
        return cls.from_dict(read_config_file(path))


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a JSON, TOML or YAML file, chosen by its suffix.

    TOML and YAML files may put the algorithm's hyperparameters in an ``[hparams]``
    table (``hparams:`` mapping) and the backbone's in ``[model_kwargs]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}; pass the path of a .json, .toml or .yaml file.")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"config file {path} must end in .json, .toml, .yaml or .yml.")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid {suffix[1:].upper()}: {exc}") from exc
    except ImportError as exc:  # pragma: no cover - pyyaml is a dependency
        raise ValueError(f"reading {path} needs PyYAML (pip install pyyaml).") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise ValueError(f"{path} is not valid YAML: {exc}") from exc
        raise
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config fields (got {type(data).__name__}).")
    return data


def option_name(field: str, model: type[BaseModel] | None = None) -> str:
    """The command-line option of field ``field`` of ``model`` (default :class:`ExperimentConfig`):
    the name its ``tyro.conf.arg(name=...)`` marker gives, else ``--field-name``; a positional
    field is named in capitals (``RUN``)."""
    info = (model or ExperimentConfig).model_fields.get(field)
    for marker in info.metadata if info is not None else ():
        name = getattr(marker, "name", None)
        if isinstance(name, str) and type(marker).__name__ == "_ArgConfig":
            return "--" + name.replace("_", "-")
    if info is not None and any(marker is Positional for marker in info.metadata):
        return field.upper()
    return "--" + field.replace("_", "-")


def describe_validation_error(exc: ValidationError, options: bool = True, model: type[BaseModel] | None = None) -> str:
    """One line for every offending field of ``model`` (default: :class:`ExperimentConfig` when
    the error is about it), each with its command-line option; never pydantic's multi-line text."""
    if model is None and exc.title == ExperimentConfig.__name__:
        model = ExperimentConfig
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        name = ".".join(loc) if loc else "config"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1) if model and loc else []
            parts.append(f"unknown field {name!r}" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        known = model is not None and bool(loc) and loc[0] in model.model_fields
        where = f" (set {option_name(loc[0], model)})" if options and known else ""
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        if err["type"] == "missing":
            got = ""
        parts.append(f"{name}: {_plain_message(err)}{got}{where}" if loc else _plain_message(err))
    text = "; ".join(parts)
    if model is not None and any(e["type"] == "extra_forbidden" for e in exc.errors()):
        text += f"; valid fields are {', '.join(sorted(model.model_fields))}"
    return "invalid config: " + text + "."


# ------------------------------------------------------------------ plugins
# load_plugins lives in metabridge.plugins (imported above), below every package that needs it.


# --------------------------------------------------------- hyperparameters
# hparams_model and validate_hparams live in metabridge.hparams (imported above, re-exported here).


class CommandConfig(BaseModel):
    """Base of every command's settings (``compare``, ``multitask``, ``bench ...``, ``theory ...``,
    ``rl ...``): a typed model whose fields generate the command's options and whose
    ``description`` strings are their help. Lists and mappings are typed fields (never
    comma- or JSON-encoded strings); ``None`` means "the default" (never 0 or -1). Every
    command also takes ``--config FILE`` (TOML, YAML or JSON; options given beside it win)
    and writes the resolved settings as ``config.json`` into ``out``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    out: Path = Field(
        Path("runs/out"), description="Folder the command writes its results and its resolved config.json to."
    )
    plugins: PluginList = Field(
        default_factory=list,
        description=(
            "Modules to import first (given once per module: --plugin a --plugin b); their registrations "
            "become names like the built-in ones."
        ),
    )

    def write_resolved(self) -> Path:
        """Write these settings as ``out/config.json`` (atomically) and return its path."""
        path = Path(self.out) / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> CommandConfig:
        """Settings read from a TOML/YAML/JSON file, with ``overrides`` winning."""
        return cls.model_validate({**read_config_file(path), **overrides})
