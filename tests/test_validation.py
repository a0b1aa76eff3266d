"""The declarative checks every module uses: one message format, one β rule with an explicit include_zero."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pytest

from robust_hpo._validation import (
    BOOLEAN,
    NON_EMPTY_STRING,
    Interval,
    Options,
    check,
    check_betas,
    check_params,
    describe,
)
from robust_hpo.errors import RobustHPOError, ValidationError


@pytest.mark.parametrize("constraint, text", [
    (Interval(Integral, 1, None), "a positive integer"),
    (Interval(Integral, 0, None), "a non-negative integer"),
    (Interval(Integral, 2, None), "an integer >= 2"),
    (Interval(Integral, 0, 9), "an integer in [0, 9]"),
    (Interval(Real, 0, None), "a finite number >= 0"),
    (Interval(Real, 0, None, closed="neither"), "a finite number > 0"),
    (Interval(Real, 0, 1), "a number in [0, 1]"),
    (Interval(Real, 0, 1, closed="neither"), "a number in the open interval (0, 1)"),
    (Interval(Real, 0, 1, closed="right"), "a number in (0, 1]"),
    (Options(["max", "mean"]), "one of ['max', 'mean']"),
    (Options([-1]), "-1"),
])
def test_descriptions(constraint, text):
    assert str(constraint) == text


@pytest.mark.parametrize("value, ok", [
    (1, True), (np.int64(3), True), (0, False), (1.0, False), (True, False), ("1", False), (None, True),
])
def test_integer_or_none(value, ok):
    constraints = [Interval(Integral, 1, None), None]
    if ok:
        assert check("n", value, constraints) is value
    else:
        with pytest.raises(ValidationError, match=rf"^n must be a positive integer, got {value!r}$"):
            check("n", value, constraints)


def test_reals_are_finite_and_never_booleans():
    positive = [Interval(Real, 0, None, closed="neither")]
    assert check("x", 2, positive) == 2 and check("x", np.float32(0.5), positive) == np.float32(0.5)
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValidationError, match="x must be a finite number > 0"):
            check("x", bad, positive)


def test_alternatives_note_and_prefix():
    with pytest.raises(ValidationError, match=r"^n_jobs must be a positive integer or -1, got 0$"):
        check("n_jobs", 0, [Interval(Integral, 1, None), Options([-1])])
    with pytest.raises(ValidationError, match=r"^size must be a positive integer \(patch side\), got 0$"):
        check("size", 0, [Interval(Integral, 1, None)], note="patch side")
    with pytest.raises(ValidationError, match=r"^study\.name must be a non-empty string, got ' '$"):
        check_params({"name": " ", "other": object()}, {"name": [NON_EMPTY_STRING]}, prefix="study.")
    with pytest.raises(RobustHPOError, match="must be true or false"):
        check("download", 1, [BOOLEAN])
    assert describe([None]) == "None" and describe([Interval(Integral, 1, None), None]) == "a positive integer"


@pytest.mark.parametrize("betas, include_zero, expected", [
    ([0.5, 0.0, 0.1], True, (0.0, 0.1, 0.5)),
    ((0.01,), False, (0.01,)),
    (np.array([0.2, 0.1]), False, (0.1, 0.2)),
])
def test_betas_are_sorted(betas, include_zero, expected):
    assert check_betas(betas, include_zero=include_zero) == expected


@pytest.mark.parametrize("betas, include_zero, message", [
    ([], False, "betas must be a non-empty list"),
    ("0.1", False, "betas must be a non-empty list"),
    ([0.0], False, "betas must hold finite numbers > 0"),
    ([-0.1], False, "betas must hold finite numbers > 0"),
    ([float("inf")], False, "betas must hold finite numbers > 0"),
    ([True], False, "betas must hold finite numbers > 0"),
    ([0.1, 0.1], False, "betas must be distinct"),
    ([0.1, 1.0], True, "betas must include 0"),
    ([0.0], True, "at least one β > 0"),
    ([0.0, -1.0], True, "betas must hold finite numbers >= 0"),
])
def test_betas_errors(betas, include_zero, message):
    with pytest.raises(ValidationError, match=message):
        check_betas(betas, include_zero=include_zero)


def test_sparse_input_is_named_as_sparse_not_as_dtype_object() -> None:
    import scipy.sparse

    from robust_hpo._validation import as_finite_2d

    with pytest.raises(ValidationError, match=r"X must be a dense numeric array, got a sparse csr_matrix; convert"):
        as_finite_2d("X", scipy.sparse.csr_matrix(np.eye(3)))
