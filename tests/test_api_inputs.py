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


def test_trigger_class_instead_of_instance_is_named(split: rh.PoisonedSplit) -> None:
    ds = rh.load_dataset("digits", classes=[3, 8], n_train=40, n_test=20)
    with pytest.raises(RobustHPOError, match=r"trigger must be a trigger instance, got the class BadNets; create one"):
        rh.poison(ds, rh.BadNets)


def test_target_policy_and_classes_are_named() -> None:
    ds = rh.load_dataset("digits", classes=[3, 8], n_train=40, n_test=20)
    with pytest.raises(RobustHPOError, match=r"target must be 'next'"):
        rh.poison(ds, rh.BadNets(), target="previous")
    with pytest.raises(RobustHPOError, match=r"classes must be a sequence of integer class ids, got 5"):
        rh.target_labels(ds.y_test, 5)


def test_get_family_and_aggregate_name_their_arguments() -> None:
    with pytest.raises(RobustHPOError, match=r"name must be a learner name \(a string\)"):
        rh.get_family(["logistic"])
    with pytest.raises(RobustHPOError, match=r"results\['a'\] must be a SlopeResult, got int"):
        rh.aggregate_slopes({"a": 1})


def test_lazy_top_level_names_match_all() -> None:
    """``import robust_hpo`` loads names on first use: every public name resolves, none is missing."""
    import importlib

    module = importlib.import_module("robust_hpo")
    exported = set(module._EXPORTS) | {"__version__"}
    assert exported == set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018
