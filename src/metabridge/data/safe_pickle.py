"""Load downloaded pickles without letting them run code.

The CIFAR-100, mini-ImageNet and tiered-ImageNet distributions are Python pickles;
``pickle.load`` on a file from the internet can execute anything. This unpickler
allows only builtin containers/scalars and the numpy constructors that array pickles
use, and raises :class:`UnsafePickleError` for anything else.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

_ALLOWED = {
    ("builtins", name)
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "bytes",
        "bytearray",
        "str",
        "int",
        "float",
        "complex",
        "bool",
        "object",
    )
} | {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("_codecs", "encode"),  # how Python-2 pickles store byte strings
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than plain data and numpy arrays."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load {module}.{name}: this pickle holds more than plain data")


def load_pickle(path: str | Path, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``path`` allowing only plain data and numpy arrays.

    ``encoding`` is passed to the unpickler (``"bytes"`` or ``"latin1"`` for Python 2
    pickles such as CIFAR-100's).
    """
    with open(path, "rb") as f:
        return _DataUnpickler(f, encoding=encoding).load()


def loads_pickle(data: bytes, *, encoding: str = "ASCII") -> Any:
    """:func:`load_pickle` for bytes in memory."""
    return _DataUnpickler(io.BytesIO(data), encoding=encoding).load()
