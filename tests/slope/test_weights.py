"""class_weight and sample_weight: exact against refits with the weights computed here.

The reference refits pass ``sample_weight = s_i κ_{c_i}(β)`` explicitly (class_weight=None), κ from
the β-weighted class sizes for "balanced" (the slope's definition, docs/slope.md) — for
LogisticRegression also scikit-learn's own ``class_weight="balanced"`` with sample weights, which
is the same definition.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.slope import backdoor_slope
from tests.slope.test_convex import _rel_err
from tests.slope.test_multiclass import curve, synthetic_problem
from tests.slope.test_pipelines import binary_problem


def weights_at(beta, y, yp, spec, s):
    """s κ(β) for clean ∪ poison rows (κ from the β-weighted class sizes)."""
    classes = np.unique(y)
    allw = np.concatenate([s, np.full(len(yp), beta)])
    ally = np.concatenate([y, yp])
    if spec is None:
        kappa = {c: 1.0 for c in classes}
    elif spec == "balanced":
        sizes = {c: allw[ally == c].sum() for c in classes}
        kappa = {c: allw.sum() / (len(classes) * sizes[c]) for c in classes}
    else:
        kappa = {c: spec.get(c, 1.0) for c in classes}
    return allw * np.array([kappa[c] for c in ally])


def loss(est, X, y, kind):
    if len(est.classes_) > 2:
        return curve(est, X, y, kind)[0].mean()
    f = est.decision_function(X)
    t = np.where(y == est.classes_[1], 1.0, -1.0)
    if kind == "log":
        return float(np.mean(np.logaddexp(0.0, -t * f)))
    if kind == "squared":
        return float(np.mean((t - f) ** 2))
    return float(np.mean(np.maximum(0.0, 1.0 - t * f)))


def reference(tight, problem, spec, s, kind, steps):
    X, y, Xp, yp, Xt, yt = problem
    Xa, ya = np.vstack([X, Xp]), np.concatenate([y, yp])

    def L(beta):
        w = weights_at(beta, y, yp, spec, s)
        return loss(clone(tight).fit(Xa, ya, sample_weight=w), Xt, yt, kind)

    L0 = L(0.0)
    D = [(L(h) - L0) / h for h in steps]
    if kind == "svc" or kind == "hinge":
        assert _rel_err(D[0], D[1]) <= 1e-3
        return D[1]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R[1] - R[0]) / 3


def _sample(n, seed):
    return np.random.default_rng(seed).uniform(0.2, 3.0, size=n)


CASES = [
    (LogisticRegression(class_weight="balanced"), "binary", "log"),
    (LogisticRegression(C=3.0, class_weight={3: 2.0}), "binary", "log"),
    (LogisticRegression(solver="liblinear", class_weight="balanced"), "binary", "log"),
    (RidgeClassifier(alpha=2.0, class_weight="balanced"), "binary", "squared"),
    (LogisticRegression(class_weight="balanced"), 4, "log"),
    (RidgeClassifier(class_weight="balanced"), 3, "squared"),
    (LogisticRegression(), 3, "log"),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("with_sample_weight", [False, True])
@pytest.mark.parametrize("estimator, classes, kind", CASES)
def test_weighted_smooth_learners_match_weighted_refits(estimator, classes, kind, with_sample_weight):
    problem = binary_problem(11) if classes == "binary" else synthetic_problem(classes, 12)
    if classes != "binary":  # an unbalanced poison: the balanced weights move
        problem = problem[:3] + (np.where(np.arange(len(problem[3])) % 3 == 0, 0, 1),) + problem[4:]
    n = len(problem[0])
    s = _sample(n, 13) if with_sample_weight else np.ones(n)
    result = backdoor_slope(estimator, *problem, sample_weight=s if with_sample_weight else None)
    spec = estimator.class_weight
    if isinstance(estimator, LogisticRegression):
        solver = "liblinear" if estimator.solver == "liblinear" else "newton-cholesky"
        tight = clone(estimator).set_params(solver=solver, tol=1e-14, max_iter=1000, class_weight=None)
    else:
        tight = clone(estimator).set_params(solver="cholesky", class_weight=None)
    expected = reference(tight, problem, spec, s, kind, (1e-3, 5e-4, 2.5e-4))
    assert _rel_err(result.derivative, expected) <= 1e-3
    if spec == "balanced":  # the weights' motion matters
        frozen = reference(tight, problem, None, weights_at(0.0, problem[1], problem[3][:0], spec, s),
                           kind, (1e-3, 5e-4, 2.5e-4))
        assert _rel_err(frozen, expected) > 1e-3


def test_sklearn_balanced_logistic_is_the_same_definition():
    X, y, Xp, yp, Xt, yt = binary_problem(14)
    s = _sample(len(X), 15)
    result = backdoor_slope(LogisticRegression(class_weight="balanced"), X, y, Xp, yp, Xt, yt, sample_weight=s)
    tight = LogisticRegression(class_weight="balanced", solver="newton-cholesky", tol=1e-14)

    def L(beta):
        w = np.concatenate([s, np.full(len(yp), beta)])
        return loss(clone(tight).fit(np.vstack([X, Xp]), np.concatenate([y, yp]), sample_weight=w), Xt, yt, "log")

    L0 = L(0.0)
    D = [(L(h) - L0) / h for h in (1e-3, 5e-4, 2.5e-4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    assert _rel_err(result.derivative, (4 * R[1] - R[0]) / 3) <= 1e-3


def test_bad_sample_weight_is_named():
    problem = binary_problem(16)
    with pytest.raises(ValueError, match="sample_weight must be 1-D with one weight per row of X_clean"):
        backdoor_slope(LogisticRegression(), *problem, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        backdoor_slope(LogisticRegression(), *problem, sample_weight=-np.ones(len(problem[0])))
    with pytest.raises(ValueError, match=r"class_weight names classes \[7\]"):
        backdoor_slope(LogisticRegression(class_weight={7: 2.0}), *problem)


SVC_CASES = [
    (SVC(kernel="linear", C=0.3, class_weight="balanced"), "binary", 4),
    (SVC(C=3.0, gamma=0.3, class_weight={3: 2.0}), "binary", 11),
    (SVC(C=3.0, gamma=0.3, class_weight="balanced"), 3, 12),
]


@pytest.mark.parametrize("with_sample_weight", [False, True])
@pytest.mark.parametrize("estimator, classes, seed", SVC_CASES)
def test_weighted_svc_matches_weighted_refits(estimator, classes, seed, with_sample_weight):
    problem = binary_problem(seed) if classes == "binary" else synthetic_problem(classes, seed)
    if classes != "binary":
        problem = problem[:3] + (np.where(np.arange(len(problem[3])) % 3 == 0, 0, 1),) + problem[4:]
    n = len(problem[0])
    s = _sample(n, 17) if with_sample_weight else np.ones(n)
    result = backdoor_slope(estimator, *problem, sample_weight=s if with_sample_weight else None)
    tight = clone(estimator).set_params(tol=1e-13, class_weight=None)
    kind = "hinge" if classes == "binary" else "svc"
    expected = reference(tight, problem, estimator.class_weight, s, kind, (5e-4, 2.5e-4))
    assert result.exact
    assert _rel_err(result.derivative, expected) <= 1e-3
