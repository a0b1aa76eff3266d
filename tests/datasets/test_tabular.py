"""Your own data: Dataset.from_arrays (NumPy, pandas), CSV and NPZ files, breast_cancer; strict bad-input errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from robust_hpo import Dataset
from robust_hpo.datasets import MAX_FILE_BYTES, load_dataset
from robust_hpo.errors import MissingFileError, ValidationError


def _rows(n: int = 60, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * [1.0, 10.0, 100.0][:d], np.arange(n) % 2


def test_from_arrays_rows_split_stratified_and_seeded():
    X, y = _rows(80)
    a = Dataset.from_arrays(X, y, seed=3, n_test=20)
    b = Dataset.from_arrays(X, y, seed=3, n_test=20)
    assert a.layout == "rows" and a.value_range is None and a.split == "stratified"
    assert a.X_train.shape == (60, 3) and a.X_test.shape == (20, 3) and a.X_train.dtype == np.float64
    assert a.feature_names == ("x0", "x1", "x2") and a.classes == (0, 1) and a.class_names == ("0", "1")
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert np.bincount(a.y_test).tolist() == [10, 10]  # stratified
    # every original row lands in exactly one part, unchanged
    together = np.vstack([a.X_train, a.X_test])
    assert sorted(map(tuple, together)) == sorted(map(tuple, X))


def test_from_arrays_string_labels_given_test_and_names():
    X, _ = _rows(40)
    y = np.array(["spam", "ham"] * 20)
    d = Dataset.from_arrays(X[:30], y[:30], X[30:], y[30:], feature_names=["a", "b", "c"])
    assert d.split == "given" and d.classes == (0, 1) and d.class_names == ("ham", "spam")
    assert np.array_equal(d.y_train, (y[:30] == "spam").astype(int)) and d.feature_names == ("a", "b", "c")
    assert np.array_equal(d.X_test, X[30:])
    kept = Dataset.from_arrays(X, np.array(["a", "b", "c", "d"] * 10), classes=["d", "b"], seed=0)
    assert kept.classes == (3, 1) and kept.class_names == ("d", "b")
    signed = Dataset.from_arrays(X, np.where(np.arange(40) % 2, 1, -1))  # -1/+1 labels become names
    assert signed.class_names == ("-1", "1")


def test_from_arrays_images():
    rng = np.random.default_rng(0)
    d = Dataset.from_arrays(rng.random((30, 1, 4, 4)), np.arange(30) % 3, class_names=["a", "b", "c"])
    assert d.layout == "images" and d.value_range == (0.0, 1.0) and d.X_train.dtype == np.float32
    assert d.feature_names is None and d.class_names == ("a", "b", "c")
    with pytest.raises(ValidationError, match=r"X_train images must have values in \[0, 1\]"):
        Dataset.from_arrays(rng.random((30, 1, 4, 4)) * 255, np.arange(30) % 3)


def test_from_arrays_pandas():
    pd = pytest.importorskip("pandas")
    X, y = _rows(40)
    frame = pd.DataFrame(X, columns=["age", "income", "debt"])
    d = Dataset.from_arrays(frame, pd.Series(np.where(y == 1, "yes", "no")), seed=0)
    assert d.feature_names == ("age", "income", "debt") and d.class_names == ("no", "yes")
    with pytest.raises(ValidationError, match="X_train column 'city' is not numeric"):
        Dataset.from_arrays(frame.assign(city="Paris"), y)
    with pytest.raises(ValidationError, match="missing label"):
        Dataset.from_arrays(frame, pd.Series([None] + ["a", "b"] * 19 + ["a"]))


@pytest.mark.parametrize(("X", "y", "match"), [
    ([[1.0, 2.0], [3.0]], [0, 1], r"X_train must be a rectangular array"),
    (np.array([["a", "b"], ["c", "d"]]), [0, 1], r"X_train must hold real numbers, got dtype <U1"),
    (np.array([[1.0, np.nan], [1.0, 2.0]]), [0, 1], r"X_train has a missing or infinite value at row 0"),
    (np.ones((4, 2)), [0, 1, 0, np.nan], r"y_train has a missing label \(NaN\) at row 3"),
    (np.ones((4, 2)), [0, 0, 0, 0], r"y_train holds a single class \('0'\); expected at least two"),
    (np.ones((4, 2)), [0, 1, 0], r"y_train has 3 labels but X_train has 4 points"),
    (np.ones((4, 2)), [0.5, 1, 0, 1], r"y_train holds non-integer numbers"),
    (np.ones((4, 2, 2)), [0, 1, 0, 1], r"X_train must be rows \(n, d\) or images \(n, C, H, W\)"),
])
def test_from_arrays_refuses_bad_input(X, y, match):
    with pytest.raises(ValidationError, match=match):
        Dataset.from_arrays(X, y)


def test_breast_cancer_is_offline_with_names():
    d = load_dataset("breast_cancer", n_train=200, n_test=100, seed=1)
    bunch = load_breast_cancer()
    assert d.X_train.shape == (200, 30) and d.class_names == ("malignant", "benign")
    assert d.feature_names == tuple(bunch.feature_names)
    assert not {tuple(r) for r in d.X_train} & {tuple(r) for r in d.X_test}  # disjoint parts
    s = load_dataset("breast_cancer", n_train=200, n_test=100, seed=1, standardize=True)
    assert np.allclose(s.X_train.mean(0), 0) and np.allclose(s.X_train.std(0), 1)
    mean, std = d.X_train.mean(0), d.X_train.std(0)
    assert np.allclose(s.X_test, (d.X_test - mean) / std)  # test uses the training statistics
    with pytest.raises(ValidationError, match="standardize applies to tabular rows"):
        load_dataset("digits", classes=[3, 8], standardize=True)


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_file(tmp_path):
    lines = ["f1,label,f2"] + [f"{i * 0.5},{'yes' if i % 2 else 'no'},{i}" for i in range(40)]
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    d = load_dataset("csv", path=path, label="label", n_test=10)
    assert d.feature_names == ("f1", "f2") and d.class_names == ("no", "yes") and d.name == "data"
    assert d.X_train.shape == (30, 2) and d.X_test.shape == (10, 2)
    row = {(x[0], x[1]) for x in np.vstack([d.X_train, d.X_test])}
    assert (0.5, 1.0) in row and (19.5, 39.0) in row


@pytest.mark.parametrize(("text", "kwargs", "match"), [
    ("a,y\n1,0\n2\n3,1\n", {}, r"line 3 has 1 cells but the header has 2"),
    ("a,y\n1,0\nx,1\n3,1\n", {}, r"column 'a' is not numeric \('x' on line 3\)"),
    ("a,y\n1,0\n,1\n3,1\n", {}, r"column 'a' has a missing value on line 3"),
    ("a,y\n1,0\n2,nan\n3,1\n", {}, r"label column 'y' has a missing value on line 3"),
    ("a,y\n1,0\n2,0\n3,0\n", {}, r"labels hold a single class \('0'\)"),
    ("a,b\n1,0\n2,1\n", {}, r"no label column 'y'; its columns are \['a', 'b'\]"),
    ("a,y\n1,0\ninf,1\n", {}, r"column 'a' has a missing or infinite value \('inf'\) on line 3"),
    ("a,y\n1,0\n2,1\n", {}, r"X_train must hold at least one point"),  # too few rows to split
    ("", {}, r"empty; expected a header row"),
    ("a,y\n", {}, r"no data rows below the header"),
])
def test_csv_refuses_bad_files_naming_file_and_column(tmp_path, text, kwargs, match):
    path = _csv(tmp_path, text)
    with pytest.raises(ValidationError) as info:
        load_dataset("csv", path=path, label="y", **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if match is not None:
        assert __import__("re").search(match, message), message


def test_data_file_paths_are_checked(tmp_path):
    with pytest.raises(MissingFileError, match="data file not found"):
        load_dataset("csv", path=tmp_path / "nope.csv", label="y")
    with pytest.raises(ValidationError, match="is not a regular file"):
        load_dataset("csv", path=tmp_path, label="y")
    with pytest.raises(ValidationError, match="path is required for dataset 'npz'"):
        load_dataset("npz")
    with pytest.raises(ValidationError, match="label is required for a CSV file"):
        load_dataset("csv", path=_csv(tmp_path, "a,y\n1,0\n"))
    with pytest.raises(ValidationError, match="path and label apply to datasets"):
        load_dataset("digits", path=tmp_path / "x.csv")
    with pytest.raises(ValidationError, match="root, download and image_size do not apply"):
        load_dataset("npz", path=tmp_path / "x.npz", root=tmp_path)


def test_a_2_gb_file_is_refused_by_its_size_before_reading(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:  # sparse: no 2 GB written to disk
        handle.truncate(2 * 2**30)
    assert os.path.getsize(path) > MAX_FILE_BYTES
    with pytest.raises(ValidationError, match=r"big.csv is 2.0 GiB, more than the 1 GiB robust_hpo reads"):
        load_dataset("csv", path=path, label="y")


def test_npz_files(tmp_path):
    X, y = _rows(40)
    np.savez(tmp_path / "pool.npz", X=X, y=y)
    d = load_dataset("npz", path=tmp_path / "pool.npz", seed=0)
    assert d.split == "stratified" and d.X_train.shape[1] == 3
    np.savez(tmp_path / "given.npz", X_train=X[:30], y_train=np.array(["a", "b"] * 15), X_test=X[30:],
             y_test=np.array(["a", "b"] * 5))
    g = load_dataset("npz", path=tmp_path / "given.npz")
    assert g.split == "given" and g.class_names == ("a", "b") and np.array_equal(g.X_test, X[30:])
    np.savez(tmp_path / "wrong.npz", X=X, labels=y)
    with pytest.raises(ValidationError, match=r"wrong.npz: holds arrays \['X', 'labels'\]; expected exactly"):
        load_dataset("npz", path=tmp_path / "wrong.npz")
    np.savez(tmp_path / "objects.npz", X=X, y=np.array([1, "a"] * 20, dtype=object))
    with pytest.raises(ValidationError, match=r"objects.npz: cannot be read without pickle"):
        load_dataset("npz", path=tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match=r"junk.npz: not a readable .npz file"):
        load_dataset("npz", path=tmp_path / "junk.npz")


class _Column:
    def __init__(self, values):
        self.values = np.asarray(values)
        self.dtype = self.values.dtype


class _Frame:
    """The few DataFrame members from_arrays uses (pandas is optional and may be absent)."""

    def __init__(self, data: dict):
        self.data = {k: _Column(v) for k, v in data.items()}
        self.columns = list(data)
        self.shape = (len(next(iter(data.values()))), len(data))
        self.iloc = None

    def __getitem__(self, key):
        return self.data[key]

    def to_numpy(self, dtype=None, na_value=None):
        return np.column_stack([c.values for c in self.data.values()]).astype(dtype)


def test_dataframe_like_inputs_without_pandas():
    rng = np.random.default_rng(0)
    frame = _Frame({"age": rng.normal(size=40), "income": rng.normal(size=40)})
    d = Dataset.from_arrays(frame, np.array(["no", "yes"] * 20), seed=0)
    assert d.feature_names == ("age", "income") and d.class_names == ("no", "yes")
    with pytest.raises(ValidationError, match=r"X_train column 'city' is not numeric \(dtype <U5\)"):
        Dataset.from_arrays(_Frame({"age": rng.normal(size=4), "city": ["Paris"] * 4}), [0, 1, 0, 1])
    with pytest.raises(ValidationError, match=r"X_train has a missing or infinite value at row 1, column 'age'"):
        Dataset.from_arrays(_Frame({"age": [1.0, np.nan, 2.0, 3.0]}), [0, 1, 0, 1])
