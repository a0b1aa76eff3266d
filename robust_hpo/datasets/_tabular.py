"""Tabular data from files (CSV, NPZ) and scikit-learn's bundled breast cancer table; all offline.

CSV: a header row, one label column (``label``: its name), every other column numeric; each row
as many cells as the header. NPZ (``numpy.savez``): arrays ``X`` and ``y`` (one pool), or ``X_train``,
``y_train``, ``X_test``, ``y_test`` (given split); no pickled objects. Files larger than
:data:`MAX_FILE_BYTES` are refused before being read. Every error names the file (and the column or
line).
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from robust_hpo.datasets._arrays import as_inputs, encode_labels, labels_array, row_pool
from robust_hpo.datasets._source import Source
from robust_hpo.errors import MissingFileError, ValidationError

MAX_FILE_BYTES = 1 << 30
"""Largest data file read (1 GiB): tabular studies hold their data in memory several times over."""

_NPZ_KEYS = ({"X", "y"}, {"X_train", "y_train", "X_test", "y_test"})


def breast_cancer_source() -> Source:
    """scikit-learn's Wisconsin breast cancer table: 569 rows, 30 features, classes 0=malignant, 1=benign."""
    bunch = load_breast_cancer()
    pool = row_pool(np.ascontiguousarray(bunch.data, dtype=np.float64), bunch.target,
                    where="sklearn.datasets.load_breast_cancer()")
    return Source(name="breast_cancer", ids=(0, 1), names=tuple(str(n) for n in bunch.target_names), train=pool,
                  test=None, split="stratified", feature_names=tuple(str(n) for n in bunch.feature_names))


def data_file(path: str | os.PathLike[str] | None, kind: str) -> Path:
    """``path`` checked: an existing regular file no larger than :data:`MAX_FILE_BYTES`."""
    if path is None:
        raise ValidationError(f"path is required for dataset {kind!r}: the {kind.upper()} file to read")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValidationError(f"path must be a file path (str or os.PathLike), got {path!r}")
    file = Path(path).expanduser()
    if not file.exists():
        raise MissingFileError(f"path: data file not found: {file}")
    if not file.is_file():
        raise ValidationError(f"path: {file} is not a regular file; expected a {kind.upper()} file")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"path: {file} is {size / 2**30:.1f} GiB, more than the {MAX_FILE_BYTES / 2**30:g} GiB "
                              "robust_hpo reads; subsample it first")
    return file


