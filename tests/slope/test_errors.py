"""Bad input to the slope gets a ValueError naming the argument and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.slope import (
    DegenerateSolveError,
    LinearModelHessian,
    SingularHessianError,
    backdoor_slope,
    slope_model,
)
from robust_hpo.testing import make_backdoor_problem


@pytest.fixture
def problem():
    return make_backdoor_problem(0, n=80, d=5, m=10, n_trigger=20)


@pytest.mark.parametrize("position, name", [(0, "X_clean"), (2, "X_poison"), (4, "X_trigger")])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(problem, position, name, bad):
    args = list(problem)
    args[position] = args[position].copy()
    args[position][0, 0] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN or infinite"):
        backdoor_slope(LogisticRegression(), *args)


def test_nan_labels(problem):
    args = list(problem)
    args[1] = args[1].astype(float)
    args[1][0] = np.nan
    with pytest.raises(ValueError, match="y_clean contains NaN"):
        backdoor_slope(LogisticRegression(), *args)


def test_mismatched_rows(problem):
    args = list(problem)
    args[3] = args[3][:-1]
    with pytest.raises(ValueError, match="y_poison has 9 labels but X_poison has 10 rows"):
        backdoor_slope(LogisticRegression(), *args)


def test_mismatched_features(problem):
    args = list(problem)
    args[4] = args[4][:, :-1]
    with pytest.raises(ValueError, match="X_trigger has 4 features but X_clean has 5"):
        backdoor_slope(RidgeClassifier(), *args)


def test_one_dimensional_features(problem):
    args = list(problem)
    args[0] = args[0][:, 0]
    with pytest.raises(ValueError, match=r"X_clean must be a 2-D array"):
        backdoor_slope(LogisticRegression(), *args)


def test_single_class(problem):
    args = list(problem)
    args[1] = np.full_like(args[1], args[1][0])
    with pytest.raises(ValueError, match="y_clean must contain two classes"):
        backdoor_slope(LogisticRegression(), *args)


def test_multiclass_target_outside_the_training_classes_is_named(problem):
    args = list(problem)
    args[1] = args[1].copy()
    args[1][:5] = 99  # a third class
    assert backdoor_slope(SVC(), *args).details["n_classes"] == 3
    args[5] = np.full_like(args[5], 42)
    with pytest.raises(ValueError, match=r"y_trigger has labels \[42\] outside the training classes"):
        backdoor_slope(SVC(), *args)


def test_liblinear_logistic_with_three_classes_is_refused(problem):
    args = list(problem)
    args[1] = args[1].copy()
    args[1][:5] = 99
    with pytest.raises(ValueError, match="liblinear"):
        backdoor_slope(LogisticRegression(solver="liblinear"), *args)


def test_empty_poison(problem):
    args = list(problem)
    args[2], args[3] = args[2][:0], args[3][:0]
    with pytest.raises(ValueError, match="X_poison must not be empty"):
        backdoor_slope(LogisticRegression(), *args)


@pytest.mark.parametrize("position, name", [(3, "y_poison"), (5, "y_trigger")])
def test_labels_outside_training_classes(problem, position, name):
    args = list(problem)
    args[position] = args[position].copy()
    args[position][0] = 42
    with pytest.raises(ValueError, match=rf"{name} has labels \[42\] outside the training classes"):
        backdoor_slope(LogisticRegression(), *args)


@pytest.mark.parametrize("estimator, match", [
    (LogisticRegression(C=0.0), "LogisticRegression C must be a finite number > 0"),
    (LogisticRegression(C=-1.0), "LogisticRegression C must be a finite number > 0"),
    (LogisticRegression(C=np.inf), "LogisticRegression C must be a finite number > 0"),
    (SVC(C=0.0), "SVC C must be a finite number > 0"),
    (SVC(kernel="rbf", gamma=0.0), "SVC gamma must be a finite number > 0"),
    (SVC(kernel="rbf", gamma=-0.5), "SVC gamma must be a finite number > 0"),
    (SVC(kernel="rbf", gamma="wide"), "gamma must be a positive number, 'scale' or 'auto'"),
    (RidgeClassifier(alpha=0.0), "RidgeClassifier alpha must be a finite number > 0"),
    (SVC(kernel="poly"), "SVC kernel must be 'linear' or 'rbf'"),
    (LogisticRegression(l1_ratio=1.0, solver="saga"), "L2 penalty"),
    (LogisticRegression(class_weight="heavy"), r"class_weight=...\) must be None, .balanced. or a dict"),
])
def test_bad_hyperparameters(problem, estimator, match):
    with pytest.raises(ValueError, match=match):
        backdoor_slope(estimator, *problem)


def test_unsupported_estimator_names_what_is_supported(problem):
    from sklearn.linear_model import Perceptron

    with pytest.raises(ValueError, match=r"estimator must be one of LogisticRegression .*got Perceptron"):
        backdoor_slope(Perceptron(), *problem)


def test_svc_without_margin_support_vectors_refuses_the_slope_and_says_why():
    """Balanced noise at a tiny C: every support vector at the bound, the intercept set-valued."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = rng.permutation(np.repeat([0, 1], 30))
    Xp, yp = X[:5] + 1.0, 1 - y[:5]
    model = slope_model(SVC(kernel="linear", C=1e-4)).fit(X, y)
    assert model.details_["degenerate"] is True and model.details_["n_margin_sv"] == 0
    b_lo, b_hi = model.details_["intercept_interval"]
    assert b_lo < model.estimator_.intercept_[0] < b_hi  # libsvm's b: one of many optimal ones
    # every b in the interval satisfies the KKT conditions (checked here, independently)
    est = model.estimator_
    alpha = np.zeros(60)
    alpha[est.support_] = np.abs(est.dual_coef_.ravel())
    y_pm = np.where(y == 1, 1.0, -1.0)
    h = est.decision_function(X) - est.intercept_[0]
    for b in (b_lo + 1e-9, b_hi - 1e-9):
        yf = y_pm * (h + b)
        assert np.all(yf[alpha == 0] >= 1 - 1e-7) and np.all(yf[alpha > 0] <= 1 + 1e-7)
    with pytest.raises(DegenerateSolveError, match="no margin support vector.*set-valued"):
        model.derivative(Xp, yp, X, 1 - y)
    with pytest.raises(DegenerateSolveError, match="no margin support vector"):
        backdoor_slope(SVC(kernel="linear", C=1e-4), X, y, Xp, yp, X, 1 - y)


