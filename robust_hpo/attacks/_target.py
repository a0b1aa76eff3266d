"""The attacker's target label for each base class: ``"next"`` (each class to the next one) or one class
(all-to-one: every triggered input to that class)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from robust_hpo.errors import ValidationError

POLICIES: tuple[str, ...] = ("next",)
"""The named target policies; besides them a target may be one class (its id or name): all-to-one."""

Target = Union[str, int]


def resolve_target(target: object, classes: Sequence[int], class_names: Sequence[str] = ()) -> str | int:
    """``"next"``, or the class id ``target`` names (an id in ``classes`` or a name in ``class_names``)."""
    if isinstance(target, str) and target in POLICIES:
        return target
    known = ", ".join(f"{i}={n!r}" for i, n in zip(classes, class_names)) or ", ".join(map(str, classes))
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if int(target) in [int(c) for c in classes]:
            return int(target)
        raise ValidationError(f"target {int(target)} is not a class id of the data; expected 'next' or one of: "
                              f"{known}")
    if isinstance(target, str):
        names = list(class_names)
        if target in names:
            return int(classes[names.index(target)])
        raise ValidationError(f"target {target!r} is neither 'next' nor a class name of the data; expected one "
                              f"of: {known}")
    raise ValidationError(f"target must be 'next' or a class (id or name), got {target!r}")


def target_labels(y: np.ndarray, classes: Sequence[int], policy: str | int = "next") -> np.ndarray:
    """Target class id of each label in ``y`` (int64, same length).

    ``"next"``: the class at position ``(i + 1) mod k`` of ``classes``, where ``i`` is the position
    of the label; with two classes that is the other class. A class id (all-to-one): that class
    for every label (the caller leaves the target class's own points out of the attack).
    """
    if not (policy in POLICIES or (isinstance(policy, (int, np.integer)) and not isinstance(policy, bool))):
        raise ValidationError(f"policy must be one of {list(POLICIES)} or a class id, got {policy!r}")
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
    if not isinstance(policy, str):
        if int(policy) not in order:
            raise ValidationError(f"policy {int(policy)} is not one of the classes {tuple(order)}")
        return np.full(labels.shape[0], int(policy), dtype=np.int64)
    sorter = np.argsort(ids)
    position = sorter[np.searchsorted(ids, labels, sorter=sorter)]
    return ids[(position + 1) % ids.size]
