"""``metabridge eval RUN`` and ``metabridge export RUN --out FILE``: a trained run, named by its
directory (or one checkpoint file of it), scored on fixed episodes or written as safetensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro
from pydantic import Field

from ..atomic import atomic_write_text
from ..config import CommandConfig, ExperimentConfig, KeyValues, RunPath
from ._fewshot import _cpu_tuning, one_line_warnings

_RUN_HELP = "A run directory (the --out of metabridge train) or one checkpoint file of it."
_WHICH_HELP = (
    "Which checkpoint of the run: best, last, or auto (best when the run validated, else last); a "
    "damaged one is passed over with a note."
)
_DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


class EvalConfig(CommandConfig):
    """Score a trained run on fixed episodes: mean +- 95% confidence interval.

    Only the scored split's data is loaded: the algorithm is rebuilt from the construction
    record stored in the checkpoint. Accuracy is reported in percent (the papers' unit)."""

    run: RunPath = Field(description=_RUN_HELP)
    which: Literal["auto", "best", "last"] = Field("auto", description=_WHICH_HELP)
    split: Literal["test", "val"] = Field("test", description="Episodes to score: test or val.")
    episodes: int | None = Field(
        None, ge=1, description=("Number of fixed episodes [default: the run's test_episodes / val_episodes].")
    )
    k_shot: int | None = Field(None, ge=1, description="Support examples per class [default: the run's].")
    q_query: int | None = Field(
        None,
        ge=1,
        description=(
            "Query examples per class (lower it when a small dataset cannot supply k_shot + q_query images per "
            "class) [default: the run's]."
        ),
    )
    seed: int | None = Field(None, description="Seed of the episodes [default: the run's test_seed / val_seed].")
    batch_size: int | None = Field(None, ge=1, description="Episodes evaluated at once [default: the run's].")
    device: str = Field("auto", pattern=_DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps.")
    hparams: Annotated[dict[str, Any], KeyValues, tyro.conf.arg(name="hp")] = Field(
        default_factory=dict,
        description=(
            "Test-time hyperparameter KEY=VALUE of the algorithm, repeatable (e.g. --hp eval_steps=10 for MAML, "
            "--hp finetune_steps=20 for MTL); an override that changes parameter shapes is refused."
        ),
    )
    out: Path | None = Field(
        None,
        description=(  # type: ignore[assignment]
            "Folder eval.json and config.json are written to [default: RUN/eval, beside the checkpoints]."
        ),
    )
    progress: bool = Field(True, description="Show a progress bar.")
    tune_cpu: bool = Field(True, description="On CPU, tune this process's glibc allocator (see train --help).")

    @property
    def out_dir(self) -> Path:
        """Where this evaluation writes: ``--out``, else ``RUN/eval``."""
        if self.out is not None:
            return Path(self.out)
        return (self.run if self.run.is_dir() else self.run.parent) / "eval"

    def write_resolved(self) -> Path:
        path = self.out_dir / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path


def _load_for_eval(run: Path, which: str) -> tuple[dict[str, Any], Path]:
    """The checkpoint to score, falling back past damaged files with a one-line note on stderr."""
    from ..checkpoint import CheckpointManager, load_checkpoint

    if run.is_file():
        return load_checkpoint(run), run
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is neither a run directory nor a checkpoint file; pass the --out of a run.")
    with one_line_warnings():
        return CheckpointManager(run).load_for_eval(which)


def _rebuild(config: EvalConfig, ckpt: dict[str, Any], path: Path, run: ExperimentConfig) -> Any:
    """The trained algorithm, rebuilt from the checkpoint's construction record with the
    test-time hyperparameter overrides."""
    from ..checkpoint import CheckpointError
    from ..config import validate_hparams
    from ..experiment import algorithm_record, build_from_record, build_task_sources

    record = ckpt.get("build")
    if record is None:  # checkpoints written before construction records: derive it from the data
        run.validate()
        _, _, _, info = build_task_sources(run)
        record = algorithm_record(run, info)
    hparams = validate_hparams(record["algorithm"], {**record["hparams"], **config.hparams})
    run.hparams = hparams
    algorithm = build_from_record({**record, "hparams": hparams})
    try:
        algorithm.load_state_dict(ckpt["algorithm"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the algorithm its config describes ({exc}).") from exc
    return algorithm


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Score the run ``config.run`` names; print one line and write ``eval.json`` into the out folder.

    Accuracy is reported in percent, MSE as it is (:func:`metabridge.evaluate.as_reported`)."""
    from ..device import resolve_device
    from ..evaluate import as_reported, evaluate
    from ..experiment import build_task_source
    from ..train import seed_everything, task_metric

    ckpt, path = _load_for_eval(config.run, config.which)
    run = ExperimentConfig.from_dict(ckpt["config"])
    if config.k_shot is not None:
        run.eval_k_shot = config.k_shot
    if config.q_query is not None:
        run.q_query = config.q_query
    test = config.split == "test"
    n = config.episodes or (run.test_episodes if test else run.val_episodes)
    seed = config.seed if config.seed is not None else (run.test_seed if test else run.val_seed)
    batch = config.batch_size or run.eval_batch_size
    device = resolve_device(config.device)
    seed_everything(run.seed)
    algorithm = _rebuild(config, ckpt, path, run).to(device)
    run.validate()
    source = build_task_source(run, config.split, device)  # the data follow --device, not the run's device
    with _cpu_tuning(config.tune_cpu and device.type == "cpu"):
        raw = evaluate(
            algorithm, source.fixed_episodes(n, seed, batch), device, progress=config.progress, total=-(-n // batch)
        )
    metric = task_metric(source)
    result = as_reported(raw, metric)
    unit = "%" if metric == "accuracy" else ""
    label = "MSE" if metric == "mse" else "accuracy"
    changed = "".join(f", {k}={v}" for k, v in config.hparams.items())
    print(
        f"{run.algorithm} on {run.task} ({config.split}, step {ckpt['step']}, {path.name}{changed}): {label} "
        f"{result.mean:.4g}{unit} ± {result.ci95:.3g}{unit} (95% CI over {result.n} episodes, seed {seed})"
    )
    record = {
        "run": str(config.run),
        "checkpoint": str(path),
        "step": ckpt["step"],
        "split": config.split,
        "seed": seed,
        "metric": metric,
        "unit": "percent" if metric == "accuracy" else "mse",
        "hparam_overrides": config.hparams,
        **result.as_dict(),
    }
    out = config.out_dir / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    return record


# --------------------------------------------------------------------- export
class ExportConfig(CommandConfig):
    """Write a run's weights as safetensors, with the construction record as metadata
    (metabridge.load_pretrained(path) rebuilds the trained algorithm from the file alone)."""

    run: RunPath = Field(description=_RUN_HELP)
    out: Path = Field(
        description=(  # type: ignore[assignment]
            "The .safetensors file to write; the resolved settings go beside it (FILE.config.json)."
        )
    )
    which: Literal["auto", "best", "last"] = Field("auto", description=_WHICH_HELP)

    def write_resolved(self) -> Path:
        """Write these settings beside the exported file, as ``FILE.config.json``."""
        path = Path(self.out).with_name(Path(self.out).name + ".config.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path


def run_export(config: ExportConfig) -> Path:
    """Write the run's weights to ``config.out``; return its path."""
    from ..export import save_weights

    ckpt, path = _load_for_eval(config.run, config.which)
    if ckpt.get("build") is None:
        raise ValueError(f"{path} predates construction records; re-train, or load it with metabridge eval.")
    save_weights(ckpt["algorithm"], config.out, ckpt["build"], step=int(ckpt["step"]))
    print(f"wrote {config.out} ({ckpt['build']['algorithm']}, step {ckpt['step']}, from {path.name})")
    return Path(config.out)
