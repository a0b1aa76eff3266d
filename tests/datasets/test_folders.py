"""imagefolder and imagenette from JPEG/PNG class folders written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robust_hpo.datasets import load_dataset
from robust_hpo.datasets._folders import IMAGENETTE_CLASSES, decode_image


def _write_image(path: Path, rgb: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format=fmt)


def _folder(root: Path, classes: list[str], n: dict[str, int], *, fmt: str = "PNG", ext: str = ".png",
            size: tuple[int, int] = (12, 16)) -> None:
    rng = np.random.default_rng(0)
    for part, count in n.items():
        for c in classes:
            for i in range(count):
                rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                _write_image(root / part / c / f"{i}{ext}", rgb, fmt)


def test_decode_resizes_shorter_side_then_center_crops(tmp_path: Path) -> None:
    # a 4×8 image whose columns 0-1 and 6-7 are red, 2-5 green: resize to 4 keeps 4×8, crop keeps 2..5
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, :2, 0] = rgb[:, 6:, 0] = 255
    rgb[:, 2:6, 1] = 255
    _write_image(tmp_path / "a.png", rgb)
    out = decode_image(tmp_path / "a.png", 4)
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], 1.0)
    np.testing.assert_array_equal(out[0], 0.0)
    # grayscale is converted to RGB; an upscale by 2 keeps a constant image constant
    Image.fromarray(np.full((3, 5), 51, np.uint8), mode="L").save(tmp_path / "g.png")
    g = decode_image(tmp_path / "g.png", 6)
    assert g.shape == (3, 6, 6)
    np.testing.assert_allclose(g, 0.2, atol=1e-6)


def test_imagefolder_with_val(tmp_path: Path) -> None:
    _folder(tmp_path, ["cat", "ant", "bee"], {"train": 4, "val": 2})
    d = load_dataset("imagefolder", root=tmp_path, classes=("cat", 0), image_size=8)
    assert d.classes == (2, 0) and d.class_names == ("cat", "ant") and d.split == "official"
    assert d.X_train.shape == (8, 3, 8, 8) and d.X_test.shape == (4, 3, 8, 8)
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    # file order within the selection: ant/0..3 then cat/0..3
    np.testing.assert_array_equal(d.y_train, [0, 0, 0, 0, 2, 2, 2, 2])
    np.testing.assert_array_equal(d.X_train[4], decode_image(tmp_path / "train" / "cat" / "0.png", 8))


def test_imagefolder_with_test_folder_and_train_only(tmp_path: Path) -> None:
    _folder(tmp_path / "a", ["x", "y"], {"train": 3, "test": 1})
    assert load_dataset("imagefolder", root=tmp_path / "a", image_size=4).X_test.shape == (2, 3, 4, 4)
    _folder(tmp_path / "b", ["x", "y"], {"train": 8})
    d = load_dataset("imagefolder", root=tmp_path / "b", image_size=4, n_test=4)
    assert d.split == "train-only" and d.X_train.shape[0] == 12 and d.X_test.shape[0] == 4


def test_imagefolder_default_size_is_224(tmp_path: Path) -> None:
    _folder(tmp_path, ["x", "y"], {"train": 1, "val": 1}, size=(20, 30))
    assert load_dataset("imagefolder", root=tmp_path, n_train=2).image_shape == (3, 224, 224)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"root is required for 'imagefolder'"):
        load_dataset("imagefolder")
    with pytest.raises(FileNotFoundError, match=r"imagefolder: no folder .*train; expected the layout root/train/<class>/<image>"):
        load_dataset("imagefolder", root=tmp_path)
    _folder(tmp_path, ["x", "y"], {"train": 1})
    _folder(tmp_path, ["x", "z"], {"val": 1})
    with pytest.raises(ValueError, match=r"class folders differ .* only in train \['y'\], only in val \['z'\]"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(ValueError, match=r"download=True is not available for 'imagefolder'"):
        load_dataset("imagefolder", root=tmp_path, download=True)
    with pytest.raises(ValueError, match=r"image_size must be a positive integer, got 0"):
        load_dataset("imagefolder", root=tmp_path, image_size=0)


def test_corrupt_image_is_an_error(tmp_path: Path) -> None:
    _folder(tmp_path, ["x", "y"], {"train": 1, "val": 1})
    (tmp_path / "train" / "x" / "0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"0.png is not a readable image"):
        load_dataset("imagefolder", root=tmp_path, image_size=4)


def test_imagenette_names_and_jpeg_layout(tmp_path: Path) -> None:
    base = tmp_path / "imagenette2-320"
    wnids = ["n01440764", "n03417042", "n03888257"]  # tench, garbage truck, parachute
    _folder(base, wnids, {"train": 3, "val": 1}, fmt="JPEG", ext=".JPEG", size=(24, 32))
    d = load_dataset("imagenette", root=tmp_path, classes=("tench", "garbage truck"), image_size=16)
    assert d.class_names == ("tench", "garbage truck") and d.classes == (0, 1)
    assert d.X_train.shape == (6, 3, 16, 16) and d.X_test.shape == (2, 3, 16, 16)
    d2 = load_dataset("imagenette", root=tmp_path, classes=(2, 0), image_size=16)
    assert d2.class_names == ("parachute", "tench")
    assert IMAGENETTE_CLASSES["n03888257"] == "parachute" and len(IMAGENETTE_CLASSES) == 10


def test_imagenette_rejects_foreign_folders_and_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"Imagenette not found: searched .*imagenette2-320.*train/<wnid>/\*.JPEG.*download=True"):
        load_dataset("imagenette", root=tmp_path)
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("Error downloading")

    monkeypatch.setattr(torchvision.datasets, "Imagenette", Offline)
    with pytest.raises(FileNotFoundError, match=r"could not download Imagenette into .*imagenette2-320"):
        load_dataset("imagenette", root=tmp_path, download=True)
    _folder(tmp_path, ["n01440764", "cats"], {"train": 1, "val": 1})
    with pytest.raises(ValueError, match=r"class folders \['cats'\] .* are not Imagenette WordNet ids"):
        load_dataset("imagenette", root=tmp_path)


def test_imagenette_download_uses_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[tuple[str, str, str]] = []

    class FakeImagenette:
        def __init__(self, root: str, split: str = "train", size: str = "full", download: bool = False) -> None:
            calls.append((root, split, size))
            _folder(Path(root) / "imagenette2-320", ["n01440764", "n03888257"], {split: 2}, fmt="JPEG", ext=".JPEG")

    monkeypatch.setattr(torchvision.datasets, "Imagenette", FakeImagenette)
    d = load_dataset("imagenette", root=tmp_path, download=True, image_size=8)
    assert calls == [(str(tmp_path), "train", "320px"), (str(tmp_path), "val", "320px")]
    assert d.class_names == ("tench", "parachute") and d.X_test.shape == (4, 3, 8, 8)
