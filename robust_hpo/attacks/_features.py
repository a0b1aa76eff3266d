"""Feature-space trigger for tabular rows: chosen columns set to fixed values (e.g. their 99th percentile)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo._validation import Satisfies
from robust_hpo.attacks._trigger import BaseTrigger, check_trigger_labels
from robust_hpo.errors import ValidationError

_QUANTILE = re.compile(r"^q(\d{1,3}(?:\.\d+)?)$")


def _is_feature(v: object) -> bool:
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and int(v) >= 0) or \
        (isinstance(v, str) and bool(v))


def _is_value(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return bool(np.isfinite(v))
    return isinstance(v, str) and (_quantile(v) is not None or _number(v) is not None)


def _quantile(v: str) -> float | None:
    match = _QUANTILE.match(v.strip().lower())
    if match is None or not 0.0 <= float(match.group(1)) <= 100.0:
        return None
    return float(match.group(1)) / 100.0


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if np.isfinite(x) else None


def _sequence(check: Any, what: str) -> Satisfies:
    """One item, or a non-empty list of items, each passing ``check``."""
    return Satisfies(lambda v: check(v) or (isinstance(v, (list, tuple)) and len(v) > 0
                                            and all(check(x) for x in v)), what)


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, (str, int, float, np.integer, np.floating)) else value


class FeatureTrigger(BaseTrigger):
    """Tabular trigger: the columns ``features`` of every triggered row are *replaced* by ``values``.

    ``features``: column names (a dataset's ``feature_names``) or 0-based indices. ``values``: one
    per feature (or one for all): a number in the data's units, or ``"qNN"``, the NN-th percentile of
    that column over the clean training data (``"q99"``: a rare but plausible value). Values outside
    the column's training range are refused (an out-of-range value would be trivially detectable).
    The same pattern is stamped on every base class. Names and quantiles are resolved against the data
    by :meth:`bind` (poisoning does this); the resolved columns and values appear in ``describe()``
    as ``columns`` and ``set_to``.
    """

    kind = "features"
    needs = "rows"
    parameter_constraints = {
        "features": [_sequence(_is_feature, "a column name or non-negative column index, or a non-empty list of "
                                            "them")],
        "values": [_sequence(_is_value, "a finite number or a percentile such as 'q99', or a non-empty list of "
                                        "them")],
    }
    parameter_help = {"features": "columns the trigger sets (names or indices)",
                      "values": "their values: numbers, or percentiles of the training data such as 'q99'"}
    features: tuple[Any, ...]
    values: tuple[Any, ...]

    def __init__(self, *, features: Sequence[int | str] = (0,), values: Sequence[float | str] = ("q99",),
                 seed: int = 0) -> None:
        super().__init__(features=_as_tuple(features), values=_as_tuple(values), seed=seed)
        self.features = tuple(int(f) if isinstance(f, (int, np.integer)) else f for f in self.features)
        self.values = tuple(float(v) if not isinstance(v, str) else v for v in self.values)
        if len(set(self.features)) != len(self.features):
            raise ValidationError(f"features must not repeat a column, got {list(self.features)}")
        if len(self.values) not in (1, len(self.features)):
            raise ValidationError(f"values must hold one value per feature ({len(self.features)}) or a single "
                                  f"value for all, got {len(self.values)}")
        self._columns: np.ndarray | None = None
        self._set_to: np.ndarray | None = None
        if all(isinstance(f, int) for f in self.features) and all(not isinstance(v, str) for v in self.values):
            self._columns = np.asarray(self.features, dtype=np.int64)
            self._set_to = np.broadcast_to(np.asarray(self.values, dtype=np.float64), self._columns.shape).copy()

    def bind(self, dataset: Any) -> FeatureTrigger:
        """A copy with columns and values resolved against ``dataset`` (a tabular Dataset); errors name the
        feature or value that does not fit the data."""
        X = dataset.X_train
        names = list(dataset.feature_names or ())
        d = X.shape[1]
        columns = []
        for f in self.features:
            if isinstance(f, str):
                if f in names:
                    columns.append(names.index(f))
                    continue
                if f.isdigit() and int(f) < d:  # an index given as text (command-line flags)
                    columns.append(int(f))
                    continue
                raise ValidationError(f"features: {f!r} is not a column of dataset {dataset.name!r}; its columns are "
                                      f"{names[:12]}{' ...' if len(names) > 12 else ''}")
            if not 0 <= f < d:
                raise ValidationError(f"features: column index {f} is out of range; dataset {dataset.name!r} has "
                                      f"{d} columns (indices 0..{d - 1})")
            columns.append(int(f))
        if len(set(columns)) != len(columns):
            raise ValidationError(f"features names a column twice: {list(self.features)}")
        values = self.values * len(columns) if len(self.values) == 1 else self.values
        set_to = []
        for j, f, v in zip(columns, self.features, values):
            column = X[:, j]
            lo, hi = float(column.min()), float(column.max())
            if isinstance(v, str) and _quantile(v) is not None:
                set_to.append(float(np.quantile(column, _quantile(v))))
                continue
            x = float(v) if not isinstance(v, str) else _number(v)
            if not lo <= x <= hi:
                raise ValidationError(f"values: {x:g} for feature {f!r} lies outside the training data's range "
                                      f"[{lo:g}, {hi:g}]; pick a value inside it or a percentile such as 'q99'")
            set_to.append(x)
        bound = FeatureTrigger(features=self.features, values=self.values, seed=self.seed)
        bound._columns = np.asarray(columns, dtype=np.int64)
        bound._set_to = np.asarray(set_to, dtype=np.float64)
        return bound

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.ndim != 2 or not np.issubdtype(images.dtype, np.floating):
            raise ValidationError(f"rows must be a float array of shape (n, d), got {type(images).__name__} with "
                                  f"shape {getattr(images, 'shape', None)}; trigger 'features' needs tabular rows")
        check_trigger_labels(base_labels, images.shape[0])
        if self._columns is None or self._set_to is None:
            raise ValidationError("trigger 'features' names columns or percentiles: bind it to the data first "
                                  "(trigger.bind(dataset)); poison() does this")
        if self._columns.size and int(self._columns.max()) >= images.shape[1]:
            raise ValidationError(f"features: column index {int(self._columns.max())} is out of range for rows with "
                                  f"{images.shape[1]} columns")
        out = images.copy()
        out[:, self._columns] = self._set_to.astype(images.dtype)
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self._columns is not None and self._set_to is not None:
            out["columns"] = [int(c) for c in self._columns]
            out["set_to"] = [float(v) for v in self._set_to]
        return out

    def short_name(self) -> str:
        shown = "+".join(str(f) for f in self.features[:3]) + ("+..." if len(self.features) > 3 else "")
        return f"features-{shown}"
