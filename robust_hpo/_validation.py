"""Input checks in one place, with one message format: ``<name> must be <what>, got <value>``.

Parameters are checked against *declarative constraints* (in the style of scikit-learn's
``sklearn/utils/_param_validation.py``): a list of alternatives per parameter, any of which may
hold — :class:`Interval` (integers or real numbers between bounds), :class:`Options` (one of a
few values), :class:`InstanceOf` (a type), :class:`Satisfies` (a predicate with its description)
and ``None``. :func:`check` tests one value, :func:`check_params` a mapping against a
``{name: [constraints]}`` table; both raise :class:`~robust_hpo.errors.ValidationError` naming the
parameter (with the caller's prefix, e.g. ``attacks[1].size``).

Array helpers (:func:`as_finite_2d`, :func:`as_labels`) check array inputs with the same format;
:func:`flatten_images` is the one place images (n, C, H, W) become the rows (n, C·H·W) the convex
learners see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from robust_hpo.errors import ValidationError

__all__ = [
    "Constraint",
    "InstanceOf",
    "Interval",
    "Options",
    "Satisfies",
    "as_finite_2d",
    "as_labels",
    "check",
    "check_betas",
    "check_params",
    "describe",
    "flatten_images",
]


class Constraint:
    """One acceptable form of a value; ``str(constraint)`` describes it ("a positive integer")."""

    def is_satisfied_by(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class Interval(Constraint):
    """Integers (``Integral``) or finite real numbers (``Real``) between ``left`` and ``right``.

    ``None`` for a bound means unbounded; ``closed`` is ``"both"``, ``"left"``, ``"right"`` or
    ``"neither"``. Booleans are never numbers here; NumPy scalars are.
    """

    def __init__(self, kind: type, left: float | None, right: float | None, *, closed: str = "both") -> None:
        if kind not in (Integral, Real):
            raise TypeError(f"kind must be numbers.Integral or numbers.Real, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise TypeError(f"closed must be 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if self.kind is Real and not math.isfinite(value):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.left is not None and not (value >= self.left if left_closed else value > self.left):
            return False
        if self.right is not None and not (value <= self.right if right_closed else value < self.right):
            return False
        return True

    def __str__(self) -> str:
        integer = self.kind is Integral
        article, noun = ("an", "integer") if integer else ("a", "finite number")
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if integer and self.right is None and left_closed and self.left in (0, 1):
            return "a non-negative integer" if self.left == 0 else "a positive integer"
        if self.right is None and self.left is not None:
            return f"{article} {noun} {'>=' if left_closed else '>'} {self.left:g}"
        if self.left is None and self.right is not None:
            return f"{article} {noun} {'<=' if right_closed else '<'} {self.right:g}"
        if self.left is None:
            return f"{article} {noun}"
        brackets = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}[self.closed]
        where = "the open interval " if self.closed == "neither" else ""
        noun = "integer" if integer else "number"
        return f"{article} {noun} in {where}{brackets[0]}{self.left:g}, {self.right:g}{brackets[1]}"


class Options(Constraint):
    """One of a few values (compared with ``==``, so ``1`` and ``1.0`` are the same option)."""

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = tuple(options)

    def is_satisfied_by(self, value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in self.options)

    def __str__(self) -> str:
        return repr(self.options[0]) if len(self.options) == 1 else f"one of {list(self.options)}"


class InstanceOf(Constraint):
    """An instance of ``types``, described as ``description`` ("a string", "a PoisonedSplit")."""

    def __init__(self, types: type | tuple[type, ...], description: str) -> None:
        self.types, self.description = types, description

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) and bool not in (self.types if isinstance(self.types, tuple) else (self.types,)):
            return False
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return self.description


class Satisfies(Constraint):
    """Any value for which ``predicate(value)`` is true, described as ``description``."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def is_satisfied_by(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.description


