"""Datasets as arrays: ``load_dataset(name, classes=..., n_train=..., n_test=...) -> Dataset``."""

from __future__ import annotations

from robust_hpo.datasets._dataset import SPLITS, Dataset
from robust_hpo.datasets._idx import read_idx
from robust_hpo.datasets._load import DATA_ENV, available_datasets, default_root, load_dataset

__all__ = [
    "DATA_ENV",
    "Dataset",
    "SPLITS",
    "available_datasets",
    "default_root",
    "load_dataset",
    "read_idx",
]