def test_inconsistent_kkt_system_is_a_clear_error():
    from robust_hpo.slope import SVCSlope

    model = SVCSlope(SVC(kernel="linear", C=1.0))
    model.details_ = {}
    model._kkt = np.zeros((2, 2))
    model._kkt_lu = None
    with pytest.raises(DegenerateSolveError, match="no consistent solution"):
        model._solve_kkt(np.array([1.0, 1.0]))


def test_singular_hessian_is_a_clear_error_and_damping_fixes_it():
    X = np.random.default_rng(0).normal(size=(10, 3))
    q = np.zeros(10)  # no curvature at all: the unpenalised intercept direction is flat
    with pytest.raises(SingularHessianError, match="pass damping > 0"):
        LinearModelHessian(X, q, r_w=1.0, r_b=0.0, fit_intercept=True, space="primal")
    with pytest.raises(SingularHessianError, match="damping > 0"):
        LinearModelHessian(X[:2], q[:2], r_w=1.0, r_b=0.0, fit_intercept=True, space="dual")
    with pytest.raises(SingularHessianError, match="damping > 0"):
        LinearModelHessian(X, q, r_w=1.0, r_b=0.0, fit_intercept=True, space="cg")
    H = LinearModelHessian(X, q, r_w=1.0, r_b=0.0, fit_intercept=True, space="primal", damping=1e-3)
    assert np.allclose(H.solve(np.ones(4)), [1 / 1.001] * 3 + [1 / 1e-3])


def test_negative_damping(problem):
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        backdoor_slope(LogisticRegression(), *problem, damping=-1.0)


def test_missing_arrays(problem):
    with pytest.raises(ValueError, match="missing arguments: X_trigger, y_trigger"):
        backdoor_slope(LogisticRegression(), *problem[:4])
