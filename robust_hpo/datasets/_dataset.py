"""Datasets as arrays: images (n, C, H, W) float32 in [0, 1] and integer labels.

The value object loaders return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A train/test split of images.

    Conventions: ``X_*`` are float32 arrays of shape (n, C, H, W) with values in [0, 1]
    (channels first, as torch expects; grayscale has C = 1). ``y_*`` are int64 class ids from
    the *original* dataset (e.g. 7 and 1 for the MNIST pair 7-1). ``classes`` lists the ids kept,
    in order; ``class_names`` their human names.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.X_train.shape[1:])  # type: ignore[return-value]
