"""Comma-separated option values (``--widths 16,64,256``) and JSON-object options
(``--model-kwargs '{"widths": [16, 40]}'``), parsed in one place for every command."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", int, float, str)


def parse_csv(text: str, option: str, cast: Callable[[str], T] = int, *, positive: bool = False,
              example: str = "1,5,10") -> list[T]:
    """The values of a comma-separated option; ``ValueError`` naming ``option`` and an example
    when a value does not parse, when there is none, or (``positive``) when one is <= 0."""
    kind = {int: "integers", float: "numbers"}.get(cast, "values")  # type: ignore[call-overload]
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{option} takes comma-separated {kind}, e.g. {example} (got {text!r}).") from exc
    if not values:
        raise ValueError(f"{option} needs at least one value, e.g. {example}.")
    if positive and any(v <= 0 for v in values):  # type: ignore[operator]
        raise ValueError(f"{option} takes positive {kind}, e.g. {example} (got {text!r}).")
    return values


def parse_json_object(text: str, option: str, example: str = '{"widths": [16, 40, 80, 160]}') -> dict[str, Any]:
    """A JSON object given on the command line ({} when empty); ``ValueError`` naming ``option``
    and an example when it does not parse or is not an object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} takes a JSON object, e.g. '{example}' ({exc}).") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} takes a JSON object, e.g. '{example}' (got {text!r}).")
    return value
