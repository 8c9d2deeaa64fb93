"""``metabridge compare``: MTL against gradient-based meta-learning under one budget.

The claim under test (Wang, Zhao & Li, ICML 2021, Sec. 5): multi-task learning
(one shared body, one head row per training class, first order, head refit at test
time) reaches the accuracy of gradient-based meta-learning (MAML, first-order MAML,
ANIL, MetaOptNet) on few-shot classification at a fraction of the training cost.

Every method trains on the same 5-way episodes of the same dataset for the same
budget of training steps (so the accuracies do not depend on the machine's speed or
load; ``budget_seconds`` gives a wall-clock budget instead), under the seed paper's
training recipe (``recipe="official"``: its augmentation for every method, MTL's head
initialisation and per-task forward) with its x0.1 learning-rate cut placed after 80% of
the budget (``lr_schedule="step"``), so that every method ends annealed, its
validation accuracy recorded as training goes; its
best-validation weights are then tested on identical fixed 5-way 1-shot and 5-shot
test episodes, and the run ends with a verdict (:mod:`._compare_verdict`).
Time-to-accuracy, as in the paper's speed comparison: the training time at which a
method's validation accuracy first reaches the target = (best final validation
accuracy among the GBML methods) - (its 95% CI half-width).

Python use: ``run(CompareConfig(methods=["mtl", "maml"], budget_steps=100))``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import CommandConfig, ExperimentConfig, KeyValues
from ..machine_info import machine
from ..recipes import get_recipe
from ._compare_merge import merge_files
from ._compare_methods import ALL_METHODS, BLACK_BOX, DEFAULT_METHODS, GBML, LABELS, METHOD_SETTINGS, REFERENCES
from ._compare_report import budget_axis, format_table, summarize, write_report
from ._compare_settings import (
    SECONDS_SETTINGS,
    SHORT_DEFAULTS,
    budget_fields,
    check_budget,
    check_method,
    default_setting,
    training_switches,
)
from ._compare_verdict import format_verdict, verdict, verdict_key

__all__ = [
    "ALL_METHODS",
    "BLACK_BOX",
    "CONFIG",
    "CompareConfig",
    "DEFAULT_METHODS",
    "GBML",
    "LABELS",
    "METHOD_SETTINGS",
    "REFERENCES",
    "compare",
    "format_verdict",
    "machine_device",
    "run",
    "run_worker",
    "verdict",
    "verdict_key",
]

_DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


class CompareConfig(CommandConfig):
    """Settings of ``metabridge compare`` (each field's description is its ``--help`` text)."""

    out: Path = Field(
        Path("runs/compare"),
        description=(
            "Folder of compare.json, compare.png and config.json; each method's run (checkpoints, "
            "metrics.jsonl) goes into OUT/METHOD."
        ),
    )
    methods: list[str] = Field(
        list(DEFAULT_METHODS),
        min_length=1,
        description=(
            "Methods to train (e.g. --methods mtl maml): mtl, fomaml, maml, anil, metasgd, "
            "reptile, protonet, metaoptnet, joint (or its old name drs), the black-box learners mann, snail, icl, or an algorithm "
            "registered by a --plugin module."
        ),
    )
    dataset: str = Field(
        "glyphs",
        min_length=1,
        description=(
            "glyphs (offline, rendered from fonts), any downloaded one (omniglot, mini_imagenet, tiered_imagenet, "
            "cifar_fs, fc100) or one registered by a --plugin module."
        ),
    )
    data_root: str = Field("data", description="Directory of downloaded datasets (not used by glyphs).")
    model: str = Field(
        "conv4", min_length=1, description=("Backbone: conv4 or resnet12 (or one registered by a --plugin module).")
    )
    image_size: int | None = Field(
        None,
        gt=0,
        description=(
            "Side in pixels the images are loaded at (glyphs render at any size, e.g. 32 for the ResNet-12 "
            "regime of CIFAR-FS) [default: the dataset's standard size]."
        ),
    )
    n_way: int = Field(5, ge=2, description="Classes per episode, training and test.")
    k_shot: int = Field(
        1, ge=1, description=("Support examples per class of the training episodes (MTL merges support and query).")
    )
    q_query: int = Field(10, ge=1, description="Query examples per class of the training episodes.")
    test_shots: list[int] = Field([1, 5], min_length=1, description="K of the test episodes.")
    test_queries: list[int] = Field(
        [10, 6],
        min_length=1,
        description=(
            "Queries per class of the test episodes, one per test shot (glyph classes have 11+ typefaces, so "
            "K+Q <= 11 by default)."
        ),
    )
    budget_steps: int | None = Field(
        None,
        gt=0,
        description=(
            "Training steps per method: the accuracies do not depend on the machine's speed or load "
            "[default: 300; 1000 with --full]."
        ),
    )
    eval_every_steps: int | None = Field(
        None, gt=0, description=("Validate every this many training steps [default: 20; 50 with --full].")
    )
    budget_seconds: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "A wall-clock budget per method in seconds (validation excluded) instead of --budget-steps: the "
            "steps it buys, and so the accuracies, then depend on the machine and its load [default: a step budget]."
        ),
    )
    eval_every_seconds: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "With --budget-seconds, validate each time this many more training seconds have passed "
            "[default: 25; 60 with --full]."
        ),
    )
    val_episodes: int | None = Field(
        None, gt=0, description=("Fixed validation episodes per validation [default: 100; 300 with --full].")
    )
    test_episodes: int | None = Field(
        None,
        gt=0,
        description=("Fixed test episodes per test shot, identical for every method [default: 600; 1000 with --full]."),
    )
    meta_batch_size: int = Field(16, gt=0, description="Tasks per training step, for every method.")
    full: bool = Field(
        False,
        description=(
            "The long run: the defaults of --budget-steps, --eval-every-steps, --val-episodes and "
            "--test-episodes become 1000, 50, 300 and 1000 (values given explicitly still win)."
        ),
    )
    seed: int = Field(0, description="Training seed (test episodes use a fixed seed of their own).")
    device: str = Field(
        "cpu",
        pattern=_DEVICE_PATTERN,
        description=(
            "auto (CUDA when available), cpu, cuda, cuda:N or mps, for every method (as in metabridge train; on "
            "CUDA each run keeps its episodes' dataset on the GPU when it fits)."
        ),
    )
    recipe: str = Field(
        "official",
        description=(
            "A named set of the switches below: official (Wang et al.'s MTL code: plateau schedule, early "
            "stopping 15, augmentation, MTL head_init=official and train_forward=per_task, ResNet-12 "
            "variant=official; see metabridge.recipes) or default (none of them)."
        ),
    )
    lr_schedule: Literal["constant", "cosine", "step", "plateau"] | None = Field(
        None,
        description=(
            "Every method's learning-rate schedule over the recipe's: constant, cosine, step (x0.1 after 80% of "
            "the steps) or plateau (x0.1 after 4 validations without improvement) [default: step under a step "
            "budget, so that every "
            "method ends annealed; the recipe's under --budget-seconds]."
        ),
    )
    early_stopping_patience: int | Literal["never"] | None = Field(
        None,
        description=(
            "Stop a method after this many validations without improvement, or never [default: never under a "
            "step budget; the recipe's under --budget-seconds]."
        ),
    )
    augment: str | None = Field(
        None,
        description=(
            "Augmentation of every method's training episodes: none, auto (the dataset's preset) or a preset name "
            "[default: the recipe's]."
        ),
    )
    head_init: Literal["uniform", "official"] | None = Field(
        None, description=("MTL's head initialisation [default: the recipe's].")
    )
    train_forward: Literal["batched", "per_task"] | None = Field(
        None,
        description=(
            "MTL's training forward: batched (all tasks in one forward) or per_task (one forward per task, "
            "per-task batch-norm statistics) [default: the recipe's]."
        ),
    )
    model_variant: Literal["plain", "official"] | None = Field(
        None, description=("ResNet-12 variant [default: the recipe's].")
    )
    model_kwargs: Annotated[dict[str, Any], KeyValues] = Field(
        default_factory=dict,
        description=(
            "Further backbone arguments KEY=VALUE, VALUE read as JSON, e.g. --model-kwargs widths=[16,40,80,160] "
            "for a narrower ResNet-12."
        ),
    )
    method_hparams: Annotated[dict[str, dict[str, Any]], KeyValues] = Field(
        default_factory=dict,
        description=(
            "Further hyperparameters per method, over the recipe's and the switches above: METHOD=JSON, e.g. "
            '--method-hparams mtl=\'{"class_weighting": "minmax"}\'.'
        ),
    )
    nproc_per_node: int = Field(
        1,
        ge=1,
        description=(
            "Processes per method: above 1, each method trains data-parallel under torchrun (the meta-batch "
            "split over the processes, gradients averaged; see metabridge.distributed), rank 0 tests it; 1 "
            "thread each is then sensible (OMP_NUM_THREADS=1)."
        ),
    )
    merge: list[Path] = Field(
        default_factory=list,
        description=(
            "Train nothing: merge the compare.json files (or their folders) of earlier runs of disjoint --methods "
            "with otherwise identical settings into one table, JSON and plot in --out."
        ),
    )

    @field_validator("test_shots", "test_queries")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, name: str) -> str:
        get_recipe(name)
        return name

    @field_validator("early_stopping_patience")
    @classmethod
    def _patience(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be >= 1 or 'never' (got {value})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CompareConfig:
        if len(self.test_shots) != len(self.test_queries):
            raise ValueError(
                f"give one --test-queries per --test-shots (got {len(self.test_shots)} shots, "
                f"{len(self.test_queries)} query counts)."
            )
        check_budget(self.budget_steps, self.eval_every_steps, self.budget_seconds, self.eval_every_seconds)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"--methods names a method twice ({', '.join(self.methods)}).")
        self.check_methods()
        return self

    # ---------------------------------------------------------------- resolution
    def resolved(self, name: str) -> Any:
        """A setting whose ``None`` means "the default": the value given, else the default of
        this run (the short main job's, or with ``full`` the long run's; ``None`` for a setting
        of the other kind of budget)."""
        value = getattr(self, name)
        return value if value is not None else default_setting(name, self.full, self.budget_seconds is None)

    def training(self) -> dict[str, Any]:
        """The training-recipe switches, as config fields applied over the recipe's (under a step
        budget: the step schedule and no early stopping unless given)."""
        by_steps = self.budget_seconds is None
        return training_switches(self.lr_schedule, self.early_stopping_patience, self.augment, by_steps)

    def all_method_hparams(self) -> dict[str, dict[str, Any]]:
        """Per-method hyperparameters: the MTL switches, with ``method_hparams`` winning."""
        mtl = {k: v for k, v in (("head_init", self.head_init), ("train_forward", self.train_forward)) if v}
        out = {name: dict(value) for name, value in self.method_hparams.items()}
        out["mtl"] = {**mtl, **out.get("mtl", {})}
        return out

    def all_model_kwargs(self) -> dict[str, Any]:
        """Backbone arguments given: ``model_kwargs`` plus ``model_variant``."""
        return {**self.model_kwargs, **({"variant": self.model_variant} if self.model_variant else {})}

    def check_methods(self) -> None:
        """Every method is a known one or an algorithm registered by a ``--plugin`` module."""
        for m in self.methods:
            check_method(m, self.plugins)

    def method_config(self, method: str) -> ExperimentConfig:
        """The training run of ``method`` under this comparison's shared budget."""
        from ..algorithms.registry import ALGORITHMS

        s = METHOD_SETTINGS.get(method)
        if s is None and method in ALGORITHMS:  # an old name or other spelling ("drs" -> "joint")
            s = METHOD_SETTINGS.get(ALGORITHMS.canonical(method))
        if s is None:  # an algorithm registered by a plugin runs with its constructor's defaults
            check_method(method, self.plugins)
            s = {"hparams": {}}
        recipe = get_recipe(self.recipe)
        hparams = {**s["hparams"], **recipe.hparams.get(method, {}), **self.all_method_hparams().get(method, {})}
        model_kwargs = {**recipe.model_kwargs.get(self.model, {}), **self.all_model_kwargs()}
        training = {**recipe.config, **self.training()}
        budget = budget_fields(*map(self.resolved, ("budget_steps", "eval_every_steps", *SECONDS_SETTINGS)))
        return ExperimentConfig(
            task=self.dataset,
            data_root=self.data_root,
            image_size=self.image_size,
            n_way=self.n_way,
            k_shot=self.k_shot,
            q_query=self.q_query,
            algorithm=method,
            hparams=hparams,
            model=self.model,
            model_kwargs=model_kwargs,
            optimizer=s.get("optimizer", "adam"),
            lr=s.get("lr", 1e-3),
            meta_batch_size=self.meta_batch_size,
            **budget,
            val_episodes=self.resolved("val_episodes"),
            test_episodes=self.resolved("test_episodes"),
            eval_batch_size=50,
            checkpoint_every=0,
            log_every=10,
            seed=self.seed,
            device=self.device,
            out_dir=str(Path(self.out) / method),
            plugins=list(self.plugins),
            **training,
        ).validate()

    def report_settings(self) -> dict[str, Any]:
        """The resolved settings recorded in ``compare.json`` (defaults filled in)."""
        data = self.model_dump(
            mode="json",
            exclude={
                "merge",
                "full",
                "lr_schedule",
                "early_stopping_patience",
                "augment",
                "head_init",
                "train_forward",
                "model_variant",
            },
        )
        data.update(
            {name: self.resolved(name) for name in SHORT_DEFAULTS},
            training=self.training(),
            method_hparams=self.all_method_hparams(),
            model_kwargs=self.all_model_kwargs(),
        )
        return data


