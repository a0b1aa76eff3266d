"""MNIST: IDX parsing (hand-written files), folder layouts, the errors, the download path, real data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from robust_hpo.datasets import load_dataset, read_idx


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def _fake_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10, dtype=np.uint8), n // 10)
    images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
    return images, labels


def test_read_idx_round_trips_every_type(tmp_path: Path) -> None:
    cases = [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([-3, 5], dtype=np.int8), 0x09),
        (np.array([[-300, 7]], dtype=np.int16), 0x0B),
        (np.array([1 << 20, -5], dtype=np.int32), 0x0C),
        (np.array([0.5, -1.25], dtype=np.float32), 0x0D),
        (np.array([[1e-300]], dtype=np.float64), 0x0E),
    ]
    for k, (arr, code) in enumerate(cases):
        path = tmp_path / f"a{k}.idx.gz"
        path.write_bytes(gzip.compress(_idx_bytes(arr, code)))
        out = read_idx(path)
        assert out.dtype == arr.dtype and out.dtype.isnative
        np.testing.assert_array_equal(out, arr)


def test_read_idx_hand_computed_header(tmp_path: Path) -> None:
    # magic 0x00000801 (uint8, 1 dim), length 3, data 7 8 9
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), np.array([7, 8, 9], np.uint8))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (bytes([0, 0]), r"truncated: 2 bytes, shorter than the 4-byte IDX magic"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), r"not an IDX file: magic number 01000801"),
        (bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]), r"not an IDX file"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 1]), r"truncated: its header needs 16 bytes, the file has 8"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), r"truncated or corrupt: its header declares shape \(5,\) \(5 data bytes\) but the file holds 2"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    images, _ = _fake_mnist(10, 0)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.compress(_idx_bytes(images))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz is not a valid gzip file"):
        read_idx(path)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_official_split_from_both_layouts(tmp_path: Path, layout: str) -> None:
    train_img, train_lab = _fake_mnist(60, 1)
    test_img, test_lab = _fake_mnist(30, 2)
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    _write_split(folder, "train", train_img, train_lab, gz=layout == "flat")
    _write_split(folder, "t10k", test_img, test_lab, gz=False)
    d = load_dataset("mnist", root=tmp_path, classes=(7, 1))
    assert d.split == "official" and d.classes == (7, 1) and d.image_shape == (1, 28, 28)
    keep_tr, keep_te = np.isin(train_lab, [7, 1]), np.isin(test_lab, [7, 1])
    # official split, no subsampling: the files' images in file order, scaled by 1/255
    np.testing.assert_array_equal(d.X_train[:, 0], train_img[keep_tr].astype(np.float32) / 255)
    np.testing.assert_array_equal(d.y_train, train_lab[keep_tr].astype(np.int64))
    np.testing.assert_array_equal(d.X_test[:, 0], test_img[keep_te].astype(np.float32) / 255)
    sub = load_dataset("mnist", root=tmp_path, classes=(7, 1), n_train=4, n_test=2, seed=1)
    assert sub.X_train.shape[0] == 4 and np.sum(sub.y_train == 7) == 2 and sub.X_test.shape[0] == 2


def test_test_only_split_is_disjoint_and_says_so(tmp_path: Path) -> None:
    images, labels = _fake_mnist(100, 3)
    _write_split(tmp_path, "t10k", images, labels, gz=True)
    d = load_dataset("mnist", root=tmp_path, classes=(3, 0), n_train=12, n_test=6)
    assert d.split == "test-only"
    train = {img.tobytes() for img in d.X_train}
    assert not any(img.tobytes() in train for img in d.X_test)
    assert d.X_train.shape[0] == 12 and d.X_test.shape[0] == 6


def test_missing_files_error_names_folders_files_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and str(tmp_path / "MNIST" / "raw") in msg
    assert "t10k-images-idx3-ubyte[.gz]" in msg and "train-labels-idx1-ubyte[.gz]" in msg
    assert "download=True" in msg


def test_half_a_pair_is_an_error(tmp_path: Path) -> None:
    images, _ = _fake_mnist(10, 0)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    with pytest.raises(FileNotFoundError, match=r"test split is incomplete: found .*t10k-images-idx3-ubyte but not t10k-labels"):
        load_dataset("mnist", root=tmp_path)


def test_mismatched_counts_are_an_error(tmp_path: Path) -> None:
    images, labels = _fake_mnist(20, 0)
    _write_split(tmp_path, "t10k", images, labels[:10], gz=False)
    with pytest.raises(ValueError, match=r"has 10 labels but .* has 20 images"):
        load_dataset("mnist", root=tmp_path)


def test_download_uses_torchvision_into_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[tuple[str, bool]] = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            calls.append((root, download))
            raw = Path(root) / "MNIST" / "raw"
            _write_split(raw, "train", *_fake_mnist(40, 4), gz=False)
            _write_split(raw, "t10k", *_fake_mnist(20, 5), gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    d = load_dataset("mnist", root=tmp_path, download=True, classes=(2, 5))
    assert calls == [(str(tmp_path), True)] and d.split == "official"
    load_dataset("mnist", root=tmp_path, download=True, classes=(2, 5))
    assert len(calls) == 1  # files present: nothing downloaded again


def test_failed_download_says_how_to_get_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class OfflineMNIST:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    with pytest.raises(FileNotFoundError, match=r"could not download MNIST into .*MNIST.raw.*copy the IDX files"):
        load_dataset("mnist", root=tmp_path, download=True)


def test_real_mnist_pair_7_1(mnist_dir: Path) -> None:
    d = load_dataset("mnist", root=mnist_dir, classes=(7, 1), n_train=1500, n_test=500, seed=0)
    assert d.split == "test-only" and d.classes == (7, 1)
    assert d.X_train.shape == (1500, 1, 28, 28) and d.X_test.shape == (500, 1, 28, 28)
    assert d.X_train.dtype == np.float32 and 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    assert d.X_train.max() == 1.0  # MNIST strokes saturate at 255
    # stratified: 1028 sevens and 1135 ones in the t10k file
    assert abs(np.mean(d.y_train == 7) - 1028 / 2163) < 0.005
    train = {img.tobytes() for img in d.X_train}
    assert not any(img.tobytes() in train for img in d.X_test)
    pool = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert np.sum(np.isin(pool, [7, 1])) == 2163
