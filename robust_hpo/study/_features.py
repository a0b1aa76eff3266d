"""``[features]``: replace a study's images by pretrained features, after the triggers are applied.

Every array of each :class:`~robust_hpo.attacks.PoisonedSplit` (clean, poison, test, triggered)
goes through :func:`robust_hpo.datasets.pretrained.extract_features` (cached on disk by content) and comes
back as (n, d, 1, 1) float32, so the convex families, which flatten (n, ...) inputs, see the
(n, d) features. Arrays shared between attacks (the clean training and test sets of
:func:`robust_hpo.attacks.poison_many`) are extracted once. Features are not pixels: they are
unbounded (ReLU outputs), so only learners that accept any real inputs (the convex ones) fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from robust_hpo.attacks import PoisonedSplit
from robust_hpo.study._settings import FeatureSettings

_ARRAYS = ("X_clean", "X_poison", "X_test", "X_trigger")


def featurize_splits(splits: Mapping[str, PoisonedSplit], settings: FeatureSettings, *,
                     progress: bool = False) -> dict[str, PoisonedSplit]:
    """``splits`` with every image array replaced by its (n, d, 1, 1) features; the attack
    description gains ``"features": {"model", "weights"}``. Raises
    :class:`robust_hpo.datasets.pretrained.WeightsUnavailableError` when pretrained weights cannot be had."""
    from robust_hpo.datasets.pretrained import extract_features

    done: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(images) -> (images, features)

    def features(images: np.ndarray) -> np.ndarray:
        key = id(images)
        if key not in done:
            feats = extract_features(images, model=settings.model, weights=settings.extractor_weights,
                                     batch_size=settings.batch_size, cache_dir=settings.cache_dir,
                                     progress=progress)
            done[key] = (images, feats.reshape(feats.shape[0], feats.shape[1], 1, 1))
        return done[key][1]

    out: dict[str, PoisonedSplit] = {}
    for name, split in splits.items():
        replaced = {array: features(getattr(split, array)) for array in _ARRAYS}
        attack = {**split.attack, "features": settings.describe()}
        out[name] = dataclasses.replace(split, **replaced, attack=attack)
    return out