NON_EMPTY_STRING = Satisfies(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")
BOOLEAN = InstanceOf(bool, "true or false")

ConstraintSpec = Sequence["Constraint | None"]


def describe(constraints: ConstraintSpec) -> str:
    """The alternatives in words: ``a positive integer or -1``. ``None`` (the parameter may be left
    out) is not named: a study file has no ``None``, and the message is about the value given."""
    parts = [str(c) for c in constraints if c is not None] or ["None"]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check(name: str, value: Any, constraints: ConstraintSpec, *, note: str = "") -> Any:
    """``value`` if any constraint holds, else ``ValidationError("<name> must be ..., got <value>")``.

    ``note`` is appended to the description in parentheses (what the parameter means).
    """
    for constraint in constraints:
        if (value is None) if constraint is None else constraint.is_satisfied_by(value):
            return value
    what = describe(constraints) + (f" ({note})" if note else "")
    raise ValidationError(f"{name} must be {what}, got {value!r}")


def check_params(params: Mapping[str, Any], constraints: Mapping[str, ConstraintSpec], *,
                 prefix: str = "") -> None:
    """Check every entry of ``params`` that has constraints (``prefix`` + name in messages)."""
    for name, value in params.items():
        if name in constraints:
            check(f"{prefix}{name}", value, constraints[name])


def check_betas(betas: Any, *, include_zero: bool) -> tuple[float, ...]:
    """Poison weights β as a sorted tuple of distinct finite numbers.

    ``include_zero=True`` (a curve over β, starting at the clean model): 0 must be among them, with
    at least one β > 0. ``include_zero=False`` (finite differences against the clean model): every
    β > 0. One rule for both; ``ValidationError`` names ``betas`` otherwise.
    """
    if isinstance(betas, (str, bytes)) or not isinstance(betas, (Sequence, np.ndarray)) or len(betas) == 0:
        raise ValidationError(f"betas must be a non-empty list of numbers, got {betas!r}")
    values: list[float] = []
    for beta in betas:
        if isinstance(beta, bool) or not isinstance(beta, (Real, np.number)) or not math.isfinite(beta) \
                or beta < 0 or (beta == 0 and not include_zero):
            expected = "finite numbers >= 0" if include_zero else "finite numbers > 0"
            raise ValidationError(f"betas must hold {expected}, got {beta!r}")
        values.append(float(beta))
    if len(set(values)) != len(values):
        raise ValidationError(f"betas must be distinct, got {list(values)!r}")
    ordered = tuple(sorted(values))
    if include_zero and (ordered[0] != 0.0 or len(ordered) < 2):
        raise ValidationError(f"betas must include 0 (the clean model, where the slope is taken) and at "
                              f"least one β > 0, got {list(values)!r}")
    return ordered


def as_finite_2d(name: str, X: object, *, max_abs: float | None = None) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float64 array, or raise ``ValidationError`` naming ``name``;
    ``max_abs``: also refuse an entry larger in magnitude (found by the same two reductions)."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse: np.asarray makes a 0-d object array
        raise ValidationError(f"{name} must be a dense numeric array, got a sparse {type(X).__name__}; "
                              "convert it with .toarray()")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValidationError(f"{name} must be a numeric array, got {type(X).__name__} ({exc})") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValidationError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValidationError(f"{name} must hold real numbers, got dtype {arr.dtype} (its imaginary part would be "
                              "dropped)")
    if arr.ndim != 2:
        raise ValidationError(f"{name} must be a 2-D array (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValidationError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValidationError(f"{name} must have at least one feature, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())  # a NaN propagates to both, an infinity shows at an end
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValidationError(f"{name} contains NaN or infinite values; expected finite numbers")
    largest = max(-lo, hi)
    if max_abs is not None and largest > max_abs:
        raise ValidationError(f"{name} has values of magnitude {largest:.3g}; expected |x| <= {max_abs:g} "
                              "(products of such values overflow float64): rescale the features")
    return arr


def as_labels(name: str, y: object, n: int, n_name: str) -> np.ndarray:
    """Return ``y`` as a 1-D label array of length ``n`` or raise ``ValidationError`` naming ``name``."""
    try:  # a list keeps its Python objects (np.asarray would turn [3, "8"] into strings)
        arr = np.asarray(y) if isinstance(y, np.ndarray) else np.asarray(y, dtype=object)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{name} must be a 1-D array of class labels, got {type(y).__name__} ({exc})") from None
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValidationError(f"{name} has {arr.shape[0]} labels but {n_name} has {n} rows; expected equal lengths")
    if arr.dtype == object:  # a list of Python objects: all integers or all strings become that dtype
        kinds = {int if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else
                 float if isinstance(v, (float, np.floating)) else
                 str if isinstance(v, str) else type(v) for v in arr}
        if kinds not in ({int}, {str}, {float}, {int, float}):
            raise ValidationError(f"{name} must hold integer or string class labels, got "
                                  f"{sorted(k.__name__ for k in kinds)}")
        arr = arr.astype(str if kinds == {str} else np.int64 if kinds == {int} else np.float64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype.kind in "USb"):
        raise ValidationError(f"{name} must hold integer or string class labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name} contains NaN or infinite values; expected class labels")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        example = arr[arr != np.round(arr)][0]
        raise ValidationError(f"{name} holds non-integral numbers (e.g. {float(example):g}); expected class labels: "
                              "integers or strings")
    return arr


def flatten_images(images: np.ndarray) -> np.ndarray:
    """(n, ...) images -> (n, prod(...)) float64 rows, the layout the convex learners see."""
    return np.ascontiguousarray(images.reshape(images.shape[0], -1), dtype=np.float64)
