"""pydantic's validation messages in the project's words, shared by the config and hyperparameter checks.

:func:`plain_message` turns one entry of ``ValidationError.errors()`` into a short phrase
("must be >= 1"); :func:`metabridge.config.describe_validation_error` and
:func:`metabridge.hparams.validate_hparams` build their one-line errors from it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["plain_message"]


def plain_message(err: Any) -> str:
    """pydantic's message for one error, in the project's words ("must be >= 1")."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    words = {
        "greater_than_equal": "must be >= {ge}",
        "greater_than": "must be > {gt}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "finite_number": "must be a finite number",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "must be auto, cpu, cuda, cuda:N or mps",
        "missing": "is required",
    }
    if kind in words:
        return words[kind].format(**ctx)
    if kind == "value_error" and "error" in ctx:  # a validator's own sentence, without "Value error, "
        return str(ctx["error"]).rstrip(".")
    return str(err["msg"])
