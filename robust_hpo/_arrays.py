"""Small shared helpers for array-valued inputs: validation with errors that name the argument."""

from __future__ import annotations

import numpy as np


def as_finite_2d(name: str, X: object) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float64 array, or raise ``ValueError`` naming ``name``."""
    arr = np.asarray(X)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; expected finite numbers")
    return arr


def as_labels(name: str, y: object, n: int, n_name: str) -> np.ndarray:
    """Return ``y`` as a 1-D label array of length ``n`` or raise ``ValueError`` naming ``name``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but {n_name} has {n} rows; expected equal lengths")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; expected class labels")
    return arr


def flatten_images(images: np.ndarray) -> np.ndarray:
    """(n, ...) images -> (n, prod(...)) float64 rows, the layout the convex learners see."""
    return np.ascontiguousarray(images.reshape(images.shape[0], -1), dtype=np.float64)