def csv_source(path: str | os.PathLike[str] | None, label: str | None) -> Source:
    """One pool from a CSV file with a header row; ``label`` names the label column."""
    file = data_file(path, "csv")
    if not isinstance(label, str) or not label:
        raise ValidationError(f"label is required for a CSV file ({file}): the name of its label column")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError:
        raise ValidationError(f"{file}: not UTF-8 text; expected a CSV file") from None
    except csv.Error as exc:
        raise ValidationError(f"{file}: not a readable CSV file ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ValidationError(f"{file}: empty; expected a header row and data rows")
    header = [cell.strip() for cell in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if r and any(cell.strip() for cell in r)]
    if label not in header:
        raise ValidationError(f"{file}: no label column {label!r}; its columns are {header}")
    if header.count(label) > 1 or len(set(header)) != len(header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise ValidationError(f"{file}: repeated column names {repeated}; expected distinct names")
    if not body:
        raise ValidationError(f"{file}: no data rows below the header")
    for line, row in body:
        if len(row) != len(header):
            raise ValidationError(f"{file}: line {line} has {len(row)} cells but the header has {len(header)}; "
                                  "expected every row as long as the header")
    li = header.index(label)
    features = [h for j, h in enumerate(header) if j != li]
    if not features:
        raise ValidationError(f"{file}: no feature column besides the label column {label!r}")
    X = np.empty((len(body), len(features)), dtype=np.float64)
    raw_labels = []
    for r, (line, row) in enumerate(body):
        cell = row[li].strip()
        if cell == "" or cell.lower() in ("nan", "na", "null", "none"):
            raise ValidationError(f"{file}: label column {label!r} has a missing value on line {line}")
        raw_labels.append(cell)
        c = 0
        for j, value in enumerate(row):
            if j == li:
                continue
            X[r, c] = _number(value, file, header[j], line)
            c += 1
    y = _parse_labels(raw_labels)
    return _one_pool_source(file, X, labels_array(f"{file}: label column {label!r}", y, X.shape[0], "X"),
                            tuple(features))


def npz_source(path: str | os.PathLike[str] | None) -> Source:
    """From a ``numpy.savez`` file: ``X``, ``y`` (one pool) or ``X_train``, ``y_train``, ``X_test``, ``y_test``."""
    file = data_file(path, "npz")
    with file.open("rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise ValidationError(f"{file}: not a readable .npz file (not a zip archive as numpy.savez writes)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = set(archive.files)
            if keys not in _NPZ_KEYS:
                raise ValidationError(f"{file}: holds arrays {sorted(keys)}; expected exactly {sorted(_NPZ_KEYS[0])} "
                                      f"or {sorted(_NPZ_KEYS[1])}")
            arrays = {k: archive[k] for k in keys}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValidationError(f"{file}: not a readable .npz file ({exc})") from None
    except ValueError as exc:  # pickled object arrays, corrupt headers
        raise ValidationError(f"{file}: cannot be read without pickle ({exc}); save plain numeric and string "
                              "arrays") from None
    try:
        if "X" in arrays:
            X, _ = as_inputs("X", arrays["X"])
            return _one_pool_source(file, X, labels_array("y", arrays["y"], X.shape[0], "X"), None)
        Xtr, _ = as_inputs("X_train", arrays["X_train"])
        Xte, _ = as_inputs("X_test", arrays["X_test"])
        if Xtr.shape[1:] != Xte.shape[1:]:
            raise ValidationError(f"X_test points have shape {Xte.shape[1:]} but X_train points {Xtr.shape[1:]}")
        parts = [labels_array("y_train", arrays["y_train"], Xtr.shape[0], "X_train"),
                 labels_array("y_test", arrays["y_test"], Xte.shape[0], "X_test")]
        ids, names, (ytr, yte) = encode_labels(parts, ["y_train", "y_test"])
        _check_classes(ytr, names, ids, f"{file}: y_train")
        return Source(name=file.stem, ids=tuple(ids), names=tuple(names),
                      train=row_pool(Xtr, ytr, where=f"{file}: X_train"),
                      test=row_pool(Xte, yte, where=f"{file}: X_test"), split="given")
    except ValidationError as exc:
        if str(exc).startswith(str(file)):
            raise
        raise ValidationError(f"{file}: {exc}") from None


def _one_pool_source(file: Path, X: np.ndarray, y: np.ndarray, features: tuple[str, ...] | None) -> Source:
    ids, names, (encoded,) = encode_labels([y], ["y"])
    _check_classes(encoded, names, ids, f"{file}: labels")
    return Source(name=file.stem, ids=tuple(ids), names=tuple(names), train=row_pool(X, encoded, where=str(file)),
                  test=None, split="stratified", feature_names=features)


def _check_classes(y: np.ndarray, names: list[str], ids: list[int], where: str) -> None:
    present = np.unique(y)
    if present.size < 2:
        raise ValidationError(f"{where} hold a single class ({names[ids.index(int(present[0]))]!r}); expected at "
                              "least two classes")


def _number(value: str, file: Path, column: str, line: int) -> float:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        if text == "" or text.lower() in ("na", "null", "none"):
            raise ValidationError(f"{file}: column {column!r} has a missing value on line {line}; fill or drop "
                                  "missing values first") from None
        raise ValidationError(f"{file}: column {column!r} is not numeric ({text[:40]!r} on line {line}); expected "
                              "numeric feature columns (encode categories as numbers first)") from None
    if not math.isfinite(number):
        raise ValidationError(f"{file}: column {column!r} has a missing or infinite value ({text!r}) on line "
                              f"{line}; expected finite numbers")
    return number


def _parse_labels(cells: list[str]) -> np.ndarray:
    """Integer labels when every cell is an integer, else the strings."""
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError:
        return np.array(cells, dtype=str)
