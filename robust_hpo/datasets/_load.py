"""``load_dataset``: one entry point for every dataset, with common class selection and subsampling."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path


from robust_hpo.datasets._dataset import Dataset
from robust_hpo.datasets._cifar import cifar10_source
from robust_hpo.datasets._digits import digits_source
from robust_hpo.datasets._folders import imagefolder_source, imagenette_source
from robust_hpo.datasets._mnist import mnist_source
from robust_hpo.datasets._assemble import assemble
from robust_hpo.datasets._select import check_count
from robust_hpo.datasets._source import Source
from robust_hpo.datasets._tabular import breast_cancer_source, csv_source, npz_source
from robust_hpo._validation import InstanceOf, Interval, check
from robust_hpo.errors import ValidationError, requires_torch

#: Environment variable naming the default data directory.
DATA_ENV = "ROBUST_HPO_DATA"

_LOADERS: dict[str, Callable[..., Source]] = {
    "breast_cancer": lambda root, download, image_size: breast_cancer_source(),
    "digits": lambda root, download, image_size: digits_source(),
    "mnist": lambda root, download, image_size: mnist_source(root, download=download),
    "cifar10": lambda root, download, image_size: cifar10_source(root, download=download),
    "imagenette": lambda root, download, image_size: imagenette_source(
        root, download=download, image_size=image_size),
    "imagefolder": lambda root, download, image_size: _imagefolder(root, download, image_size),
}
_RESIZABLE: frozenset[str] = frozenset({"imagenette", "imagefolder"})
_FILES: dict[str, Callable[..., Source]] = {
    "csv": lambda path, label: csv_source(path, label),
    "npz": lambda path, label: npz_source(path),
}
"""Datasets read from one file of yours (``path``; ``label`` names a CSV file's label column)."""


def _imagefolder(root: Path, download: bool, image_size: int | None) -> Source:
    if download:
        raise ValidationError("download=True is not available for 'imagefolder': it reads your own folder")
    return imagefolder_source(root, image_size=image_size)


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted([*_LOADERS, *_FILES])


def default_root() -> Path:
    """``$ROBUST_HPO_DATA`` if set, else ``~/.cache/robust_hpo``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robust_hpo"


def load_dataset(
    name: str,
    *,
    classes: Sequence[int | str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = None,
    path: str | os.PathLike[str] | None = None,
    label: str | None = None,
    standardize: bool = False,
) -> Dataset:
    """Load a dataset as float32 images (n, C, H, W) in [0, 1] or float64 rows (n, d), with class ids.

    name: ``"breast_cancer"`` (scikit-learn's 569×30 table, offline), ``"csv"`` and ``"npz"`` (your
        own file at ``path``, see :mod:`robust_hpo.datasets._tabular`; a CSV file needs ``label``, the
        name of its label column), ``"digits"`` (scikit-learn's 8×8, offline), ``"mnist"`` (IDX files), ``"cifar10"``
        (python pickle batches), ``"imagenette"`` (fastai's class folders), ``"imagefolder"``
        (``root/train/<class>/*``, ``root/val/<class>/*`` or ``root/test/<class>/*``).

    classes: class ids or names to keep, in this order (``None`` = all); at least two.
    n_train, n_test: seeded stratified subsample sizes (``None`` = all available). Datasets with
        one pool only (``digits``; MNIST when only the t10k files exist) are split disjointly:
        ``n_test`` defaults to 25 % of the pool, ``n_train`` to the rest.
    seed: drives every random choice (non-negative int).
    root: data directory (default :func:`default_root`); ``download=True`` fetches missing files
        with torchvision. ``digits`` is bundled with scikit-learn and ignores both;
        ``imagefolder`` needs ``root``.
    standardize: tabular rows only: centre and scale each column by the training part's mean and
        standard deviation (:meth:`Dataset.standardized`); trigger values are then in these units.
    image_size: side of the square images for the folder datasets (``imagenette``,
        ``imagefolder``; default 224): shorter side resized to it, then center-cropped.
    """
    if not isinstance(name, str) or name not in available_datasets():
        raise ValidationError(f"unknown dataset name {name!r}; expected one of {available_datasets()}")
    check_count("n_train", n_train)
    check_count("n_test", n_test)
    check("seed", seed, [Interval(Integral, 0, None)])
    if not isinstance(standardize, bool):
        raise ValidationError(f"standardize must be true or false, got {standardize!r}")
    if standardize:
        dataset = load_dataset(name, classes=classes, n_train=n_train, n_test=n_test, seed=seed, root=root,
                               download=download, image_size=image_size, path=path, label=label)
        return dataset.standardized()
    if name in _FILES:
        if root is not None or download or image_size is not None:
            raise ValidationError(f"dataset {name!r} reads the file at path; root, download and image_size do "
                                  "not apply")
        if label is not None and name != "csv":
            raise ValidationError(f"label applies to dataset 'csv' only (an .npz file holds y arrays), not {name!r}")
        source = _FILES[name](path, label)
        try:
            return Dataset(**assemble(source, classes=classes, n_train=n_train, n_test=n_test, seed=int(seed)))
        except ValidationError as exc:  # too few rows for the split, classes not in the file: name the file
            raise ValidationError(f"{Path(path).expanduser()}: {exc}") from None
    if path is not None or label is not None:
        raise ValidationError(f"path and label apply to datasets {sorted(_FILES)} only, not to {name!r}")
    if image_size is not None:
        if name not in _RESIZABLE:
            raise ValidationError(f"image_size applies to {sorted(_RESIZABLE)} only, not to {name!r}")
        check("image_size", image_size, [Interval(Integral, 1, None)])
    if root is None and name == "imagefolder":
        raise ValidationError("root is required for 'imagefolder': the folder holding train/ and val/ (or test/)")
    check("root", root, [InstanceOf((str, os.PathLike), "a folder path (str or os.PathLike)"), None])
    root_path = Path(root).expanduser() if root is not None else default_root()
    with requires_torch(f"dataset {name!r}" + (" with download=True" if download else "")):
        source = _LOADERS[name](root_path, bool(download), image_size)
        return Dataset(**assemble(source, classes=classes, n_train=n_train, n_test=n_test, seed=int(seed)))
