"""Unpickling data files that may be hostile: only the globals NumPy arrays need are admitted.

A pickle runs code through the globals it names (``os.system``, ``builtins.eval``, …). The CIFAR-10
batches only hold dicts, lists, str/bytes, numbers and NumPy arrays; plain containers need no
global at all, and a NumPy array needs exactly these (as pickled by Python 2 and by NumPy 1.x/2.x):

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` (protocols 0–4),
  ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer`` (protocol 5);
- ``numpy.ndarray`` and ``numpy.dtype``; ``numpy.core.multiarray.scalar`` for NumPy scalars;
- ``_codecs.encode`` (how Python 3 writes ``bytes`` at protocols 0–2), latin-1 only.

Each is wrapped so that it can only build a plain ``ndarray`` of a non-object dtype. Anything else
stops the load with :class:`RefusedGlobal` before it is looked up, so nothing in the file runs.

No array can be larger than the bytes the file holds: ``numpy.ndarray`` is admitted only as the
*name* ``_reconstruct`` receives (:data:`NDARRAY`), never as something the pickle can call — calling
``ndarray(shape, dtype, buffer, offset, strides)`` with zero strides would make any declared size
out of a one-byte buffer — and the data then arrives through ``ndarray.__setstate__`` or
``frombuffer``, which both require exactly ``shape × itemsize`` bytes.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

__all__ = ["RefusedGlobal", "restricted_load"]


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set; ``name`` is ``module.qualname``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the pickle references {name}, which is not allowed")
        self.name = name


def _plain_dtype(dtype: Any) -> np.dtype:
    dt = dtype if isinstance(dtype, np.dtype) else _dtype(dtype)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"object arrays are not allowed (dtype {dt})")
    return dt


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if isinstance(spec, bytes):
        spec = spec.decode("ascii")
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.kind == "O":
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dt


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name for :func:`_reconstruct`, not callable."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("the pickle calls numpy.ndarray(...) directly, which could make an array "
                                     "far larger than the file (strides, buffer); refused")


NDARRAY = _NdarrayName()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not NDARRAY:
        raise pickle.UnpicklingError(f"only numpy.ndarray may be rebuilt, got {subtype!r}")
    # the real shape and data arrive with __setstate__, which checks them against each other
    return _multiarray._reconstruct(np.ndarray, (0,), _plain_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> np.ndarray:
    return _numeric._frombuffer(buf, _plain_dtype(dtype), shape, order, axis_order)


def _scalar(dtype: Any, *args: Any) -> Any:
    return _multiarray.scalar(_plain_dtype(dtype), *args)


def _encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for latin-1 text, got {encoding!r}")
    return text.encode("latin-1", errors)


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | _NdarrayName] = {
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
    **{(mod, "_reconstruct"): _reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def restricted_load(file: BinaryIO | bytes, *, encoding: str = "bytes") -> Any:
    """``pickle.load`` admitting only dicts, lists, tuples, str/bytes, numbers and NumPy arrays.

    ``encoding`` is how Python 2 ``str`` objects are read (``"bytes"`` keeps them as bytes, as
    the CIFAR-10 key layout expects). Raises :class:`RefusedGlobal` for any other global and
    ``pickle.UnpicklingError`` (or ``EOFError``, ``ValueError``…) for a corrupt stream.
    """
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    return _Unpickler(stream, encoding=encoding).load()
