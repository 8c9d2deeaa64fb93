"""The ``metabridge`` command line: ``train``, ``eval RUN``, ``export RUN``, ``list KIND``,
``compare``, ``multitask``, ``theory ...``, ``rl ...`` and ``bench NAME``.

One mechanism builds every command: its settings are a pydantic model (``ExperimentConfig``
for ``train``, a :class:`~metabridge.config.CommandConfig` subclass for the others) whose
fields tyro turns into options, and a run function takes the validated settings
(:mod:`metabridge.cli._commands` lists them). Every command takes ``--config FILE`` and
writes its resolved settings into its ``--out``.

Errors caused by the input print one ``error: ...`` line naming the fix, without a
traceback: exit status 2 when the arguments or settings are invalid, 1 when the run itself
stops on bad input (a damaged checkpoint, a diverging loss, data that cannot supply the
episodes). Set ``METABRIDGE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..config import describe_validation_error
from ._commands import available_benchmarks, dispatch
from ._parse import UsageError

__all__ = ["UsageError", "available_benchmarks", "main"]


def _runtime_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input is wrong", not "metabridge has a bug", raised while running."""
    from ..checkpoint import CheckpointError
    from ..data.download import DownloadError
    from ..data.spec import DatasetFormatError
    from ..training.loop import NonFiniteError

    types: list[type[BaseException]] = [
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        CheckpointError,
        NonFiniteError,
        FloatingPointError,
        DatasetFormatError,
        DownloadError,
        ImportError,
    ]  # ImportError: an optional extra is missing (its pip line)
    try:
        from ..rl.trainer import RLTrainingError

        types.append(RLTrainingError)
    except ImportError:  # pragma: no cover - the RL code needs no extra to import
        pass
    return tuple(types)


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc, options=False, model=None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[0].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``metabridge ARGS...`` (``argv`` default: ``sys.argv[1:]``); return the exit status.

    Input errors print one ``error: ...`` line on stderr and return 2 (invalid arguments or
    settings) or 1 (the run stopped on bad input); ``METABRIDGE_DEBUG=1`` re-raises them.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(args)
    except BrokenPipeError:  # the reader of stdout went away (e.g. metabridge list | head)
        with contextlib.suppress(OSError, ValueError):  # Python's documented remedy, for a real stdout
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt as exc:
        print(f"\n{exc}" if str(exc) else "\ninterrupted", file=sys.stderr)
        return 130
    except (UsageError, ValidationError) as exc:
        if os.environ.get("METABRIDGE_DEBUG"):
            raise
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
    except _runtime_error_types() as exc:
        if os.environ.get("METABRIDGE_DEBUG"):
            raise
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 1


def __getattr__(name: str) -> Any:
    if name == "app":  # the typer application of earlier releases: same commands, through main
        from ._compat import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
