"""The attacker's target label for each base class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robust_hpo.errors import ValidationError

POLICIES: tuple[str, ...] = ("next",)


def target_labels(y: np.ndarray, classes: Sequence[int], policy: str = "next") -> np.ndarray:
    """Target class id of each label in ``y`` (int64, same length).

    ``"next"``: the class at position ``(i + 1) mod k`` of ``classes``, where ``i`` is the position
    of the label; with two classes that is the other class.
    """
    if policy not in POLICIES:
        raise ValidationError(f"policy must be one of {list(POLICIES)}, got {policy!r}")
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, np.ndarray)) or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes
    ):
        raise ValidationError(f"classes must be a sequence of integer class ids, got {classes!r}")
    order = [int(c) for c in classes]
    if len(order) < 2:
        raise ValidationError(f"classes must hold at least two class ids, got {tuple(classes)!r}")
    if len(set(order)) != len(order):
        raise ValidationError(f"classes must not repeat a class id, got {tuple(classes)!r}")
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValidationError(f"y must be a 1-D integer array of class ids, got shape {labels.shape} dtype {labels.dtype}")
    ids = np.asarray(order, dtype=np.int64)
    unknown = np.setdiff1d(labels, ids)
    if unknown.size:
        raise ValidationError(f"y holds labels {unknown.tolist()} not in classes {tuple(order)}")
    sorter = np.argsort(ids)
    position = sorter[np.searchsorted(ids, labels, sorter=sorter)]
    return ids[(position + 1) % ids.size]
