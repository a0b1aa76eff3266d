"""Datasets as arrays: ``load_dataset(name, classes=..., n_train=..., n_test=...) -> Dataset``, or your own
arrays with ``Dataset.from_arrays(X_train, y_train, ...)``."""

from __future__ import annotations

from robust_hpo.datasets._dataset import LAYOUTS, SPLITS, Dataset
from robust_hpo.datasets._idx import read_idx
from robust_hpo.datasets._load import DATA_ENV, available_datasets, default_root, load_dataset
from robust_hpo.datasets._tabular import MAX_FILE_BYTES

__all__ = [
    "DATA_ENV",
    "Dataset",
    "LAYOUTS",
    "MAX_FILE_BYTES",
    "SPLITS",
    "available_datasets",
    "default_root",
    "load_dataset",
    "read_idx",
]
