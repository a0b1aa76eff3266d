"""Your own arrays as a :class:`~robust_hpo.datasets.Dataset`: rows (n, d) or images (n, C, H, W).

NumPy arrays, nested lists and pandas DataFrames/Series are accepted (pandas stays optional: it is
recognised by duck typing, never imported). A DataFrame's column names become the feature names.
Labels may be integers or strings: integer labels keep their values as class ids; string labels get
ids 0..k-1 in sorted order and are the class names. Subsampling and the train/test split are the
same seeded, stratified steps :func:`~robust_hpo.datasets.load_dataset` takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np

from robust_hpo._validation import Interval, check
from robust_hpo.datasets._assemble import assemble
from robust_hpo.datasets._source import Pool, Source
from robust_hpo.errors import ValidationError


def dataset_fields(X_train: Any, y_train: Any, X_test: Any = None, y_test: Any = None, *, seed: int = 0,
                   n_test: int | None = None, n_train: int | None = None, feature_names: Any = None,
                   class_names: Any = None, classes: Any = None, name: str = "arrays") -> dict[str, Any]:
    """The fields of a dataset from your own arrays (:meth:`Dataset.from_arrays` builds it).

    X_train, X_test: rows (n, d) of numbers (float64 is kept) or images (n, C, H, W) with values in
        [0, 1] (float32 is kept); NumPy arrays, lists or pandas DataFrames.
    y_train, y_test: labels (n,), integers or strings (NumPy, list or pandas Series); no missing values.
    X_test, y_test: ``None`` = one pool, split disjointly and stratified into train and test
        (``n_test`` defaults to 25 % of it, ``n_train`` to the rest; split ``"stratified"``);
        given = kept as the test part (split ``"given"``), subsampled to ``n_test`` if asked.
    feature_names: names of the d columns (default: a DataFrame's columns, else ``x0, x1, ...``).
    class_names: a name per class id (a sequence in ascending id order, or a mapping id -> name);
        string labels are their own names.
    classes: class ids or names to keep, in this order (``None`` = all); at least two.
    seed: drives the split and the subsampling.
    """
    check("seed", seed, [Interval(Integral, 0, None)])
    if not isinstance(name, str) or not name:
        raise ValidationError(f"name must be a non-empty string, got {name!r}")
    if (X_test is None) != (y_test is None):
        raise ValidationError("X_test and y_test must be given together (or both left out: then the test part "
                              "is split off the training arrays)")
    Xtr, columns = as_inputs("X_train", X_train)
    names = _feature_names(feature_names, columns, Xtr)
    ytr_raw = labels_array("y_train", y_train, Xtr.shape[0], "X_train")
    parts = [ytr_raw]
    if X_test is not None:
        Xte, _ = as_inputs("X_test", X_test)
        if Xte.shape[1:] != Xtr.shape[1:]:
            raise ValidationError(f"X_test points have shape {Xte.shape[1:]} but X_train points {Xtr.shape[1:]}; "
                                  "expected the same")
        parts.append(labels_array("y_test", y_test, Xte.shape[0], "X_test"))
    ids, label_names, encoded = encode_labels(parts, ["y_train", "y_test"])
    label_names = _class_names(class_names, ids, label_names)
    if np.unique(encoded[0]).size < 2:
        raise ValidationError(f"y_train holds a single class ({label_names[0]!r}); expected at least two classes")
    if X_test is not None:
        unknown = np.setdiff1d(encoded[1], encoded[0])
        if unknown.size:
            raise ValidationError(f"y_test holds classes {[label_names[ids.index(int(u))] for u in unknown]} "
                                  "that y_train does not; expected test classes seen in training")
    train = row_pool(Xtr, encoded[0], where="X_train")
    test = row_pool(Xte, encoded[1], where="X_test") if X_test is not None else None
    source = Source(name=name, ids=tuple(ids), names=tuple(label_names), train=train, test=test,
                    split="given" if test is not None else "stratified",
                    feature_names=names)
    return assemble(source, classes=classes, n_train=n_train, n_test=n_test, seed=int(seed))


def row_pool(X: np.ndarray, labels: np.ndarray, *, where: str) -> Pool:
    """A pool over in-memory inputs already in their final dtype (rows or [0, 1] images)."""
    return Pool(labels=np.asarray(labels, dtype=np.int64), load=lambda idx: X[idx], where=where)


def as_inputs(name: str, X: Any) -> tuple[np.ndarray, list[str] | None]:
    """``X`` as float64 rows (n, d) or float32 images (n, C, H, W) in [0, 1], and a DataFrame's column names."""
    columns = None
    if _is_dataframe(X):
        columns = [str(c) for c in X.columns]
        for c in X.columns:
            dtype = X[c].dtype
            if getattr(dtype, "kind", "O") not in "biuf":
                raise ValidationError(f"{name} column {str(c)!r} is not numeric (dtype {dtype}); expected numeric "
                                      "feature columns (encode categories as numbers first)")
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        arr = np.asarray(X)
    except ValueError:
        raise ValidationError(f"{name} must be a rectangular array (rows of equal length), got ragged rows") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValidationError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim not in (2, 4):
        raise ValidationError(f"{name} must be rows (n, d) or images (n, C, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValidationError(f"{name} must hold at least one point with at least one value, got shape {arr.shape}")
    arr = arr.astype(np.float64 if arr.ndim == 2 else np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0]
        col = f"column {columns[where[1]]!r}" if columns else f"index {tuple(int(i) for i in where[1:])}"
        raise ValidationError(f"{name} has a missing or infinite value at row {int(where[0])}, {col}; "
                              "expected finite numbers (fill or drop missing values first)")
    if arr.ndim == 4 and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValidationError(f"{name} images must have values in [0, 1], got range [{arr.min()}, {arr.max()}]; "
                              "scale pixels to [0, 1] (e.g. divide by 255)")
    return np.ascontiguousarray(arr), columns


def labels_array(name: str, y: Any, n: int, x_name: str) -> np.ndarray:
    """``y`` as a 1-D array of ``n`` labels (ints or strings); NaN and None refused."""
    if _is_dataframe(y):
        if y.shape[1] != 1:
            raise ValidationError(f"{name} must be one column of labels, got a table of {y.shape[1]} columns")
        y = y.iloc[:, 0]
    if hasattr(y, "to_numpy") and not isinstance(y, np.ndarray):
        y = y.to_numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValidationError(f"{name} has {arr.shape[0]} labels but {x_name} has {n} points; expected equal lengths")
    if arr.dtype == object:
        kinds = {type(v) for v in arr}
        missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and np.isnan(v))]
        if missing:
            raise ValidationError(f"{name} has a missing label at row {missing[0]}; expected a label for every point")
        if all(issubclass(k, str) for k in kinds):
            arr = arr.astype(str)
        elif all(issubclass(k, (int, np.integer)) and not issubclass(k, (bool, np.bool_)) for k in kinds):
            arr = arr.astype(np.int64)
        else:
            raise ValidationError(f"{name} must hold integer or string labels, got {sorted(k.__name__ for k in kinds)}")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        nan = np.flatnonzero(~np.isfinite(arr))
        if nan.size:
            raise ValidationError(f"{name} has a missing label (NaN) at row {int(nan[0])}; expected a label for "
                                  "every point")
        if not np.all(arr == np.round(arr)):
            raise ValidationError(f"{name} holds non-integer numbers (e.g. {arr[arr != np.round(arr)][0]}); "
                                  "expected class labels (integers or strings)")
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype.kind == "U"):
        raise ValidationError(f"{name} must hold integer or string labels, got dtype {arr.dtype}")
    if arr.dtype.kind == "U" and np.any(arr == ""):
        raise ValidationError(f"{name} has an empty label at row {int(np.flatnonzero(arr == '')[0])}")
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() < 0:
        arr = arr.astype(str)  # class ids are non-negative: labels such as -1/+1 become class names
    return arr


