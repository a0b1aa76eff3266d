"""Class-folder image datasets: ``imagefolder`` (any) and ``imagenette`` (fastai's ImageNet subset).

Layout: ``root/train/<class>/<image>`` and ``root/val/<class>/<image>`` (or ``test/`` when there is
no ``val/``). Class ids are the positions of the sorted class folder names (as torchvision's
``ImageFolder``); files with image extensions are read (torchvision's ``IMG_EXTENSIONS``). Images
are decoded with PIL, converted to RGB, resized so the shorter side is ``image_size`` and
center-cropped to ``image_size``×``image_size`` -- only the images selected are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_hpo.datasets._source import Pool, Source
from robust_hpo.errors import DataFileError, MissingFileError, ValidationError

DEFAULT_IMAGE_SIZE = 224

#: Imagenette's WordNet ids and the names used for them (the first of torchvision's names).
IMAGENETTE_CLASSES: dict[str, str] = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
IMAGENETTE_FOLDERS: tuple[str, ...] = ("imagenette2-320", "imagenette2", "imagenette2-160")
_LAYOUT = "root/train/<class>/<image> and root/val/<class>/<image> (or root/test/<class>/<image>)"


def imagefolder_source(root: Path, *, image_size: int | None, name: str = "imagefolder") -> Source:
    """Classes from the folder names under ``root/train``; one pool if there is no val/test folder."""
    if not (root / "train").is_dir():
        raise MissingFileError(
            f"{name}: no folder {root / 'train'}; expected the layout {_LAYOUT}. Point root= at the "
            "folder holding train/."
        )
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    size = image_size or DEFAULT_IMAGE_SIZE
    classes, class_to_idx = _classes(root / "train", name)
    test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    pools = []
    for part in (root / "train", test_dir):
        if part is None:
            continue
        found, _ = _classes(part, name)
        if sorted(found) != sorted(classes):
            raise ValidationError(
                f"{name}: class folders differ between {root / 'train'} and {part}: "
                f"only in train {sorted(set(classes) - set(found))}, only in {part.name} {sorted(set(found) - set(classes))}"
            )
        try:
            samples = make_dataset(str(part), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as exc:
            raise MissingFileError(f"{name}: {exc} (layout expected: {_LAYOUT})") from exc
        pools.append(_file_pool(samples, size, where=str(part)))
    names = tuple(classes)
    ids = tuple(range(len(classes)))
    if len(pools) == 2:
        return Source(name, ids, names, pools[0], pools[1], "official")
    return Source(name, ids, names, pools[0], None, "train-only")


def imagenette_source(root: Path, *, download: bool, image_size: int | None) -> Source:
    """Imagenette from ``root/imagenette2-320`` (or ``imagenette2``, ``imagenette2-160``, or ``root``)."""
    folder = _find_imagenette(root)
    if folder is None and download:
        _download_imagenette(root)
        folder = _find_imagenette(root)
    if folder is None:
        searched = [str(root / f) for f in IMAGENETTE_FOLDERS] + [str(root)]
        raise MissingFileError(
            f"Imagenette not found: searched {searched} for train/<wnid>/*.JPEG and val/<wnid>/*.JPEG. "
            "Get it with load_dataset('imagenette', download=True) (needs internet, ~330 MB), or "
            f"extract imagenette2-320.tgz into {root}; point elsewhere with root= or ROBUST_HPO_DATA."
        )
    source = imagefolder_source(folder, image_size=image_size, name="imagenette")
    unknown = [w for w in source.names if w not in IMAGENETTE_CLASSES]
    if unknown:
        raise ValidationError(
            f"imagenette: class folders {unknown} in {folder / 'train'} are not Imagenette WordNet ids "
            f"{sorted(IMAGENETTE_CLASSES)}"
        )
    names = tuple(IMAGENETTE_CLASSES[w] for w in source.names)
    return Source("imagenette", source.ids, names, source.train, source.test, source.split)


def _classes(folder: Path, name: str) -> tuple[list[str], dict[str, int]]:
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(folder))
    except FileNotFoundError as exc:
        raise MissingFileError(f"{name}: {exc} (layout expected: {_LAYOUT})") from exc


def _find_imagenette(root: Path) -> Path | None:
    for folder in [root / f for f in IMAGENETTE_FOLDERS] + [root]:
        if (folder / "train").is_dir():
            return folder
    return None


def _download_imagenette(root: Path) -> None:
    import torchvision.datasets

    if not hasattr(torchvision.datasets, "Imagenette"):
        raise MissingFileError(
            f"this torchvision has no datasets.Imagenette (added in 0.17); extract imagenette2-320.tgz "
            f"from https://github.com/fastai/imagenette into {root} instead"
        )
    try:
        for split in ("train", "val"):
            torchvision.datasets.Imagenette(str(root), split=split, size="320px", download=True)
    except (RuntimeError, OSError) as exc:
        raise MissingFileError(
            f"could not download Imagenette into {root / 'imagenette2-320'}: {exc}. Without internet, "
            f"extract imagenette2-320.tgz into {root}."
        ) from exc


def _file_pool(samples: list[tuple[str, int]], size: int, *, where: str) -> Pool:
    paths = [p for p, _ in samples]
    labels = np.asarray([c for _, c in samples], dtype=np.int64)

    def load(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), 3, size, size), dtype=np.float32)
        for k, i in enumerate(indices):
            out[k] = decode_image(paths[int(i)], size)
        return out

    return Pool(labels=labels, load=load, where=where)


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One image file as float32 (3, size, size) in [0, 1]: RGB, shorter side resized, center crop."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFileError(f"{path} is not a readable image (truncated or corrupt): {exc}") from exc
    rgb = F.center_crop(F.resize(rgb, size, interpolation=InterpolationMode.BILINEAR, antialias=True), [size, size])
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
