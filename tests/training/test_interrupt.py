"""Nothing is lost on an interrupt: SIGINT/SIGTERM in the middle of a real run (a subprocess)
checkpoints the last completed step, and resuming from it ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from signals import default_sigint

from metabridge.checkpoint import CheckpointError, load_checkpoint

SUPPORT = Path(__file__).resolve().parents[1] / "support"
SRC = Path(__file__).resolve().parents[2] / "src"


def _records(run_dir: Path, kind: str = "train") -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if rec.get("kind") == kind:
            out.append(rec)
    return out


def interrupt_run(
    script: str, run_dir: Path, after: int, sig: int = signal.SIGINT, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Start ``script`` in a fresh interpreter, send ``sig`` once ``run_dir/metrics.jsonl`` holds
    ``after`` train records, and return the finished process (stdout and stderr captured)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + timeout
    try:
        while len(_records(run_dir)) < after:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before it was interrupted:\n{out}\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError("the run wrote no metrics in time")
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_checkpointed_last_step(done: subprocess.CompletedProcess[str], run_dir: Path) -> int:
    """The process exited on the signal, after checkpointing the step of its last train record."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr or "TrainingInterrupted" in done.stderr, done.stderr
    assert "resume with:" in done.stderr, done.stderr
    step = load_checkpoint(run_dir / "last.pt")["step"]
    assert step >= 2
    assert step == _records(run_dir)[-1]["step"]  # the last completed step, not an earlier periodic one
    return step


# --------------------------------------------------------------------------- few-shot
FEWSHOT = """
from metabridge_toys import toy_builder, toy_config
from metabridge.train import Trainer
Trainer(toy_config({out!r}, steps=100000, eval_every=0, checkpoint_every=100000, log_every=1),
        builder=toy_builder(), progress=False).run()
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_fewshot_interrupt_checkpoints_the_last_step_and_resumes_exactly(tmp_path: Path, sig: int) -> None:
    from metabridge_toys import params_vector, toy_builder, toy_config

    from metabridge.train import Trainer, resume_config

    out = tmp_path / "cut"
    done = interrupt_run(FEWSHOT.format(out=str(out)), out, after=3, sig=sig)
    step = assert_checkpointed_last_step(done, out)
    assert f"resume_config({str(out)!r})" in done.stderr
    final = step + 3
    resumed = Trainer(resume_config(out, steps=final), builder=toy_builder(), progress=False, resume=True)
    resumed.run()
    full = Trainer(
        toy_config(tmp_path / "full", steps=final, eval_every=0, checkpoint_every=100000, log_every=1),
        builder=toy_builder(),
        progress=False,
    )
    full.run()
    assert torch.equal(params_vector(resumed.experiment.algorithm), params_vector(full.experiment.algorithm))


# --------------------------------------------------------------------------- meta-RL
RL_TINY = dict(
    env="navigation-2d",
    env_kwargs={"horizon": 8},
    hidden=[8],
    meta_batch=3,
    rollouts=3,
    eval_every=0,
    eval_tasks=3,
    eval_rollouts=2,
    eval_updates=1,
    checkpoint_every=100000,
    algorithm="maml-trpo",
)
RL = """
from metabridge.rl.config import RLConfig
from metabridge.rl.trainer import train_rl
train_rl(RLConfig(**{cfg!r}, iterations=100000), {out!r}, progress=False)
"""


@pytest.mark.slow
def test_rl_interrupt_checkpoints_the_last_iteration_and_resumes_exactly(tmp_path: Path) -> None:
    from metabridge.rl.config import RLConfig
    from metabridge.rl.trainer import load_rl_run, train_rl

    out = tmp_path / "cut"
    done = interrupt_run(RL.format(cfg=RL_TINY, out=str(out)), out, after=2)
    step = assert_checkpointed_last_step(done, out)
    assert f"train_rl(config, {str(out)!r}, resume=True)" in done.stderr
    config = RLConfig(**RL_TINY, iterations=step + 2)
    resumed = train_rl(config, out, resume=True, progress=False)
    full = train_rl(config, tmp_path / "full", progress=False)
    a, b = load_rl_run(out)[2].state_dict(), load_rl_run(tmp_path / "full")[2].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.env_steps == full.env_steps and resumed.final["returns"] == full.final["returns"]


# --------------------------------------------------------------------------- multi-task
MTL_BUILD = """
import torch
from mtl_toy_benchmark import load_toy
from metabridge.multitask.models.registry import build_mtl_model
from metabridge.multitask.trainer import train_multitask
from metabridge.multitask.weighting import build_weighting


def mtl_run(out, steps, lr=1e-2, **kw):
    bench = load_toy(n_train=128)
    torch.manual_seed(0)
    model = build_mtl_model("hard_sharing", input_kind="vector", input_shape=(8,),
                            out_dims=[t.out_dim for t in bench.tasks], encoder_hidden=[16], encoder_out_dim=8)
    weighting = build_weighting("uw", len(bench.tasks))
    result = train_multitask(model, weighting, bench, steps=steps, batch_size=32, lr=lr, log_every=1,
                             eval_every=2, run_dir=out, progress=False, **kw)
    return model, weighting, result
