"""BadNets: patch placement, per-class patches, untouched pixels, the errors."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo.attacks import BadNets, Trigger

CORNERS = {
    "bottom-right": (slice(7, 10), slice(9, 12)),
    "bottom-left": (slice(7, 10), slice(0, 3)),
    "top-right": (slice(0, 3), slice(9, 12)),
    "top-left": (slice(0, 3), slice(0, 3)),
}


def _images(n: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, channels, 10, 12), dtype=np.float32)


@pytest.mark.parametrize("position", list(CORNERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_patch_replaces_exactly_the_corner(position: str, channels: int) -> None:
    images = _images(6, channels)
    labels = np.array([4, 9, 4, 9, 9, 4])
    trigger = BadNets(size=3, position=position, seed=5)
    out = trigger.apply(images, labels)
    rows, cols = CORNERS[position]
    mask = np.zeros((10, 12), bool)
    mask[rows, cols] = True
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out[:, :, ~mask], images[:, :, ~mask])  # untouched elsewhere
    patch4, patch9 = out[0, :, rows, cols], out[1, :, rows, cols]
    for i, lab in enumerate(labels):  # the same patch for every image of a base class
        np.testing.assert_array_equal(out[i, :, rows, cols], patch4 if lab == 4 else patch9)
    assert not np.array_equal(patch4, patch9)  # different across classes
    np.testing.assert_array_equal(patch4, trigger.pattern(4, channels))
    assert np.all((patch4 >= 0) & (patch4 < 1))
    if channels == 3:
        assert not np.array_equal(patch4[0], patch4[1])  # per channel
    assert isinstance(trigger, Trigger)


def test_input_is_not_modified_and_patch_depends_only_on_seed_and_class() -> None:
    images = _images(3, 1)
    before = images.copy()
    a = BadNets(seed=1).apply(images, np.array([0, 1, 2]))
    np.testing.assert_array_equal(images, before)
    b = BadNets(seed=1).apply(images[:1], np.array([0]))
    np.testing.assert_array_equal(a[:1], b)
    c = BadNets(seed=2).apply(images[:1], np.array([0]))
    assert not np.array_equal(a[:1], c)


def test_size_equal_to_image_side_fills_it() -> None:
    images = np.zeros((1, 1, 4, 4), np.float32)
    out = BadNets(size=4).apply(images, np.array([3]))
    np.testing.assert_array_equal(out[0], BadNets(size=4).pattern(3, 1))


def test_describe_is_plain() -> None:
    assert BadNets(size=6, position="top-left", seed=2).describe() == {
        "kind": "badnets", "size": 6, "position": "top-left", "seed": 2}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, r"size must be a positive integer .*got 0"),
        ({"size": -2}, r"size must be a positive integer"),
        ({"size": 2.5}, r"size must be a positive integer"),
        ({"position": "center"}, r"position must be one of \['bottom-right', 'bottom-left', 'top-right', 'top-left'\] .*got 'center'"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BadNets(**kwargs)


def test_patch_larger_than_image_names_the_shape() -> None:
    with pytest.raises(ValueError, match=r"size=5 patch does not fit images of shape \(2, 1, 4, 6\)"):
        BadNets(size=5).apply(np.zeros((2, 1, 4, 6), np.float32), np.array([0, 1]))


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((2, 4, 4), np.float32), np.array([0, 1]), r"images must be a float array of shape \(n, C, H, W\)"),
        (np.zeros((2, 1, 4, 4), np.uint8), np.array([0, 1]), r"images must be a float array"),
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1, 1]), r"base_labels has 3 labels but images has 2"),
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0.0, 1.0]), r"base_labels must be a 1-D integer array"),
        (np.zeros((2, 1, 4, 4), np.float32), np.array([0, -1]), r"base_labels must be non-negative"),
    ],
)
def test_bad_apply_inputs(images: np.ndarray, labels: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BadNets(size=2).apply(images, labels)
