"""Run the ``metabridge`` command line in-process and capture what it prints.

Tests call :func:`run_cli` instead of a particular CLI library's test runner, so they keep
working whichever library builds the options: :func:`metabridge.cli.main` is called directly,
with stdout and stderr captured.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class CliResult:
    """What one command run returned and printed.

    Attributes:
        exit_code: The process exit status the command would have (0 = success).
        stdout: Everything written to standard output.
        stderr: Everything written to standard error.
        output: stdout followed by stderr (for assertions that do not care which stream).
    """

    exit_code: int
    stdout: str
    stderr: str
    output: str


@contextlib.contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    """``os.environ`` updated with ``env`` while the block runs, restored after it."""
    if not env:
        yield
        return
    before = {key: os.environ.get(key) for key in env}
    os.environ.update({key: str(value) for key, value in env.items()})
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exit_code(code: object) -> int:
    """The exit status ``SystemExit(code)`` stands for."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def _run_main(main: object, args: list[str]) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _exit_code(main(list(args)))  # type: ignore[operator]
        except SystemExit as exc:  # e.g. a library's --help exits
            code = _exit_code(exc.code)
    return CliResult(code, out.getvalue(), err.getvalue(), out.getvalue() + err.getvalue())


def run_cli(args: list[str], env: dict[str, str] | None = None) -> CliResult:
    """Run ``metabridge ARGS...`` in this process; ``env`` is added to the environment meanwhile.

    An unexpected exception (a bug, not a user error) propagates, so the test shows its
    traceback.
    """
    from metabridge.cli import main

    sys.stdout.flush()
    with _environment(env):
        return _run_main(main, args)
