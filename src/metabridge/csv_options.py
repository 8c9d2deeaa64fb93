"""Comma-separated option values (``--widths 16,64,256``), parsed in one place for every command."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
