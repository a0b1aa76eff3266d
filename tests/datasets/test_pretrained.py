"""extract_features with untrained (weights=None) networks: shapes, determinism, cache, errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import robust_hpo.datasets.pretrained as features
from robust_hpo.datasets.pretrained import FEATURE_MODELS, WeightsUnavailableError, extract_features


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((3, 3, 12, 12), dtype=np.float32)


@pytest.fixture
def build_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = features._build_extractor

    def counting(model, *args, **kwargs):
        calls.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(features, "_build_extractor", counting)
    return calls


def test_alexnet_shape_determinism_and_cache(images: np.ndarray, tmp_path: Path, build_calls: list[str]) -> None:
    a = extract_features(images, model="alexnet", weights=None, cache_dir=tmp_path, progress=False, batch_size=2)
    assert a.shape == (3, 9216) and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert len(list(tmp_path.glob("alexnet-*.npy"))) == 1
    b = extract_features(images, model="alexnet", weights=None, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(a, b)
    assert build_calls == ["alexnet"]  # the second call read the cache
    # a changed input invalidates: new key, network runs again, batch results independent of batching
    changed = images.copy()
    changed[0, 0, 0, 0] = 1.0 - changed[0, 0, 0, 0]
    c = extract_features(changed, model="alexnet", weights=None, cache_dir=tmp_path, progress=False, batch_size=3)
    assert build_calls == ["alexnet", "alexnet"] and len(list(tmp_path.glob("alexnet-*.npy"))) == 2
    np.testing.assert_allclose(c[1:], a[1:], rtol=1e-4, atol=1e-5)
    assert not np.allclose(c[0], a[0])


def test_alexnet_features_are_the_pooled_conv_output(images: np.ndarray, tmp_path: Path) -> None:
    """Independent computation: torchvision's own AlexNet (same seed) up to avgpool."""
    from torchvision.models import AlexNet_Weights, alexnet

    feats = extract_features(images[:1], model="alexnet", weights=None, cache_dir=tmp_path, progress=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = alexnet(weights=None).eval()
    x = AlexNet_Weights.DEFAULT.transforms()(torch.from_numpy(images[:1]))
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        expected = torch.flatten(net.avgpool(net.features(x)), 1).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["resnet18", "resnet50"])
def test_resnet_pooled_penultimate_layer(model: str, tmp_path: Path) -> None:
    gray = np.random.default_rng(1).random((2, 1, 10, 10), dtype=np.float32)
    feats = extract_features(gray, model=model, weights=None, cache_dir=tmp_path, progress=False)
    assert feats.shape == (2, FEATURE_MODELS[model])
    rgb = np.repeat(gray, 3, axis=1)  # grayscale is repeated to RGB
    again = extract_features(rgb, model=model, weights=None, cache_dir=tmp_path / "rgb", progress=False)
    np.testing.assert_allclose(feats, again, rtol=1e-4, atol=1e-6)
    assert np.all(feats >= 0)  # after ReLU and average pooling


def test_offline_pretrained_weights_give_one_clear_error(images: np.ndarray, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hub"
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))

    def offline(url: str, dst: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # never touch the network
    try:
        with pytest.raises(WeightsUnavailableError) as info:
            extract_features(images, model="resnet18", weights="DEFAULT", cache_dir=tmp_path, progress=False)
        msg = str(info.value)
        assert "cannot be downloaded" in msg and "Name or service not known" in msg
        assert str(hub / "checkpoints" / "resnet18-f37072fd.pth") in msg and "weights=None" in msg
        # a corrupt file already in the cache is named as such
        (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
        (hub / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
        with pytest.raises(WeightsUnavailableError, match=r"resnet18-f37072fd.pth .* could not be read .*delete it"):
            extract_features(images, model="resnet18", weights="IMAGENET1K_V1", cache_dir=tmp_path, progress=False)
    finally:
        torch.hub.set_dir(old)
    assert not list(tmp_path.glob("*.npy"))  # nothing cached on failure


def test_corrupt_cache_file_is_replaced_with_a_warning(images: np.ndarray, tmp_path: Path) -> None:
    a = extract_features(images[:1], model="resnet18", weights=None, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("resnet18-*.npy")
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"ignoring unreadable feature cache"):
        b = extract_features(images[:1], model="resnet18", weights=None, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.load(path), a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "vgg16"}, r"model must be one of \['alexnet', .*\], got 'vgg16'"),
        ({"weights": "IMAGENET9K"}, r"weights must be 'DEFAULT', None or one of \['IMAGENET1K_V1'\] for 'alexnet'"),
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        ({"device": "gpu7"}, r"device must be a torch device such as 'cpu' or 'cuda', got 'gpu7'"),
        ({"images": np.zeros((2, 3, 4), np.float32)}, r"images must be a float array of shape \(n, C, H, W\)"),
        ({"images": np.zeros((0, 3, 4, 4), np.float32)}, r"images must hold at least one image"),
        ({"images": np.zeros((1, 2, 4, 4), np.float32)}, r"images must have 1 \(grayscale\) or 3 \(RGB\) channels"),
        ({"images": np.full((1, 3, 4, 4), 255.0, np.float32)}, r"images must hold finite pixel values in \[0, 1\]"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str, tmp_path: Path) -> None:
    kwargs = {"images": np.zeros((1, 3, 4, 4), np.float32), "weights": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        extract_features(cache_dir=tmp_path, progress=False, **kwargs)
