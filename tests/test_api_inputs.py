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
    with pytest.raises(RobustHPOError, match=r"target 'previous' is neither 'next' nor a class name of the data; "
                                             r"expected one of: 3='3', 8='8'"):
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


def test_complex_features_are_refused_not_truncated(split: rh.PoisonedSplit) -> None:
    Xc, yc, Xp, yp, Xt, yt = split.flat()
    for position, name in ((0, "X_clean"), (2, "X_poison"), (4, "X_trigger")):
        args = [Xc, yc, Xp, yp, Xt, yt]
        args[position] = args[position] + 1e-3j
        with pytest.raises(RobustHPOError, match=rf"{name} must hold real numbers, got dtype complex128"):
            rh.backdoor_slope(LogisticRegression(), *args)


def test_zero_features_and_label_types(split: rh.PoisonedSplit) -> None:
    Xc, yc, Xp, yp, Xt, yt = split.flat()
    with pytest.raises(RobustHPOError, match=r"X_clean must have at least one feature, got shape \(\d+, 0\)"):
        rh.backdoor_slope(LogisticRegression(), Xc[:, :0], yc, Xp[:, :0], yp, Xt[:, :0], yt)
    with pytest.raises(RobustHPOError, match=r"y_clean must hold integer or string class labels, got \['int', 'str'\]"):
        rh.backdoor_slope(LogisticRegression(), Xc, [int(v) if i % 2 else str(v) for i, v in enumerate(yc)],
                          Xp, yp, Xt, yt)
    with pytest.raises(RobustHPOError, match=r"y_poison has labels \[3, 8\] outside the training classes "
                                             r"\['3', '8'\] \(those of y_clean\)"):
        rh.backdoor_slope(LogisticRegression(), Xc, yc.astype(str), Xp, yp, Xt, yt)
    # object arrays of integers, and consistent string labels, are class labels
    as_objects = rh.backdoor_slope(LogisticRegression(), Xc, yc.astype(object), Xp, yp.astype(object), Xt, yt)
    as_strings = rh.backdoor_slope(LogisticRegression(), Xc, yc.astype(str), Xp, yp.astype(str), Xt, yt.astype(str))
    reference = rh.backdoor_slope(LogisticRegression(), Xc, yc, Xp, yp, Xt, yt)
    assert as_objects.derivative == pytest.approx(reference.derivative, rel=1e-9)
    assert as_strings.derivative == pytest.approx(reference.derivative, rel=1e-9)


@pytest.mark.parametrize("root", [5, 1.5, ["data"], b"data"])
def test_load_dataset_root_must_be_a_path(root: Any) -> None:
    with pytest.raises(RobustHPOError, match=r"root must be a folder path \(str or os.PathLike\)"):
        rh.load_dataset("mnist", root=root)
