"""Choosing classes and seeded stratified subsamples, shared by every loader.

Stratified means each class keeps its share of the pool: class c gets ``n·n_c/N`` images,
rounded by largest remainder (ties to the earlier class) and at least one per class. Selected
indices are returned in ascending order (the file's order), so a sample never reorders data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral

import numpy as np

from robust_hpo._validation import Interval, check
from robust_hpo.errors import ValidationError

#: Fraction of a single pool used as the test part when ``n_test`` is not given.
DEFAULT_TEST_FRACTION = 0.25


def resolve_classes(
    classes: Sequence[int | str] | None,
    ids: Sequence[int],
    names: Sequence[str],
    dataset: str,
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Class ids and names kept, in the order asked (``None`` = all).

    An entry may be a class id (an ``int`` in ``ids``) or a class name (a ``str`` in ``names``).
    """
    known = ", ".join(f"{i}={n!r}" for i, n in zip(ids, names))
    if classes is None:
        return tuple(int(i) for i in ids), tuple(names)
    if isinstance(classes, (str, bytes, Mapping)) or not isinstance(classes, Iterable):
        raise ValidationError(
            f"classes must be a sequence of class ids or names such as (7, 1), got {classes!r}"
        )
    classes = list(classes)
    by_name = {n: int(i) for i, n in zip(ids, names)}
    name_of = {int(i): n for i, n in zip(ids, names)}
    chosen: list[int] = []
    for c in classes:
        if isinstance(c, str):
            if c not in by_name:
                raise ValidationError(f"classes: {c!r} is not a class name of {dataset!r}; known: {known}")
            chosen.append(by_name[c])
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if int(c) not in name_of:
                raise ValidationError(f"classes: {c!r} is not a class id of {dataset!r}; known: {known}")
            chosen.append(int(c))
        else:
            raise ValidationError(f"classes: {c!r} is neither a class id (int) nor a class name (str)")
    if len(chosen) < 2:
        raise ValidationError(f"classes must name at least two classes, got {tuple(classes)!r}")
    if len(set(chosen)) != len(chosen):
        raise ValidationError(f"classes must not repeat a class, got {tuple(classes)!r}")
    return tuple(chosen), tuple(name_of[c] for c in chosen)


def check_count(name: str, value: int | None) -> None:
    """``n_train``/``n_test`` must be ``None`` or a positive int."""
    check(name, value, [Interval(Integral, 1, None), None])


def stratified_choice(y: np.ndarray, n: int, rng: np.random.Generator, *, name: str, pool: str) -> np.ndarray:
    """Ascending indices of ``n`` points of ``y`` drawn without replacement, stratified by class."""
    labels, counts = np.unique(y, return_counts=True)
    if n > y.shape[0]:
        raise ValidationError(f"{name}={n} is more than the {y.shape[0]} images available in {pool}")
    if n < labels.size:
        raise ValidationError(
            f"{name}={n} is smaller than the number of classes ({labels.size}); "
            "a stratified sample needs at least one image per class"
        )
    quota = n * counts / counts.sum()
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    short = n - int(take.sum())
    if short > 0:
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        order = [k for k in order if take[k] < counts[k]]
        for k in order[:short]:
            take[k] += 1
    while take.sum() > n:  # the at-least-one rule overshot: trim the largest classes
        take[np.argmax(np.where(take > 1, take - quota, -np.inf))] -= 1
    picked = [rng.choice(np.flatnonzero(y == lab), size=int(t), replace=False) for lab, t in zip(labels, take)]
    return np.sort(np.concatenate(picked))


def split_pool(
    y: np.ndarray,
    n_train: int | None,
    n_test: int | None,
    rng: np.random.Generator,
    *,
    pool: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint stratified (train, test) indices from one pool of labels ``y``.

    ``n_test=None`` takes ``round(DEFAULT_TEST_FRACTION·N)`` images for test; ``n_train=None``
    takes all the rest for train.
    """
    total = y.shape[0]
    if n_test is None:
        n_test = max(int(round(DEFAULT_TEST_FRACTION * total)), np.unique(y).size)
    if n_train is not None and n_train + n_test > total:
        raise ValidationError(
            f"n_train={n_train} plus n_test={n_test} is more than the {total} images available in {pool} "
            "(train and test are drawn disjointly from it)"
        )
    test = stratified_choice(y, n_test, rng, name="n_test", pool=pool)
    rest = np.setdiff1d(np.arange(total), test)
    if n_train is None:
        return rest, test
    train = rest[stratified_choice(y[rest], n_train, rng, name="n_train", pool=f"{pool} after the test part")]
    return train, test