CONFIG = CompareConfig


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one method in a fresh Python process (``spec["nproc"] > 1``: that many processes
    under torchrun, data parallel, rank 0 testing and reporting); return its result dict."""
    nproc = int(spec.get("nproc", 1))
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run(
            [*launcher, "-m", "metabridge.benchmarks._compare_worker", str(spec_path), str(out_path)],
            env=os.environ.copy(),
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"method {spec['method']} failed (exit code {proc.returncode}); see the output above.")
        return json.loads(out_path.read_text())


def machine_device(spec: str) -> str:
    """The ``machine.device`` of a report for the ``--device`` setting ``spec``: ``"CPU (N cores)"``
    when it resolves to the CPU (``auto`` without CUDA included), else the resolved device
    (``"cuda"``, ``"cuda:1"``, ``"mps"``). Raises ``ValueError`` when the device is unusable here,
    before any method trains (:func:`metabridge.device.resolve_device`)."""
    from ..device import resolve_device

    device = resolve_device(spec)
    return f"CPU ({os.cpu_count()} cores)" if device.type == "cpu" else str(device)


def compare(config: CompareConfig, progress: bool = True) -> dict[str, Any]:
    """Train and test every method; write ``compare.json`` and ``compare.png`` into ``config.out``.

    ``config.device`` is passed to every worker as given (each resolves ``auto`` itself, as
    ``metabridge train`` does); the report names the device it resolves to here."""
    device_label = machine_device(config.device)
    config.check_methods()
    configs = {m: config.method_config(m) for m in config.methods}  # validate everything first
    test_episodes = config.resolved("test_episodes")
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for i, (m, cfg) in enumerate(configs.items(), 1):
        if progress:
            steps = config.resolved("budget_steps")
            budget = f"{steps} steps" if steps else f"{config.budget_seconds:.0f} s"
            print(
                f"[{i}/{len(configs)}] {LABELS.get(m, m)}: training for {budget}, "
                f"then testing on {test_episodes} episodes per shot",
                flush=True,
            )
        results[m] = run_worker(
            {
                "method": m,
                "config": cfg.to_dict(),
                "test_shots": list(config.test_shots),
                "test_queries": list(config.test_queries),
                "test_episodes": test_episodes,
                "progress": progress,
                "nproc": config.nproc_per_node,
            }
        )
    from ..device import resolve_device

    settings = config.report_settings()
    report = {
        "benchmark": "compare",
        "settings": settings,
        "machine": {**machine(str(resolve_device(config.device))), "device": device_label},
        "total_seconds": time.perf_counter() - t0,
        "methods": results,
        "summary": summarize(results, budget_axis(settings), settings),
    }
    report["verdict"] = verdict(report)
    write_report(report, config.out)
    return report


def run(config: CompareConfig) -> dict[str, Any]:
    """Compare MTL with gradient-based meta-learning under one training budget.

    Trains each method for the same training time (or steps) on the same episodes, tests
    them on identical fixed episodes, prints accuracy +- 95% CI, training time, time per
    iteration, peak memory and time-to-accuracy, and writes ``compare.json``,
    ``compare.png`` and the resolved ``config.json`` into ``config.out``. With ``merge``,
    trains nothing and merges earlier reports instead."""
    if not config.merge:
        machine_device(config.device)  # an unusable device is refused before anything is written
    config.write_resolved()
    report = merge_files(config.merge, config.out) if config.merge else compare(config)
    out = Path(config.out)
    print("")
    print(format_table(report))
    if "maml" in report["methods"] and "mtl" in report["methods"]:
        print("\n" + format_verdict(report))
    print(f"\nwrote {out / 'compare.json'} and {out / 'compare.png'} ({report['total_seconds'] / 60:.1f} min in all)")
    return report