def encode_labels(parts: Sequence[np.ndarray], names: Sequence[str]
                  ) -> tuple[list[int], list[str], list[np.ndarray]]:
    """(class ids, class names, each part as int64 ids): integer labels keep their values; string
    labels get ids 0..k-1 in sorted order of the strings (their names)."""
    kinds = {"U" if p.dtype.kind == "U" else "i" for p in parts}
    if len(kinds) > 1:
        raise ValidationError(f"{' and '.join(names[:len(parts)])} must both hold integers or both strings")
    values = np.unique(np.concatenate(parts))
    if kinds == {"U"}:
        ids = list(range(values.size))
        lookup = {str(v): i for i, v in enumerate(values)}
        return ids, [str(v) for v in values], [np.array([lookup[str(v)] for v in p], dtype=np.int64) for p in parts]
    ids = [int(v) for v in values]
    return ids, [str(v) for v in ids], [p.astype(np.int64) for p in parts]


def _class_names(given: Any, ids: list[int], default: list[str]) -> list[str]:
    if given is None:
        return default
    if isinstance(given, Mapping):
        unknown = [k for k in given if k not in ids]
        if unknown:
            raise ValidationError(f"class_names names ids {unknown} that are not in the labels {ids}")
        out = [str(given.get(i, d)) for i, d in zip(ids, default)]
    elif isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or len(given) != len(ids):
        raise ValidationError(f"class_names must be a sequence of {len(ids)} names (one per class id {ids}, "
                              f"ascending) or a mapping id -> name, got {given!r}")
    else:
        out = [str(g) for g in given]
    if len(set(out)) != len(out) or not all(out):
        raise ValidationError(f"class_names must be distinct non-empty names, got {out}")
    return out


def _feature_names(given: Any, columns: list[str] | None, X: np.ndarray) -> tuple[str, ...] | None:
    if X.ndim != 2:
        if given is not None:
            raise ValidationError("feature_names applies to tabular rows (n, d) only, not to images")
        return None
    names = given if given is not None else columns
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) and not hasattr(names, "__iter__"):
        raise ValidationError(f"feature_names must be a sequence of {X.shape[1]} names, got {names!r}")
    return tuple(str(n) for n in names)


def _is_dataframe(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "to_numpy") and hasattr(X, "iloc")
