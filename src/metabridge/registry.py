"""One registry type behind every extensible kind: algorithms, backbones, datasets, weightings,
multi-task models and benchmarks, meta-RL environments and meta-RL algorithms.

A :class:`Registry` maps names to objects (classes, factories or loaders) and is a read-only
:class:`~collections.abc.Mapping` (``ALGORITHMS["maml"]``, ``"conv4" in MODELS``,
``list(WEIGHTINGS)``). Every kind is registered with the same signature (the style of
torchvision's and timm's ``register_model``)::

    @ALGORITHMS.register("mine")          # a decorator, under an explicit name
    class Mine(MetaAlgorithm): ...

    @ALGORITHMS.register()                # under obj.name (a string attribute), else obj.__name__
    class Other(MetaAlgorithm):
        name = "other"

    ALGORITHMS.register("third", Third)   # a plain call

The rules, the same for every kind:

* **Names.** A name is a non-empty string without whitespace. It is stored lower-case, and
  lookups ignore case and treat ``-`` and ``_`` alike: ``"MAML"``, ``"mini-imagenet"`` and
  ``"mini_imagenet"`` find the entries ``maml`` and ``mini_imagenet``. A registry may also
  accept documented aliases (``"miniimagenet"``), which are not listed.
* **Replacing.** Registering a name that is taken (under the rule above) by another object
  raises :class:`ValueError` unless ``replace=True``; registering the same object again is a
  no-op. :meth:`Registry.unregister` removes a name, and brings back what a ``replace=True``
  registration replaced. Built-in entries (objects defined in metabridge itself, and the
  lazily imported built-ins) can be replaced but not removed.
* **Unknown names** raise :class:`UnknownNameError` (both a :class:`KeyError` and a
  :class:`ValueError`), one line with the closest known names (:func:`difflib.get_close_matches`).
* **Listing.** :meth:`Registry.names` (sorted), :meth:`Registry.describe` (one line per
  entry), :func:`describe_all` and :meth:`Registry.all_registries` (every registry by its
  plural kind name, for ``metabridge list KIND``).

Built-in entries whose code needs an optional dependency are registered lazily
(:meth:`Registry.register_lazy`): the module is imported on first use, and a missing extra
is an :class:`ImportError` naming the ``pip install`` that provides it.

This module imports nothing from metabridge.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast, overload

__all__ = ["LazyEntry", "Registry", "UnknownNameError", "describe_all", "normalize_name", "summary_line"]

T = TypeVar("T")
Obj = TypeVar("Obj")

_MISSING: Any = object()


def normalize_name(name: str) -> str:
    """The key two names are compared by: lower-case, ``-`` read as ``_``."""
    return name.strip().lower().replace("-", "_")


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has (a :class:`KeyError` for the mapping protocol, a
    :class:`ValueError` for callers that catch bad input). Its text is one line."""

    def __init__(self, message: str, *, kind: str = "", name: object = None, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message, self.kind, self.name = message, kind, name
        self.suggestions = list(suggestions)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass(frozen=True)
class LazyEntry:
    """A built-in entry imported on first use: ``module.attr``; ``extra`` names the optional
    dependency group (``pip install 'metabridge[extra]'``) it needs, ``description`` the line
    :meth:`Registry.describe` shows without importing it."""

    module: str
    attr: str
    extra: str | None = None
    description: str | None = None

    def load(self, kind: str, name: str) -> Any:
        """Import the module and return the attribute (an error naming the extra if it is missing)."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            if self.extra is None:
                raise
            raise ImportError(
                f"{kind} {name!r} needs the optional extra [{self.extra}] ({exc}); install it with "
                f"pip install 'metabridge[{self.extra}]'."
            ) from exc
        return getattr(module, self.attr)


def summary_line(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring as one line (a partial's: its function's)."""
    target = obj.func if isinstance(obj, functools.partial) else obj
    doc = (inspect.getdoc(target) or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


def _is_builtin_object(obj: Any) -> bool:
    target = obj.func if isinstance(obj, functools.partial) else obj  # a partial counts as what it wraps
    module = getattr(target, "__module__", None) or ""
    return module == "metabridge" or module.startswith("metabridge.")


def _default_check(kind: str, name: str, obj: Any) -> None:
    if not callable(obj):
        raise TypeError(f"a {kind} must be callable (a class or a function); {name!r} got {type(obj).__name__}.")


class Registry(Mapping[str, T]):
    """Names -> objects of one kind (see the module docstring for the rules).

    Args:
        kind: the kind in the singular, as messages say it (``"algorithm"``).
        plural: the kind's listing name (``"algorithms"``; ``metabridge list algorithms``).
        register_hint: the public function that registers one (``"metabridge.register_algorithm"``),
            named in the unknown-name message.
        check: ``check(name, obj)`` raises :class:`TypeError` (or :class:`ValueError`) when ``obj``
            is not of this kind (default: it must be callable).
        describer: ``describer(obj) -> str``, one line for :meth:`describe` (default:
            :func:`summary_line`, the first paragraph of the object's docstring).
        aliases: other spellings accepted by lookups (not listed), alias -> name.
        unknown_hint: text appended to the unknown-name message (e.g. what else is accepted).
    """

    _all: ClassVar[dict[str, Registry[Any]]] = {}

    def __init__(
        self,
        kind: str,
        plural: str,
        *,
        register_hint: str,
        check: Callable[[str, Any], None] | None = None,
        describer: Callable[[Any], str] | None = None,
        aliases: Mapping[str, str] | None = None,
        unknown_hint: str = "",
    ) -> None:
        self.kind, self.plural, self.register_hint = kind, plural, register_hint
        self._check = check
        self._describer = describer
        self._aliases = {normalize_name(a): normalize_name(n) for a, n in (aliases or {}).items()}
        self._unknown_hint = unknown_hint
        #: name (as listed) -> object or LazyEntry
        self._entries: dict[str, Any] = {}
        #: name -> the entries a replace=True registration replaced (the newest last)
        self._replaced: dict[str, list[Any]] = {}
        Registry._all[plural] = self

    # ------------------------------------------------------------------ lookup
    def _find(self, name: object) -> str | None:
        """The listed name that ``name`` (or its alias) stands for, or None."""
        if not isinstance(name, str):
            return None
        if name in self._entries:
            return name
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        for listed in self._entries:
            if normalize_name(listed) == key:
                return listed
        return None

    def unknown(self, name: object) -> UnknownNameError:
        """The error for a name this registry does not have (one line, closest names first)."""
        known = self.names()
        text = name if isinstance(name, str) else repr(name)
        close = difflib.get_close_matches(normalize_name(text), [normalize_name(k) for k in known], n=3, cutoff=0.6)
        by_key = {normalize_name(k): k for k in known}
        suggestions = [by_key[c] for c in close]
        guess = f"; did you mean {suggestions[0]!r}?" if suggestions else ";"
        message = (
            f"unknown {self.kind} {name!r}{guess} Known: {', '.join(known) or '(none)'} "
            f"(register your own with {self.register_hint}){self._unknown_hint}."
        )
        return UnknownNameError(message, kind=self.kind, name=name, suggestions=suggestions)

    def canonical(self, name: str) -> str:
        """The listed name ``name`` stands for (case, ``-``/``_`` and aliases resolved)."""
        listed = self._find(name)
        if listed is None:
            raise self.unknown(name)
        return listed

    def get(self, name: str, default: Any = _MISSING) -> T:  # type: ignore[override]
        """The object registered as ``name``; :class:`UnknownNameError` (with the closest names)
        when there is none, unless ``default`` is given."""
        listed = self._find(name)
        if listed is None:
            if default is not _MISSING:
                return cast(T, default)
            raise self.unknown(name)
        entry = self._entries[listed]
        if isinstance(entry, LazyEntry):
            return cast(T, entry.load(self.kind, listed))
        return cast(T, entry)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def lazy_entry(self, name: str) -> LazyEntry | None:
        """The :class:`LazyEntry` behind ``name`` (None for an object registered directly)."""
        entry = self._entries.get(self.canonical(name))
        return entry if isinstance(entry, LazyEntry) else None

    def describe(self, name: str) -> str:
        """One line about ``name``: the registry's describer, else :func:`summary_line` (a lazy
        built-in whose extra is missing says which extra it needs)."""
        listed = self.canonical(name)
        entry = self._entries[listed]
        if isinstance(entry, LazyEntry):
            if entry.description is not None:
                return entry.description
            try:
                entry = entry.load(self.kind, listed)
            except ImportError:
                return (
                    f"(needs the optional extra [{entry.extra}])" if entry.extra else "(its module cannot be imported)"
                )
        if self._describer is not None:
            return self._describer(entry)
        return summary_line(entry)

    # ------------------------------------------------------------ registration
    def _name_of(self, obj: Any) -> str:
        own = vars(obj).get("name") if isinstance(obj, type) else getattr(obj, "name", None)
        if isinstance(own, str) and own:
            return own
        fallback = getattr(obj, "__name__", None)
        if not isinstance(fallback, str):
            raise ValueError(
                f"{obj!r} has neither a string `name` nor a __name__; register it with an explicit "
                f'name: {self.register_hint}("name", obj).'
            )
        return fallback

    def _add(self, name: str, obj: Any, replace: bool) -> None:
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"a {self.kind} name must be a non-empty string without spaces (got {name!r}).")
        if not isinstance(obj, LazyEntry):
            (self._check or (lambda n, o: _default_check(self.kind, n, o)))(name, obj)
        listed = self._find(name)
        if listed is not None:
            old = self._entries[listed]
            if old is obj:
                return
            if not replace:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {_label(old)}; pass "
                    f"replace=True to replace it (or unregister it first)."
                )
            self._replaced.setdefault(listed, []).append(old)
            self._entries[listed] = obj
            return
        self._entries[name.lower()] = obj

    @overload
    def register(self, name: str | None = None, obj: None = None, *, replace: bool = False) -> Callable[[Obj], Obj]: ...

    @overload
    def register(self, name: str | None, obj: Obj, *, replace: bool = False) -> Obj: ...

    def register(self, name: Any = None, obj: Any = None, *, replace: bool = False) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that registers what it decorates.

        ``name`` None takes the object's string attribute ``name``, else its ``__name__``. A
        name taken by another object is refused unless ``replace=True``. Returns ``obj`` (or
        the decorated object) unchanged. (``register(obj)``, the object passed where the name
        goes, still works with a :class:`DeprecationWarning`: write ``register()(obj)``.)
        """
        if name is not None and not isinstance(name, str):
            if obj is not None:
                raise TypeError(f"register takes (name, obj); got a {type(name).__name__} as the name.")
            warnings.warn(
                f"passing the object first to {self.register_hint} is deprecated; decorate with "
                f'@{self.register_hint}() or call {self.register_hint}("name", obj).',
                DeprecationWarning,
                stacklevel=2,
            )
            self._add(self._name_of(name), name, replace)
            return name
        if obj is not None:
            self._add(name if name is not None else self._name_of(obj), obj, replace)
            return obj

        def decorate(target: Obj) -> Obj:
            self._add(name if name is not None else self._name_of(target), target, replace)
            return target

        return decorate

    def register_lazy(
        self, name: str, module: str, attr: str, *, extra: str | None = None, description: str | None = None
    ) -> None:
        """Register the built-in ``module.attr`` under ``name`` without importing it (see :class:`LazyEntry`)."""
        self._add(name, LazyEntry(module, attr, extra, description), replace=False)

    def is_builtin(self, name: str) -> bool:
        """Whether the entry ``name`` now holds comes with metabridge (defined in it, or lazy)."""
        entry = self._entries[self.canonical(name)]
        return isinstance(entry, LazyEntry) or _is_builtin_object(entry)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its object; a built-in that a ``replace=True`` registration
        replaced comes back. Built-in entries themselves cannot be removed."""
        listed = self._find(name)
        if listed is None:
            raise UnknownNameError(
                f"{self.kind} {name!r} is not registered; registered: {', '.join(self.names()) or '(none)'}.",
                kind=self.kind,
                name=name,
            )
        stack = self._replaced.get(listed)
        if not stack and self.is_builtin(listed):
            raise ValueError(
                f"{self.kind} {name!r} is a built-in {self.kind}, which cannot be removed (replace it "
                f'with {self.register_hint}("{listed}", obj, replace=True)).'
            )
        obj = self._entries.pop(listed)
        if stack:
            self._entries[listed] = stack.pop()
            if not stack:
                del self._replaced[listed]
        return cast(T, obj)

    # ----------------------------------------------------------------- listing
    @classmethod
    def all_registries(cls) -> dict[str, Registry[Any]]:
        """Every registry created so far, by plural kind name (all of metabridge's once
        ``metabridge`` is imported), sorted by that name."""
        return dict(sorted(cls._all.items()))


def describe_all(kind: str) -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every entry of the registry whose plural is ``kind``."""
    registries = Registry.all_registries()
    registry = registries.get(kind)
    if registry is None:
        raise UnknownNameError(
            f"unknown kind {kind!r}; known: {', '.join(registries) or '(none)'}.",
            kind="kind",
            name=kind,
            suggestions=difflib.get_close_matches(kind, list(registries), n=3),
        )
    return [(name, registry.describe(name)) for name in registry.names()]


def _label(obj: Any) -> str:
    if isinstance(obj, LazyEntry):
        return f"the built-in {obj.module}.{obj.attr}"
    target = obj.func if isinstance(obj, functools.partial) else obj
    qual = getattr(target, "__qualname__", None)
    return f"{getattr(target, '__module__', '?')}.{qual}" if qual else repr(obj)
