"""load_dataset on the bundled digits, class selection, stratified subsampling and the errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from robust_hpo.datasets import Dataset, available_datasets, default_root, load_dataset
from robust_hpo.datasets._select import split_pool, stratified_choice


def test_available_datasets_lists_the_builtin_loaders() -> None:
    assert {"digits", "mnist"} <= set(available_datasets())


def test_digits_pair_matches_sklearn_pixels_and_labels() -> None:
    d = load_dataset("digits", classes=(0, 1))
    raw = load_digits()
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.X_train.shape[1:] == (1, 8, 8) and d.image_shape == (1, 8, 8)
    assert d.classes == (0, 1) and d.class_names == ("0", "1") and d.split == "stratified"
    pool = raw.images[np.isin(raw.target, [0, 1])] / 16.0
    n_pool = pool.shape[0]
    assert d.X_train.shape[0] + d.X_test.shape[0] == n_pool
    assert d.X_test.shape[0] == round(0.25 * n_pool)
    # every loaded image is one of sklearn's (scaled by 1/16) with the same label; train and test disjoint
    keys = {raw.images[i].tobytes(): raw.target[i] for i in np.flatnonzero(np.isin(raw.target, [0, 1]))}
    for X, y in ((d.X_train, d.y_train), (d.X_test, d.y_test)):
        for img, lab in zip(X, y):
            assert keys[(img[0].astype(np.float64) * 16.0).tobytes()] == lab
    # train and test partition the pool: as multisets, train + test == pool
    loaded = Counter(img[0].astype(np.float64).tobytes() for img in np.concatenate([d.X_train, d.X_test]))
    assert loaded == Counter(img.astype(np.float32).astype(np.float64).tobytes() for img in pool)
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0


def test_digits_subsample_sizes_are_stratified_and_seeded() -> None:
    d = load_dataset("digits", classes=(3, 8), n_train=100, n_test=40, seed=3)
    assert d.X_train.shape[0] == 100 and d.X_test.shape[0] == 40
    raw = load_digits()
    share = np.mean(raw.target[np.isin(raw.target, [3, 8])] == 3)
    assert abs(np.mean(d.y_train == 3) - share) <= 0.01 + 1 / 100
    again = load_dataset("digits", classes=(3, 8), n_train=100, n_test=40, seed=3)
    np.testing.assert_array_equal(d.X_train, again.X_train)
    np.testing.assert_array_equal(d.y_test, again.y_test)
    other = load_dataset("digits", classes=(3, 8), n_train=100, n_test=40, seed=4)
    assert not np.array_equal(d.X_train, other.X_train)


def test_classes_keep_the_order_asked_and_accept_names() -> None:
    d = load_dataset("digits", classes=("7", 1, 4))
    assert d.classes == (7, 1, 4) and d.class_names == ("7", "1", "4")
    assert set(np.unique(d.y_train)) == {1, 4, 7}


def test_all_classes_by_default() -> None:
    d = load_dataset("digits", n_train=200, n_test=50)
    assert d.classes == tuple(range(10)) and set(np.unique(d.y_train)) == set(range(10))


def test_stratified_choice_hand_computed_counts() -> None:
    y = np.array([5] * 30 + [9] * 10)
    idx = stratified_choice(y, 8, np.random.default_rng(0), name="n", pool="p")
    assert np.all(np.diff(idx) > 0)
    assert np.sum(y[idx] == 5) == 6 and np.sum(y[idx] == 9) == 2
    # largest remainder: 7 of (1, 2, 4) -> quotas 1, 2, 4
    y = np.array([0] * 10 + [1] * 20 + [2] * 40)
    idx = stratified_choice(y, 7, np.random.default_rng(0), name="n", pool="p")
    assert [int(np.sum(y[idx] == c)) for c in (0, 1, 2)] == [1, 2, 4]
    # at least one per class even when the quota is below one
    y = np.array([0] * 99 + [1])
    idx = stratified_choice(y, 5, np.random.default_rng(0), name="n", pool="p")
    assert int(np.sum(y[idx] == 1)) == 1 and idx.size == 5


def test_split_pool_is_disjoint_and_exhaustive_by_default() -> None:
    y = np.array([0] * 40 + [1] * 60)
    train, test = split_pool(y, None, None, np.random.default_rng(1), pool="p")
    assert test.size == 25 and train.size == 75
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).size == 100


def test_default_root_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ROBUST_HPO_DATA", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("ROBUST_HPO_DATA")
    assert default_root().name == "robust_hpo"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "fashion"}, r"unknown dataset name 'fashion'; expected one of \[.*'digits'.*'mnist'"),
        ({"classes": (0, 12)}, r"classes: 12 is not a class id of 'digits'"),
        ({"classes": ("zero", 1)}, r"classes: 'zero' is not a class name of 'digits'"),
        ({"classes": (3,)}, r"classes must name at least two classes"),
        ({"classes": (3, 3)}, r"classes must not repeat a class"),
        ({"classes": "01"}, r"classes must be a sequence of class ids or names"),
        ({"classes": (1.5, 2)}, r"classes: 1.5 is neither a class id"),
        ({"n_train": 0}, r"n_train must be a positive integer, got 0"),
        ({"n_test": -3}, r"n_test must be a positive integer, got -3"),
        ({"n_train": 2.5}, r"n_train must be a positive integer"),
        ({"classes": (0, 1), "n_train": 400}, r"n_train=400 plus n_test=90 is more than the 360 images available"),
        ({"classes": (0, 1), "n_train": 300, "n_test": 100}, r"n_train=300 plus n_test=100 is more than the 360"),
        ({"classes": (0, 1), "n_test": 1}, r"n_test=1 is smaller than the number of classes \(2\)"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
        ({"image_size": 32}, r"image_size applies to .* not to 'digits'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    kwargs = {"name": "digits", **kwargs}
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        load_dataset(name, **kwargs)


def _ok_dataset(**overrides) -> Dataset:
    X = np.zeros((4, 1, 2, 2), np.float32)
    y = np.array([0, 1, 0, 1], np.int64)
    fields = dict(name="toy", X_train=X, y_train=y, X_test=X, y_test=y, classes=(0, 1), class_names=("a", "b"))
    fields.update(overrides)
    return Dataset(**fields)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"X_train": np.zeros((4, 2, 2), np.float32)}, r"X_train must be a float array of rows \(n, d\) or images \(n, C, H, W\)"),
        ({"X_test": np.full((4, 1, 2, 2), 2.0, np.float32)}, r"X_test values must lie in \[0, 1\], got range \[2.0, 2.0\]"),
        ({"X_train": np.full((4, 1, 2, 2), np.nan, np.float32)}, r"X_train contains NaN"),
        ({"y_train": np.array([0, 1, 0], np.int64)}, r"y_train has 3 labels but X_train has 4 images"),
        ({"y_test": np.array([0, 1, 0, 5], np.int64)}, r"y_test holds labels \[5\] not in classes \(0, 1\)"),
        ({"y_test": np.array([0.0, 1, 0, 1])}, r"y_test must be a 1-D integer array"),
        ({"classes": (0,), "class_names": ("a",)}, r"classes must hold at least two distinct class ids"),
        ({"class_names": ("a",)}, r"class_names must name each of the 2 classes"),
        ({"split": "random"}, r"split must be one of"),
        ({"X_test": np.zeros((4, 1, 3, 3), np.float32)}, r"must have the same \(C, H, W\)"),
    ],
)
def test_dataset_validates_its_contract(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _ok_dataset(**overrides)
