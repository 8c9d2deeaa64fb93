"""A command's settings from its arguments: the fields of a pydantic model become options.

tyro reads the model (types, defaults, ``Field`` descriptions as help, ``Annotated``
markers such as :data:`metabridge.config.Positional`) and parses the arguments; this module
adds the three things every metabridge command shares:

* ``--config FILE`` (TOML, YAML or JSON): the file's values replace the model's defaults, and
  options given beside it win;
* an option of a list or mapping field may be given once with several values
  (``--methods mtl maml``) or repeated (``--methods mtl --methods maml``; ``--hp a=1 --hp b=2``);
  the ``KEY=VALUE`` pairs of a mapping are added to the file's (or the default's) pairs;
* validation by pydantic after parsing, so every problem is one line naming the option
  (:func:`metabridge.config.describe_validation_error`), never a traceback or a box.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..config import KeyValues, describe_validation_error, option_name, read_config_file
from ..plugins import load_plugins

M = TypeVar("M", bound=BaseModel)

CONFIG_OPTION = "--config"
CONFIG_HELP = (
    "Every option can also come from --config FILE (TOML, YAML or JSON; field names as keys, "
    "e.g. a config.json this command wrote); options given beside it win."
)


class UsageError(ValueError):
    """The arguments do not make a valid command; its text is one line naming the fix."""


def split_config_option(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """``(FILE, the other arguments)`` for ``--config FILE`` / ``--config=FILE`` in ``argv``."""
    rest: list[str] = []
    path: Path | None = None
    args = list(argv)
    while args:
        token = args.pop(0)
        if token == CONFIG_OPTION or token.startswith(CONFIG_OPTION + "="):
            value = token.partition("=")[2] if "=" in token else (args.pop(0) if args else "")
            if not value or value.startswith("-"):
                raise UsageError(f"{CONFIG_OPTION} needs a file, e.g. {CONFIG_OPTION} run.toml.")
            path = Path(value)
            continue
        rest.append(token)
    return path, rest


def _is_collection(annotation: Any) -> bool:
    """Whether a field of this type takes several values (a list, tuple, set or mapping)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset, dict):
        return True
    return any(_is_collection(arg) for arg in typing.get_args(annotation)) if origin is not None else False


def multi_value_options(model: type[BaseModel]) -> set[str]:
    """The options of ``model`` that take several values."""
    return {option_name(name, model) for name, info in model.model_fields.items() if _is_collection(info.annotation)}


def merge_repeated(argv: Sequence[str], options: set[str]) -> list[str]:
    """``--m a --x 1 --m b`` -> ``--m a b --x 1`` for each multi-value option ``--m`` in ``options``."""
    items: list[str | list[str]] = []  # a list stands for one multi-value option and its values
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for token in argv:
        if token.startswith("--"):
            name, eq, inline = token.partition("=")
            current = None
            if name in options:
                current = groups.get(name)
                if current is None:
                    current = groups[name] = [name]
                    items.append(current)
                if eq:
                    current.append(inline)
                continue
        elif current is not None:
            current.append(token)
            continue
        items.append(token)
    return [token for item in items for token in (item if isinstance(item, list) else [item])]


def _key_value_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if any(m is KeyValues for m in info.metadata)]


def _default_instance(model: type[M], data: dict[str, Any], source: Path) -> M:
    """The defaults a config file gives. A missing required field may still come as an option,
    and a check across fields is made once the options are in; a wrong value is the file's error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        if all(err["type"] == "missing" or not err["loc"] for err in exc.errors()):
            return model.model_construct(**data)
        raise UsageError(f"{source}: {describe_validation_error(exc, model=model)}") from None


class _Parsed(dict):  # type: ignore[type-arg]
    """The values tyro parsed, before validation (see :func:`_unvalidated`)."""


def _unvalidated(model: type[BaseModel]) -> type[BaseModel]:
    """A stand-in for ``model`` that tyro fills in: it returns the parsed values unvalidated, so
    validation errors are reported by :func:`parse` as one line."""
    return type(
        model.__name__,
        (model,),
        {"__new__": lambda cls, **values: _Parsed(values), "__module__": model.__module__, "__doc__": model.__doc__},
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RULE = set("─━-=╰╯┗┛+ ")


def one_line_usage_error(text: str, prog: str) -> str:
    """The first message of tyro's error output (in a box, or under a title and a rule when
    stdout is not UTF-8), as one line."""
    lines = [_ANSI.sub("", raw).strip().strip("│┃|").strip() for raw in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)

    def is_rule(line: str) -> bool:  # a blank line counts as one
        return set(line) <= _RULE

    if lines and (lines[0][:1] in ("╭", "┏") or (len(lines) > 1 and lines[1] and is_rule(lines[1]))):
        lines = lines[1:]  # the title
    body: list[str] = []
    for line in lines:
        if is_rule(line):
            if body:
                break  # what follows the message is detail and help text
            continue
        body.append(line)
        if len(body) == 2 and body[0].endswith(":"):  # "Missing from PROG:" and the first missing argument
            break
    message = " ".join(body) or "invalid arguments"
    return f"{message} (see {prog} --help)"


def _run_tyro(
    model: type[BaseModel], argv: list[str], prog: str, default: BaseModel | None, description: str
) -> dict[str, Any]:
    import tyro

    errors = io.StringIO()
    kwargs: dict[str, Any] = {} if default is None else {"default": default}
    try:
        with contextlib.redirect_stderr(errors):
            parsed = tyro.cli(_unvalidated(model), args=argv, prog=prog, description=description, **kwargs)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise UsageError(one_line_usage_error(errors.getvalue(), prog)) from None
    return dict(parsed)  # type: ignore[call-overload]


def parse(
    model: type[M], argv: Sequence[str], prog: str, *, default: M | None = None, description: str | None = None
) -> M:
    """Validated settings of ``model`` from ``argv``.

    Args:
        model: the command's settings (a pydantic model; each field is an option).
        argv: the arguments after the command's name.
        prog: the command as typed (``metabridge compare``), for help and messages.
        default: settings whose values replace the model's defaults (before ``--config``).
        description: the ``--help`` text above the options [default: the model's docstring].

    Raises:
        UsageError: one line naming the option to fix; ``SystemExit(0)`` after ``--help``.
    """
    path, args = split_config_option(argv)
    if path is not None:
        base = default.model_dump() if default is not None else {}
        default = _default_instance(model, {**base, **read_config_file(path)}, path)
    args = merge_repeated(args, multi_value_options(model))
    text = inspect.cleandoc(description if description is not None else (model.__doc__ or "")).replace("``", "")
    raw = _run_tyro(model, args, prog, default, f"{text}\n\n{CONFIG_HELP}")
    for name in _key_value_fields(model):  # given pairs are added to the defaults' pairs
        before = getattr(default, name, None) or {}
        raw[name] = {**before, **(raw.get(name) or {})}
    load_plugins(list(raw.get("plugins") or []))  # their names must be known before validation
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, model=model)) from None
