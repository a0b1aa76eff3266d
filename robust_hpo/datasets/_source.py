"""What a loader hands to the common selection step: labelled pools of images, loaded on demand.

Loaders list labels first and decode only the images selected (image folders can be large).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pool:
    """One split on disk: original class ids and a loader of images by index.

    ``load(indices)`` returns float32 images (k, C, H, W) in [0, 1] (or float64 rows (k, d)) for
    those indices.
    ``where`` names the file(s) or folder, for error messages.
    """

    labels: np.ndarray
    load: Callable[[np.ndarray], np.ndarray]
    where: str


@dataclass(frozen=True)
class Source:
    """A dataset's classes and its pools.

    With both ``train`` and ``test`` the split is ``"official"``; with one pool only, ``split``
    says which (``"stratified"``, ``"test-only"``, ``"train-only"``) and train and test are drawn
    disjointly from it.
    """

    name: str
    ids: tuple[int, ...]
    names: tuple[str, ...]
    train: Pool | None
    test: Pool | None
    split: str
    feature_names: tuple[str, ...] | None = None


def array_pool(images: np.ndarray, labels: np.ndarray, *, scale: float, where: str) -> Pool:
    """A pool over in-memory images (n, C, H, W) whose values divided by ``scale`` lie in [0, 1]."""

    def load(indices: np.ndarray) -> np.ndarray:
        return images[indices].astype(np.float32) / np.float32(scale)

    return Pool(labels=np.asarray(labels, dtype=np.int64), load=load, where=where)
