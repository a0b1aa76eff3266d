"""Datasets as arrays: images (n, C, H, W) float32 in [0, 1] and integer labels.

The value object loaders return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robust_hpo.errors import ValidationError

#: How the train and test parts of a :class:`Dataset` were formed.
SPLITS: dict[str, str] = {
    "official": "the dataset's own train and test files",
    "stratified": "one pool of images split into disjoint train and test parts (seeded, stratified)",
    "test-only": "only the official *test* file was available: train and test are disjoint parts of it",
    "train-only": "only the official *train* file was available: train and test are disjoint parts of it",
}


@dataclass(frozen=True)
class Dataset:
    """A train/test split of images.

    Conventions: ``X_*`` are float32 arrays of shape (n, C, H, W) with values in [0, 1]
    (channels first, as torch expects; grayscale has C = 1). ``y_*`` are int64 class ids from
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
            _check_images(f"X_{part}", X)
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
            raise ValidationError(
                f"X_train images {self.X_train.shape[1:]} and X_test images {self.X_test.shape[1:]} "
                "must have the same (C, H, W)"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.X_train.shape[1:])  # type: ignore[return-value]


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def _check_images(name: str, X: object) -> None:
    if not isinstance(X, np.ndarray) or X.ndim != 4 or not np.issubdtype(X.dtype, np.floating):
        raise ValidationError(f"{name} must be a float array of shape (n, C, H, W), got {_describe(X)}")
    if X.shape[0] == 0:
        raise ValidationError(f"{name} must hold at least one image, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValidationError(f"{name} contains NaN or infinite values; expected pixels in [0, 1]")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ValidationError(f"{name} values must lie in [0, 1], got range [{lo}, {hi}]")
