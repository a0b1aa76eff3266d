"""Datasets as arrays: tabular rows (n, d) or images (n, C, H, W) float32 in [0, 1], and integer labels.

The value object loaders (and :meth:`Dataset.from_arrays`) return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from robust_hpo.datasets._arrays import dataset_fields
from robust_hpo.errors import ValidationError

#: How the train and test parts of a :class:`Dataset` were formed.
SPLITS: dict[str, str] = {
    "official": "the dataset's own train and test files",
    "stratified": "one pool of images split into disjoint train and test parts (seeded, stratified)",
    "given": "train and test parts as the user gave them",
    "test-only": "only the official *test* file was available: train and test are disjoint parts of it",
    "train-only": "only the official *train* file was available: train and test are disjoint parts of it",
}


#: The two layouts of a dataset's inputs; triggers say which they need (``BaseTrigger.needs``).
LAYOUTS: dict[str, str] = {"rows": "tabular rows (n, d)", "images": "images (n, C, H, W)"}


@dataclass(frozen=True)
class Dataset:
    """A train/test split of tabular rows or of images.

    Conventions: ``X_*`` are either float arrays of rows (n, d) with finite values in the data's own
    units (``layout == "rows"``; ``feature_names`` names the d columns), or float32 images
    (n, C, H, W) with values in [0, 1] (``layout == "images"``; channels first, as torch expects;
    grayscale has C = 1). ``y_*`` are int64 class ids from
    the *original* dataset (e.g. 7 and 1 for the MNIST pair 7-1). ``classes`` lists the ids kept,
    in order; ``class_names`` their human names. ``split`` says how train and test were formed
    (a key of :data:`SPLITS`; e.g. ``"test-only"`` when both parts come from MNIST's t10k file).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    split: str = "official"
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"name must be a non-empty string, got {self.name!r}")
        if self.split not in SPLITS:
            raise ValidationError(f"split must be one of {sorted(SPLITS)}, got {self.split!r}")
        classes = tuple(self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValidationError(f"classes must hold at least two distinct class ids, got {classes!r}")
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
            raise ValidationError(f"classes must be integer class ids, got {classes!r}")
        if len(self.class_names) != len(classes):
            raise ValidationError(
                f"class_names must name each of the {len(classes)} classes, got {self.class_names!r}"
            )
        for part in ("train", "test"):
            X, y = getattr(self, f"X_{part}"), getattr(self, f"y_{part}")
            _check_inputs(f"X_{part}", X)
            if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValidationError(f"y_{part} must be a 1-D integer array, got {_describe(y)}")
            if y.shape[0] != X.shape[0]:
                raise ValidationError(
                    f"y_{part} has {y.shape[0]} labels but X_{part} has {X.shape[0]} images; "
                    "expected equal lengths"
                )
            unknown = np.setdiff1d(y, np.asarray(classes))
            if unknown.size:
                raise ValidationError(f"y_{part} holds labels {unknown.tolist()} not in classes {classes}")
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            what = "(d,) columns" if self.X_train.ndim == 2 else "(C, H, W)"
            raise ValidationError(
                f"X_train points {self.X_train.shape[1:]} and X_test points {self.X_test.shape[1:]} "
                f"must have the same {what}"
            )
        if self.X_train.ndim == 2:
            names = self.feature_names
            if names is None:
                names = tuple(f"x{i}" for i in range(self.X_train.shape[1]))
            names = tuple(names)
            if len(names) != self.X_train.shape[1] or not all(isinstance(n, str) and n for n in names) \
                    or len(set(names)) != len(names):
                raise ValidationError(f"feature_names must be {self.X_train.shape[1]} distinct non-empty strings "
                                      f"(one per column), got {names!r}")
            object.__setattr__(self, "feature_names", names)
        elif self.feature_names is not None:
            raise ValidationError("feature_names applies to tabular rows (n, d) only, not to images")

    @property
    def layout(self) -> str:
        """``"rows"`` (tabular (n, d)) or ``"images"`` ((n, C, H, W)): a key of :data:`LAYOUTS`."""
        return "rows" if self.X_train.ndim == 2 else "images"

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The range every input value must keep (triggers included): [0, 1] for images, None for rows."""
        return (0.0, 1.0) if self.layout == "images" else None

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W) for images, (d,) for rows."""
        return tuple(self.X_train.shape[1:])

    def standardized(self) -> Dataset:
        """Rows with each column centred and scaled by the *training* part's mean and standard deviation
        (constant columns are only centred); the test part uses the same statistics. Rows only: images
        keep their [0, 1] pixels."""
        if self.layout != "rows":
            raise ValidationError(f"standardize applies to tabular rows (n, d); dataset {self.name!r} holds images, "
                                  "whose pixels stay in [0, 1]")
        mean = self.X_train.mean(axis=0)
        std = self.X_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return replace(self, X_train=(self.X_train - mean) / std, X_test=(self.X_test - mean) / std)

    @classmethod
    def from_arrays(cls, X_train: Any, y_train: Any, X_test: Any = None, y_test: Any = None, *, seed: int = 0,
                    n_test: int | None = None, n_train: int | None = None, feature_names: Any = None,
                    class_names: Any = None, classes: Any = None, name: str = "arrays") -> Dataset:
        """A dataset from your own arrays: rows (n, d) or images (n, C, H, W), NumPy or pandas.

        X_train, X_test: rows (n, d) of numbers (kept as float64) or images (n, C, H, W) with values
            in [0, 1] (float32); NumPy arrays, lists or pandas DataFrames (columns = feature names).
        y_train, y_test: labels, integers or strings, no missing values (string labels get ids
            0..k-1 in sorted order and are the class names).
        X_test, y_test: ``None`` = one pool split disjointly and stratified (``n_test`` default 25 %;
            split ``"stratified"``); given = kept as the test part (split ``"given"``).
        feature_names, class_names (a name per class id, ascending, or a mapping), classes (ids or
        names to keep), n_train, n_test, seed: as :func:`robust_hpo.datasets.load_dataset` takes them.
        Details: :mod:`robust_hpo.datasets._arrays`.
        """
        return cls(**dataset_fields(X_train, y_train, X_test, y_test, seed=seed, n_test=n_test, n_train=n_train,
                                    feature_names=feature_names, class_names=class_names, classes=classes,
                                    name=name))


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def _check_inputs(name: str, X: object) -> None:
    if not isinstance(X, np.ndarray) or X.ndim not in (2, 4) or not np.issubdtype(X.dtype, np.floating):
        raise ValidationError(f"{name} must be a float array of rows (n, d) or images (n, C, H, W), "
                              f"got {_describe(X)}")
    if X.shape[0] == 0 or X.size == 0:
        raise ValidationError(f"{name} must hold at least one point and one value each, got shape {X.shape}")
    if X.ndim == 2:
        if not np.all(np.isfinite(X)):
            rows, cols = np.nonzero(~np.isfinite(X))
            raise ValidationError(f"{name} contains NaN or infinite values (first at row {int(rows[0])}, "
                                  f"column {int(cols[0])}); expected finite numbers")
        return
    if not np.all(np.isfinite(X)):
        raise ValidationError(f"{name} contains NaN or infinite values; expected pixels in [0, 1]")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ValidationError(f"{name} values must lie in [0, 1], got range [{lo}, {hi}]")
