"""MNIST from its IDX files, in ``root`` itself or in torchvision's ``root/MNIST/raw`` layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_hpo.datasets._idx import read_idx
from robust_hpo.datasets._source import Pool, Source, array_pool
from robust_hpo.errors import DataFileError, MissingFileError

#: split -> (images file, labels file), each optionally gzip-compressed (``.gz``).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def mnist_dirs(root: Path) -> list[Path]:
    """Directories searched, in order."""
    return [root, root / "MNIST" / "raw"]


def mnist_source(root: Path, *, download: bool) -> Source:
    """MNIST's official split when both file pairs exist; one pair alone gives a one-pool split.

    With only the t10k pair (the 10k official test images) train and test are drawn disjointly
    from it and the dataset's ``split`` is ``"test-only"``.
    """
    pools = _find_pools(root)
    if download and (pools["train"] is None or pools["test"] is None):
        _download(root)
        pools = _find_pools(root)
    if pools["train"] is None and pools["test"] is None:
        expected = ", ".join(f"{f}[.gz]" for pair in MNIST_FILES.values() for f in pair)
        raise MissingFileError(
            f"MNIST files not found: searched {[str(d) for d in mnist_dirs(root)]} for {expected} "
            "(both t10k files at least). Get them with load_dataset('mnist', download=True) "
            "(needs internet; torchvision places them in root/MNIST/raw), or copy the IDX files into "
            "one of those folders; point elsewhere with root= or the ROBUST_HPO_DATA variable."
        )
    ids = tuple(range(10))
    names = tuple(str(c) for c in ids)
    if pools["train"] is not None and pools["test"] is not None:
        return Source("mnist", ids, names, pools["train"], pools["test"], "official")
    if pools["test"] is not None:
        return Source("mnist", ids, names, pools["test"], None, "test-only")
    return Source("mnist", ids, names, pools["train"], None, "train-only")


def _find(stem: str, root: Path) -> Path | None:
    for d in mnist_dirs(root):
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _find_pools(root: Path) -> dict[str, Pool | None]:
    pools: dict[str, Pool | None] = {}
    for split, (img_stem, lab_stem) in MNIST_FILES.items():
        img, lab = _find(img_stem, root), _find(lab_stem, root)
        if img is None and lab is None:
            pools[split] = None
            continue
        if img is None or lab is None:
            found, missing = (img, lab_stem) if lab is None else (lab, img_stem)
            raise MissingFileError(
                f"MNIST {split} split is incomplete: found {found} but not {missing}[.gz] in "
                f"{[str(d) for d in mnist_dirs(root)]}"
            )
        pools[split] = _read_pair(img, lab)
    return pools


def _read_pair(img_path: Path, lab_path: Path) -> Pool:
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFileError(f"{img_path}: expected uint8 images (n, rows, cols), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataFileError(f"{lab_path}: expected uint8 labels (n,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataFileError(
            f"{lab_path} has {labels.shape[0]} labels but {img_path} has {images.shape[0]} images; "
            "expected equal counts"
        )
    if labels.size and labels.max() > 9:
        raise DataFileError(f"{lab_path}: labels must be digits 0..9, found {int(labels.max())}")
    return array_pool(images[:, None, :, :], labels, scale=255.0, where=f"{img_path}")


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        MNIST(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:  # torchvision: RuntimeError / URLError when offline
        raise MissingFileError(
            f"could not download MNIST into {root / 'MNIST' / 'raw'}: {exc}. Without internet, copy "
            f"the IDX files {[f for pair in MNIST_FILES.values() for f in pair]} (optionally .gz) there."
        ) from exc
