"""The interrupt guard installs its handlers only while a run lasts, only in the main thread, and
leaves an ignored signal ignored; the resume command repeats the CLI call with --resume."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

from metabridge.training import InterruptGuard, StepEnd, TrainingInterrupted, TrainingLoop, resume_command


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler during each test, whatever the test run inherited (a job a shell
    starts in the background ignores SIGINT, and the guard rightly leaves an ignored signal alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_handlers_are_restored_after_the_run() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with InterruptGuard(announce=False) as guard:
        assert signal.getsignal(signal.SIGINT) == guard._handle
        os.kill(os.getpid(), signal.SIGTERM)  # only recorded: the process lives on
        assert guard.requested == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_ignored_signal_stays_ignored_and_threads_install_nothing() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with InterruptGuard(announce=False):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    seen = []

    def in_thread() -> None:
        with InterruptGuard(announce=False):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert seen == [before]


def test_the_loop_checkpoints_the_step_in_flight_and_stops(tmp_path) -> None:
    saved: list[int] = []

    def save(step: int, best: bool) -> object:
        saved.append(step)
        return tmp_path / "last.pt"

    def step(i: int) -> StepEnd:
        if i == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives during step 3: step 3 still completes
        return StepEnd()

    loop = TrainingLoop(start=0, steps=100, save=save, resume="again", checkpoint_every=2, progress=False)
    with pytest.raises(TrainingInterrupted, match="after step 3.*resume with: again") as err:
        loop.run(step)
    assert saved == [2, 3] and err.value.step == 3 and loop.step == 3
    again = pickle.loads(pickle.dumps(err.value))
    assert isinstance(again, KeyboardInterrupt) and str(again) == str(err.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_command_repeats_the_cli_call() -> None:
    argv = ["/venv/bin/metabridge", "rl", "train", "--preset", "navigation-finn", "--out", "runs/a b", "--overwrite"]
    assert resume_command(1, argv) == "metabridge rl train --preset navigation-finn --out 'runs/a b' --resume"
    assert (
        resume_command(2, argv, fixed=["train", "--resume", "--out", "r"])
        == "torchrun --nproc-per-node 2 -m metabridge train --resume --out r"
    )
    assert resume_command(1, ["/x/src/metabridge/__main__.py", "train"]) == "metabridge train --resume"
    assert resume_command(1, ["-c"]) is None


def test_a_signal_during_the_final_step_lets_the_run_finish(tmp_path) -> None:
    saved: list[int] = []

    def step(i: int) -> None:
        if i == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    loop = TrainingLoop(start=0, steps=4, save=lambda i, best: saved.append(i) or tmp_path, resume="", progress=False)
    assert loop.run(step) == 4 and saved == [4]
