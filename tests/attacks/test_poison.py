"""target_labels and poison: counts, in-place semantics, triggered test set, determinism, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robust_hpo.attacks import BadNets, InvisibleGrid, PoisonedSplit, poison, target_labels
from robust_hpo.datasets import load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", classes=(3, 8, 5), n_train=150, n_test=60, seed=0)


def test_target_labels_next_policy() -> None:
    np.testing.assert_array_equal(target_labels(np.array([7, 1, 1, 7]), (7, 1)), [1, 7, 7, 1])
    np.testing.assert_array_equal(target_labels(np.array([3, 8, 5, 5]), (3, 8, 5)), [8, 5, 3, 3])
    assert target_labels(np.array([], np.int64), (0, 1)).shape == (0,)


@pytest.mark.parametrize(
    ("y", "classes", "policy", "match"),
    [
        (np.array([0, 1]), (0, 1), "all-to-one", r"policy must be one of \['next'\] or a class id, got 'all-to-one'"),
        (np.array([0, 2]), (0, 1), "next", r"y holds labels \[2\] not in classes \(0, 1\)"),
        (np.array([0]), (0,), "next", r"classes must hold at least two class ids"),
        (np.array([0]), (0, 0), "next", r"classes must not repeat a class id"),
        (np.array([0]), ("a", "b"), "next", r"classes must be a sequence of integer class ids"),
        (np.array([[0]]), (0, 1), "next", r"y must be a 1-D integer array"),
    ],
)
def test_target_labels_errors(y: np.ndarray, classes: Any, policy: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        target_labels(y, classes, policy)


def test_poison_in_place_semantics(digits) -> None:
    trigger = BadNets(size=2, seed=1)
    split = poison(digits, trigger, fraction=0.1, seed=4)
    assert isinstance(split, PoisonedSplit)
    n = digits.y_train.size
    m = 15  # round(0.1 * 150)
    assert split.X_poison.shape == (m, 1, 8, 8) and split.X_clean.shape == (n - m, 1, 8, 8)
    idx = split.poison_indices
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and idx.size == m
    rest = np.setdiff1d(np.arange(n), idx)
    # union = the training set with the chosen points modified
    np.testing.assert_array_equal(split.X_clean, digits.X_train[rest])
    np.testing.assert_array_equal(split.y_clean, digits.y_train[rest])
    np.testing.assert_array_equal(split.X_poison, trigger.apply(digits.X_train[idx], digits.y_train[idx]))
    expected = {3: 8, 8: 5, 5: 3}
    np.testing.assert_array_equal(split.y_poison, [expected[int(c)] for c in digits.y_train[idx]])
    # the trigger pixels are the base class's patch, the rest is the original image
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(split.X_poison[j, :, 6:, 6:], trigger.pattern(int(digits.y_train[i]), 1))
        np.testing.assert_array_equal(split.X_poison[j, :, :6, :], digits.X_train[i, :, :6, :])
    assert split.X_train_poisoned.shape[0] == n
    assert split.classes == (3, 8, 5)
    assert split.attack["n_poison"] == m and split.attack["n_clean"] == n - m
    assert split.attack["trigger"] == trigger.describe() and split.attack["fraction"] == 0.1
    assert split.attack["target"] == "next" and split.attack["seed"] == 4


def test_triggered_test_set(digits) -> None:
    trigger = InvisibleGrid(epsilon=0.1, spacing=3, seed=2)
    split = poison(digits, trigger, fraction=0.2)
    np.testing.assert_array_equal(split.X_test, digits.X_test)
    np.testing.assert_array_equal(split.X_trigger, trigger.apply(digits.X_test, digits.y_test))
    expected = {3: 8, 8: 5, 5: 3}
    np.testing.assert_array_equal(split.y_trigger, [expected[int(c)] for c in digits.y_test])
    assert split.X_trigger.dtype == np.float32 and split.y_trigger.dtype == np.int64
    assert split.attack["n_trigger"] == digits.y_test.size


def test_rounding_half_up_and_determinism(digits) -> None:
    a = poison(digits, BadNets(), fraction=0.01, seed=7)  # 1.5 -> 2
    assert a.poison_indices.size == 2
    b = poison(digits, BadNets(), fraction=0.01, seed=7)
    np.testing.assert_array_equal(a.poison_indices, b.poison_indices)
    np.testing.assert_array_equal(a.X_poison, b.X_poison)
    others = {tuple(poison(digits, BadNets(), fraction=0.1, seed=s).poison_indices) for s in range(3)}
    assert len(others) == 3


def test_flat_arrays_for_convex_learners(digits) -> None:
    Xc, yc, Xp, yp, Xt, yt = poison(digits, BadNets()).flat()
    assert Xc.shape[1] == 64 and Xp.dtype == np.float64 and Xt.shape[0] == yt.shape[0]


class _BadTrigger:
    def __init__(self, out: str) -> None:
        self.out = out

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray:
        return images[:1] if self.out == "shape" else images + 2.0

    def describe(self) -> dict[str, Any]:
        return {"kind": "bad"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": 0.0}, r"fraction must be a number in the open interval \(0, 1\), got 0.0"),
        ({"fraction": 1.0}, r"fraction must be a number in the open interval \(0, 1\)"),
        ({"fraction": -0.1}, r"fraction must be a number in the open interval"),
        ({"fraction": "0.1"}, r"fraction must be a number"),
        ({"fraction": 0.003}, r"fraction=0.003 of the 150 training points rounds to 0 poison points"),
        ({"fraction": 0.998}, r"fraction=0.998 of the 150 training points poisons all of them"),
        ({"target": "previous"}, r"target 'previous' is neither 'next' nor a class name of the data"),
        ({"seed": -2}, r"seed must be a non-negative integer"),
        ({"trigger": "badnets"}, r"trigger must provide apply\(images, base_labels\) and describe\(\)"),
        ({"trigger": _BadTrigger("shape")}, r"trigger \{'kind': 'bad'\} returned \(1, 1, 8, 8\) for poison inputs of shape"),
        ({"trigger": _BadTrigger("range")}, r"returned poison pixels outside \[0, 1\]"),
    ],
)
def test_poison_errors(digits, kwargs: dict, match: str) -> None:
    trigger = kwargs.pop("trigger", BadNets())
    with pytest.raises(ValueError, match=match):
        poison(digits, trigger, **kwargs)


def test_poison_needs_a_dataset() -> None:
    with pytest.raises(ValueError, match=r"dataset must be a robust_hpo.datasets.Dataset, got tuple"):
        poison((np.zeros(1),), BadNets())  # type: ignore[arg-type]


def test_real_mnist_poisoned_pair(mnist_dir: Path) -> None:
    d = load_dataset("mnist", root=mnist_dir, classes=(7, 1), n_train=1500, n_test=500)
    split = poison(d, BadNets(size=3), fraction=0.1)
    assert split.X_poison.shape == (150, 1, 28, 28) and split.X_clean.shape == (1350, 1, 28, 28)
    assert split.X_trigger.shape == (500, 1, 28, 28)
    np.testing.assert_array_equal(split.y_trigger, np.where(d.y_test == 7, 1, 7))
