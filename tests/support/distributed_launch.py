"""Start a test worker script as W ranks with torchrun's environment set by hand (gloo on the CPU).

Shared by the data-parallel tests of the meta-RL and multi-task trainers
(tests/test_rl_distributed.py, tests/test_multitask_distributed.py); the same pattern as
tests/test_distributed.py's launcher, with the worker script as an argument.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(worker: Path, args: list[str], world: int = 2, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Run ``python WORKER ARGS`` as ``world`` ranks (RANK, WORLD_SIZE, MASTER_ADDR, ... set, one
    thread each); returns each rank's completed process (stdout and stderr together)."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(worker), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    out = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, None))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out
