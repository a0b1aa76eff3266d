"""The public API on the inputs issue 12 found mishandled: each is a RobustHPOError naming the argument."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

import robust_hpo as rh
from robust_hpo.errors import RobustHPOError


@pytest.fixture(scope="module")
def split() -> rh.PoisonedSplit:
    ds = rh.load_dataset("digits", classes=[3, 8], n_train=60, n_test=30)
    return rh.poison(ds, rh.BadNets(size=2), fraction=0.1)


@pytest.mark.parametrize("estimator", [LogisticRegressionCV(), type("MyLogistic", (LogisticRegression,), {})()])
def test_unsupported_subclasses_are_refused_by_name(split: rh.PoisonedSplit, estimator: Any) -> None:
    name = type(estimator).__name__
    with pytest.raises(RobustHPOError, match=rf"estimator must be exactly one of .* got {name}, a subclass of "
                                             r"LogisticRegression"):
        rh.backdoor_slope(estimator, split)