"""


def _mtl_namespace() -> dict:
    namespace: dict = {}
    exec(MTL_BUILD, namespace)  # the same code the interrupted subprocess runs
    return namespace


@pytest.mark.slow
def test_multitask_interrupt_checkpoints_the_last_step_and_resumes_exactly(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    done = interrupt_run(MTL_BUILD + f"\nmtl_run({str(out)!r}, 100000)\n", out, after=3)
    step = assert_checkpointed_last_step(done, out)
    assert f"run_dir={str(out)!r}, resume=True" in done.stderr
    mtl_run = _mtl_namespace()["mtl_run"]
    model, weighting, resumed = mtl_run(out, step + 3, resume=True)
    full_model, full_weighting, full = mtl_run(tmp_path / "full", step + 3)
    for a, b in ((model, full_model), (weighting, full_weighting)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert resumed.curve == full.curve and resumed.weights == full.weights and resumed.best_step == full.best_step


def test_multitask_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """In process: a run stopped by an exception after its step-4 checkpoint, resumed to step 9."""
    mtl_run = _mtl_namespace()["mtl_run"]

    def crash(step: int, *args: object) -> None:
        if step == 6:  # 0-based: the run's 7th step, after the checkpoint of step 4
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        mtl_run(tmp_path / "cut", 9, checkpoint_every=4, on_batch=crash)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 4
    model, _, resumed = mtl_run(tmp_path / "cut", 9, resume=True)
    full_model, _, full = mtl_run(tmp_path / "full", 9)
    sa, sb = model.state_dict(), full_model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert resumed.curve == full.curve and resumed.train_losses == full.train_losses
    with pytest.raises(FileExistsError, match="resume=True"):
        mtl_run(tmp_path / "full", 9)
    with pytest.raises(CheckpointError, match="lr differ"):
        mtl_run(tmp_path / "full", 12, lr=0.5, resume=True)
    more = mtl_run(tmp_path / "full", 12, resume=True)[2]  # steps may grow
    assert [c["step"] for c in more.curve] == [2, 4, 6, 8, 9, 10, 12]


# --------------------------------------------------------------------------- the CLI
CLI = """
import sys
from metabridge.cli import main
sys.argv = ["metabridge", *{args!r}]  # as the installed console script sees it
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_train_interrupt_prints_a_resume_command_that_works(tmp_path: Path) -> None:
    from cli_runner import run_cli

    out = tmp_path / "cut"
    args = [
        "train",
        "--task",
        "sinusoid",
        "--algorithm",
        "fomaml",
        "--k-shot",
        "5",
        "--q-query",
        "5",
        "--meta-batch-size",
        "2",
        "--steps",
        "100000",
        "--eval-every",
        "0",
        "--log-every",
        "1",
        "--checkpoint-every",
        "100000",
        "--test-episodes",
        "10",
        "--val-episodes",
        "10",
        "--out",
        str(out),
        "--no-progress",
    ]
    done = interrupt_run(CLI.format(args=args), out, after=3)
    step = assert_checkpointed_last_step(done, out)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    command = done.stderr.split("resume with: ")[-1].split()
    assert command[:4] == ["metabridge", "train", "--resume", "--out"]
    resumed = run_cli([*command[1:], "--steps", str(step + 2)])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "last.pt")["step"] == step + 2


# --------------------------------------------------------------------------- data parallel
DDP = """
from metabridge_toys import toy_builder, toy_config
from metabridge.distributed import init_from_environment
from metabridge.train import Trainer
context = init_from_environment("cpu")
Trainer(toy_config({out!r}, steps=100000, eval_every=0, checkpoint_every=100000, log_every=1),
        builder=toy_builder(), progress=False, distributed=context).run()
"""


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_checkpointed_step(tmp_path: Path) -> None:
    from distributed_launch import free_port

    out, port = tmp_path / "ddp", free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(DDP.format(out=str(out)))],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=default_sigint,
            )
        )
    try:
        deadline = time.monotonic() + 120
        while len(_records(out)) < 3:
            assert all(p.poll() is None for p in procs), [p.communicate()[0][-2000:] for p in procs]
            assert time.monotonic() < deadline, "the ranks wrote no metrics in time"
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGINT)  # rank 1 only: rank 0 learns of it at the next agreement
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode != 0 for p in procs)
    assert all("TrainingInterrupted" in o for o in outputs), outputs
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == _records(out)[-1]["step"] >= 3 and ckpt["extra"]["world_size"] == 2


def test_multitask_non_finite_training_loss_stops_naming_the_step(tmp_path: Path) -> None:
    from metabridge.multitask.trainer import MultiTaskDivergedError

    def poison(step: int, x: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
        if step == 4:
            with torch.no_grad():
                losses.mul_(float("nan"))

    with pytest.raises(
        MultiTaskDivergedError,
        match=r"step 5: non-finite loss .*lower the learning rate.*; the checkpoint of step 4 is kept\.",
    ):
        _mtl_namespace()["mtl_run"](tmp_path / "nan", 9, checkpoint_every=4, on_batch=poison)
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["step"] == 4
    assert _records(tmp_path / "nan", "error")[0]["step"] == 5
