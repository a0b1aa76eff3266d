"""CIFAR-10 from its python pickle batches (``cifar-10-batches-py``), as torchvision downloads them.

Each batch is a pickled dict with bytes keys: ``b"data"`` a (10000, 3072) uint8 array (1024 red,
then 1024 green, then 1024 blue values, each a 32×32 image in row-major order) and ``b"labels"``
a list of ints 0..9; ``batches.meta`` holds ``b"label_names"``.

A pickle can run code on load, so the batches are read by a restricted unpickler
(:mod:`robust_hpo.datasets._restricted_pickle`) that admits only what the format holds: dicts,
lists, str/bytes, numbers and NumPy arrays. A file naming anything else (``os.system``, …) is
refused with a :class:`~robust_hpo.errors.DataFileError` naming the file, and nothing in it runs.
Files larger than :data:`MAX_BATCH_BYTES` are refused unread.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from robust_hpo.datasets._restricted_pickle import RefusedGlobal, restricted_load
from robust_hpo.datasets._source import Pool, Source, array_pool
from robust_hpo.errors import DataFileError, MissingFileError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
#: Largest batch file read: 128 MiB, four times an official batch (31 MB).
MAX_BATCH_BYTES = 128 * 1024 * 1024
#: Rows of an official batch: a batch may hold at most this many images.
BATCH_ROWS = 10_000
#: Values per image: 3 channels of 32×32.
IMAGE_VALUES = 3072


def cifar10_dirs(root: Path) -> list[Path]:
    """Directories searched, in order."""
    return [root / FOLDER, root]


def cifar10_source(root: Path, *, download: bool) -> Source:
    """The official 50k/10k split (one part alone gives a one-pool split, as for MNIST)."""
    folder = _find(root)
    if folder is None and download:
        _download(root)
        folder = _find(root)
    if folder is None:
        raise MissingFileError(
            f"CIFAR-10 files not found: searched {[str(d) for d in cifar10_dirs(root)]} for {META}, "
            f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH} (the python version, cifar-10-python.tar.gz, "
            f"extracted). Get them with load_dataset('cifar10', download=True) (needs internet), or "
            "extract the archive there; point elsewhere with root= or ROBUST_HPO_DATA."
        )
    meta = _unpickle(folder / META)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataFileError(f"{folder / META}: expected b'label_names' with 10 class names, got {names!r:.200}")
    names_str = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    present = [b for b in TRAIN_BATCHES if (folder / b).is_file()]
    if present and len(present) != len(TRAIN_BATCHES):
        missing = sorted(set(TRAIN_BATCHES) - set(present))
        raise MissingFileError(f"CIFAR-10 training batches {missing} are missing from {folder}")
    train = _read_batches([folder / b for b in present]) if present else None
    test = _read_batches([folder / TEST_BATCH]) if (folder / TEST_BATCH).is_file() else None
    if train is None and test is None:
        raise MissingFileError(f"{folder} has {META} but neither {TRAIN_BATCHES[0]}.. nor {TEST_BATCH}")
    ids = tuple(range(10))
    if train is not None and test is not None:
        return Source("cifar10", ids, names_str, train, test, "official")
    if train is not None:
        return Source("cifar10", ids, names_str, train, None, "train-only")
    return Source("cifar10", ids, names_str, test, None, "test-only")


def _find(root: Path) -> Path | None:
    for d in cifar10_dirs(root):
        if (d / META).is_file():
            return d
    return None


def _unpickle(path: Path) -> dict[Any, Any]:
    size = path.stat().st_size
    if size > MAX_BATCH_BYTES:
        raise DataFileError(
            f"{path} is {size} bytes, more than the {MAX_BATCH_BYTES} bytes a CIFAR-10 batch file may have "
            "(an official batch is 31 MB); refused unread"
        )
    try:
        with path.open("rb") as f:
            obj = restricted_load(f, encoding="bytes")
    except RefusedGlobal as exc:
        raise DataFileError(
            f"{path} was refused: its pickle references {exc.name}, which a CIFAR-10 batch does not hold "
            "(only dicts, lists, strings, bytes, numbers and NumPy arrays are read); nothing in it was run. "
            "The file may be malicious: replace it with the official cifar-10-python.tar.gz"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} is not a readable CIFAR-10 pickle (truncated or corrupt): {exc}") from exc
    if not isinstance(obj, dict):
        raise DataFileError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _read_batches(paths: list[Path]) -> Pool:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        data, labs = batch.get(b"data"), batch.get(b"labels")
        data = _image_rows(data, path)
        labs_arr = _integer_labels(labs)
        if labs_arr is None or labs_arr.shape != (data.shape[0],):
            shape = None if labs_arr is None else labs_arr.shape
            raise DataFileError(f"{path}: expected b'labels' as {data.shape[0]} integers, got {shape}")
        if labs_arr.size and (labs_arr.min() < 0 or labs_arr.max() > 9):
            raise DataFileError(f"{path}: labels must lie in 0..9, found {labs_arr.min()}..{labs_arr.max()}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(labs_arr)
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/{{{','.join(p.name for p in paths)}}}"
    return array_pool(np.concatenate(images), np.concatenate(labels), scale=255.0, where=where)


def _image_rows(data: object, path: Path) -> np.ndarray:
    """``data`` as a C-ordered uint8 (n, 3072) array of at most :data:`BATCH_ROWS` rows backed by
    its own ``n × 3072`` bytes; anything else (another shape or dtype, strides that reuse bytes)
    is a :class:`DataFileError` naming ``path``."""
    shape = getattr(data, "shape", None)
    if (not isinstance(data, np.ndarray) or type(data) is not np.ndarray or data.dtype != np.uint8
            or data.ndim != 2 or data.shape[1] != IMAGE_VALUES or not data.shape[0] <= BATCH_ROWS):
        raise DataFileError(
            f"{path}: expected b'data' as a uint8 array (n, {IMAGE_VALUES}) with n <= {BATCH_ROWS} rows, "
            f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    if data.strides != (IMAGE_VALUES, 1) or not data.flags.c_contiguous:
        raise DataFileError(f"{path}: b'data' has strides {data.strides}, not the ({IMAGE_VALUES}, 1) of "
                            "rows stored one after another; refused")
    return data


def _integer_labels(labs: object) -> np.ndarray | None:
    """``labs`` (a list or array) as a 1-D integer array, or ``None`` when it is anything else."""
    if not isinstance(labs, (list, np.ndarray)):
        return None
    try:
        arr = np.asarray(labs)
    except (ValueError, TypeError, OverflowError):
        return None
    return arr if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer) else None


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:
        raise MissingFileError(
            f"could not download CIFAR-10 into {root / FOLDER}: {exc}. Without internet, extract "
            f"cifar-10-python.tar.gz into {root}."
        ) from exc
