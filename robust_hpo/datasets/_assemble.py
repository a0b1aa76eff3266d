"""The common selection step every loader ends with: classes, seeded stratified subsamples, train/test parts.

:func:`assemble` returns the fields of a :class:`~robust_hpo.datasets.Dataset` (the caller builds it),
so that :meth:`Dataset.from_arrays` and the file loaders share it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo.datasets._select import resolve_classes, split_pool, stratified_choice
from robust_hpo.datasets._source import Source
from robust_hpo.errors import ValidationError


def assemble(
    source: Source,
    *,
    classes: Sequence[int | str] | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
) -> dict[str, Any]:
    """The Dataset fields of ``source`` after class selection and subsampling (see ``load_dataset``)."""
    ids, names = resolve_classes(classes, source.ids, source.names, source.name)
    rng = np.random.default_rng(seed)
    kept = np.asarray(ids, dtype=np.int64)
    if source.test is not None and source.train is not None:
        parts = []
        for pool, n, arg in ((source.train, n_train, "n_train"), (source.test, n_test, "n_test")):
            idx = _kept_indices(pool.labels, kept, pool.where)
            if n is not None:
                where = f"classes {ids} of {pool.where}"
                idx = idx[stratified_choice(pool.labels[idx], n, rng, name=arg, pool=where)]
            parts.append((pool, idx))
    else:
        pool = source.train if source.train is not None else source.test
        assert pool is not None
        idx = _kept_indices(pool.labels, kept, pool.where)
        train_idx, test_idx = split_pool(pool.labels[idx], n_train, n_test, rng,
                                         pool=f"classes {ids} of {pool.where}")
        parts = [(pool, idx[train_idx]), (pool, idx[test_idx])]
    (tr_pool, tr_idx), (te_pool, te_idx) = parts
    return dict(
        name=source.name,
        X_train=tr_pool.load(tr_idx), y_train=tr_pool.labels[tr_idx].astype(np.int64),
        X_test=te_pool.load(te_idx), y_test=te_pool.labels[te_idx].astype(np.int64),
        classes=ids, class_names=names, split=source.split, feature_names=source.feature_names,
    )


def _kept_indices(labels: np.ndarray, kept: np.ndarray, where: str) -> np.ndarray:
    missing = [int(c) for c in kept if not np.any(labels == c)]
    if missing:
        raise ValidationError(f"classes: {missing} have no images in {where}")
    return np.flatnonzero(np.isin(labels, kept))
