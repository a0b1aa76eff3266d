"""InvisibleGrid: ±ε on the grid only, per-class patterns, clipping, the errors."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo.attacks import InvisibleGrid, Trigger


def test_grid_mask_hand_computed() -> None:
    mask = InvisibleGrid(spacing=3).grid(4, 5)
    expected = np.array([
        [1, 1, 1, 1, 1],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 1, 0],
        [1, 1, 1, 1, 1],
    ], bool)
    np.testing.assert_array_equal(mask, expected)


def test_change_is_plus_minus_epsilon_on_grid_and_zero_elsewhere() -> None:
    eps = 8 / 255
    trigger = InvisibleGrid(epsilon=eps, spacing=4, seed=3)
    assert isinstance(trigger, Trigger)
    images = np.full((4, 3, 16, 16), 0.5, np.float32)  # mid-grey: no clipping
    labels = np.array([0, 1, 0, 1])
    out = trigger.apply(images, labels)
    diff = out - images
    grid = trigger.grid(16, 16)
    np.testing.assert_allclose(np.abs(diff[:, :, grid]), eps, rtol=1e-5)
    assert np.all(diff[:, :, ~grid] == 0)
    np.testing.assert_array_equal(diff[0], diff[2])  # fixed pattern per class
    assert not np.allclose(diff[0], diff[1])  # distinct across classes
    assert np.any(diff[0] > 0) and np.any(diff[0] < 0)
    np.testing.assert_allclose(diff[1], trigger.pattern(1, (3, 16, 16)), atol=1e-6)


def test_clipped_to_unit_range_and_bounded_by_epsilon() -> None:
    rng = np.random.default_rng(0)
    images = rng.choice(np.array([0.0, 1.0, 0.3], np.float32), size=(5, 1, 9, 9))
    before = images.copy()
    out = InvisibleGrid(epsilon=0.5, spacing=1).apply(images, np.arange(5))
    np.testing.assert_array_equal(images, before)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.max(np.abs(out - images)) <= 0.5 + 1e-7
    assert np.any(out[images == 0.0] == 0.0) and np.any(out[images == 1.0] == 1.0)  # clipped somewhere


def test_seed_changes_the_pattern_and_describe() -> None:
    a = InvisibleGrid(seed=0).pattern(2, (1, 8, 8))
    np.testing.assert_array_equal(a, InvisibleGrid(seed=0).pattern(2, (1, 8, 8)))
    assert not np.array_equal(a, InvisibleGrid(seed=1).pattern(2, (1, 8, 8)))
    assert InvisibleGrid(epsilon=0.25, spacing=2, seed=1).describe() == {
        "kind": "invisible_grid", "epsilon": 0.25, "spacing": 2, "seed": 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, r"epsilon must be a number in \(0, 1\] \(maximum change of a pixel\), got 0.0"),
        ({"epsilon": -0.1}, r"epsilon must be a number in \(0, 1\]"),
        ({"epsilon": 1.5}, r"epsilon must be a number in \(0, 1\]"),
        ({"epsilon": "small"}, r"epsilon must be a number in \(0, 1\]"),
        ({"spacing": 0}, r"spacing must be a positive integer"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InvisibleGrid(**kwargs)


def test_bad_apply_inputs() -> None:
    with pytest.raises(ValueError, match=r"base_labels has 1 labels but images has 2"):
        InvisibleGrid().apply(np.zeros((2, 1, 4, 4), np.float32), np.array([0]))
