"""CIFAR-10 from pickle batches written in the real dict layout (bytes keys)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from robust_hpo.datasets import load_dataset

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(v) for v in np.arange(n) % 10]


def _write(folder: Path, *, train: bool = True, test: bool = True, n: int = 20) -> dict[str, tuple]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [s.encode() for s in NAMES], b"num_vis": 3072}, f)
    written = {}
    files = ([f"data_batch_{i}" for i in range(1, 6)] if train else []) + (["test_batch"] if test else [])
    for k, name in enumerate(files):
        data, labels = _batch(n, k)
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f)
        written[name] = (data, labels)
    return written


def test_official_split_and_channel_layout(tmp_path: Path) -> None:
    written = _write(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", root=tmp_path, classes=("airplane", "frog"))
    assert d.classes == (0, 6) and d.class_names == ("airplane", "frog") and d.split == "official"
    assert d.X_train.shape == (20, 3, 32, 32) and d.X_test.shape == (4, 3, 32, 32)
    data, labels = written["data_batch_1"]
    # the first airplane of batch 1: red plane = first 1024 bytes, row-major 32×32
    np.testing.assert_array_equal(d.X_train[0, 0], data[0, :1024].reshape(32, 32) / np.float32(255))
    np.testing.assert_array_equal(d.X_train[0, 2, 31], data[0, 3072 - 32:] / np.float32(255))
    np.testing.assert_array_equal(d.X_train[1, 1], data[6, 1024:2048].reshape(32, 32) / np.float32(255))
    assert d.y_train[:2].tolist() == [0, 6]
    # batches in order 1..5: the 3rd kept image is batch 1's 11th (label 0)
    np.testing.assert_array_equal(d.X_train[2, 0], data[10, :1024].reshape(32, 32) / np.float32(255))


def test_root_may_be_the_batches_folder_and_indices_work(tmp_path: Path) -> None:
    _write(tmp_path)
    d = load_dataset("cifar10", root=tmp_path, classes=(2, 5), n_train=6, n_test=2, seed=1)
    assert d.class_names == ("bird", "dog") and d.X_train.shape[0] == 6 and np.sum(d.y_train == 2) == 3


def test_test_batch_alone_is_a_test_only_pool(tmp_path: Path) -> None:
    _write(tmp_path, train=False, n=40)
    d = load_dataset("cifar10", root=tmp_path, classes=(0, 1))
    assert d.split == "test-only" and d.X_train.shape[0] + d.X_test.shape[0] == 8


def test_missing_files_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 files not found: searched .*cifar-10-batches-py.*data_batch_1.*test_batch.*download=True"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_training_batch_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"training batches \['data_batch_3'\] are missing"):
        load_dataset("cifar10", root=tmp_path)


def test_corrupt_pickle_and_bad_layout(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:10])
    with pytest.raises(ValueError, match=r"test_batch is not a readable CIFAR-10 pickle"):
        load_dataset("cifar10", root=tmp_path)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"test_batch: expected b'data' as a uint8 array \(n, 3072\)"):
        load_dataset("cifar10", root=tmp_path)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"test_batch: expected b'labels' as 2 integers"):
        load_dataset("cifar10", root=tmp_path)


def test_download_uses_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[str] = []

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            calls.append(root)
            _write(Path(root) / "cifar-10-batches-py")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    d = load_dataset("cifar10", root=tmp_path, download=True, classes=(0, 9))
    assert calls == [str(tmp_path)] and d.class_names == ("airplane", "truck")


def test_failed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs) -> None:
            raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(FileNotFoundError, match=r"could not download CIFAR-10 into .*cifar-10-batches-py.*extract cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path, download=True)
