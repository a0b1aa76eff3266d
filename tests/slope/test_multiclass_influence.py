"""Per-training-point influences for K ≥ 3 classes against finite differences of tight refits.

``TrainingInfluence`` on a multi-class model: the influence of point j is the derivative of the mean
multi-class curve loss over test points (the slope's conventions, docs/slope.md) — or of the mean
negative target margin — w.r.t. point j's sample weight. References, independent of robust_hpo:
scikit-learn / scipy refits of the same objective with point j weighted 1 + ε (or a poison point
added with weight ε), losses and margins recomputed from the refits' scores (helpers of
``test_multiclass`` and ``test_linear_svc_sgd``). Problems and seeds not used elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.svm import SVC, LinearSVC

from robust_hpo.slope import TrainingInfluence, slope_model
from tests.slope.test_linear_svc_sgd import LOSSES, machine_scores
from tests.slope.test_multiclass import curve, digits_problem, synthetic_problem, tight

ONE_VS_REST = {"sqhinge", "sgd-log", "huber", "sgd-hinge"}
PIECEWISE_LINEAR = {"svc", "sgd-hinge"}


def _quantity(kind, est, n_clean, X, y, w, Xt, yt, quantity):
    """The mean curve loss (or mean negative target margin) of a tight refit with weights ``w``."""
    if kind in ONE_VS_REST:
        C = est.C if kind == "sqhinge" else 1.0 / (est.alpha * n_clean)
        machine = {"sqhinge": "sqhinge", "sgd-log": "log", "huber": "huber", "sgd-hinge": "hinge"}[kind]
        F, classes = machine_scores(machine, C, X, y, w, Xt)
        rows, codes = np.arange(len(yt)), np.searchsorted(classes, yt)
        if quantity == "loss":
            return LOSSES[machine](F[rows, codes]).mean()
        others = F.copy()
        others[rows, codes] = -np.inf
        return -(F[rows, codes] - others.max(axis=1)).mean()
    ref = tight(est)
    if kind == "svc" and ref.gamma == "scale":
        ref.set_params(gamma=1.0 / (n_clean and X[:n_clean].shape[1] * X[:n_clean].var()))
    loss, margin = curve(ref.fit(X, y, sample_weight=w), Xt, yt, kind)
    return loss.mean() if quantity == "loss" else -margin.mean()


def _fd(kind, value, h):
    """Right derivative of ``value(ε)``: two steps on one linear piece (hinge), else Richardson."""
    v0 = value(0.0)
    if kind in PIECEWISE_LINEAR:
        D = [(value(s) - v0) / s for s in (h, h / 2)]
        assert abs(D[0] - D[1]) <= 1e-3 * abs(D[1]) + 1e-9
        return D[1]
    D = [(value(s) - v0) / s for s in (h, h / 2, h / 4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R[1] - R[0]) / 3


CASES = [
    # (estimator, kind, (source, K, seed), FD step)
    (LogisticRegression(), "log", ("digits", 3, 31), 1e-2),
    (LogisticRegression(C=0.3), "log", ("synthetic", 4, 32), 1e-2),
    (RidgeClassifier(), "squared", ("digits", 4, 33), 1e-2),
    (SVC(kernel="linear", C=0.5), "svc", ("synthetic", 3, 34), 1e-4),
    (SVC(C=0.3), "svc", ("digits", 3, 35), 1e-4),
    (LinearSVC(C=0.2), "sqhinge", ("synthetic", 3, 36), 1e-3),
    (SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), "sgd-log", ("synthetic", 4, 37), 1e-2),
    (SGDClassifier(loss="modified_huber", alpha=1e-2, random_state=0), "huber", ("synthetic", 3, 38), 1e-3),
    (SGDClassifier(loss="hinge", alpha=0.1, random_state=0), "sgd-hinge", ("synthetic", 3, 39), 1e-4),
]


def _problem(spec):
    source, K, seed = spec
    return digits_problem(K, seed, n=150) if source == "digits" else synthetic_problem(K, seed, n=150)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("quantity", ["loss", "margin"])
@pytest.mark.parametrize("estimator, kind, spec, h", CASES)
def test_multiclass_influences_match_refits(estimator, kind, spec, h, quantity):
    X, y, Xp, yp, Xt, yt = _problem(spec)
    Xt, yt = Xt[:6], yt[:6]
    model = slope_model(estimator).fit(X, y)
    assert model.n_classes_ >= 3
    explainer = TrainingInfluence(model, quantity=quantity)
    inside = explainer.in_fit(X, y, Xt, yt)
    outside = explainer.out_of_fit(Xp, yp, Xt, yt)
    assert inside.shape == (len(X),) and outside.shape == (len(Xp),)
    if quantity == "loss":  # the poison points' influences add up to the slope (the same derivative)
        assert outside.sum() == pytest.approx(model.derivative(Xp, yp, Xt, yt).derivative, rel=1e-6, abs=1e-9)
    n = len(X)
    checked = 0
    for j in np.argsort(-np.abs(inside))[:2]:
        def weighted(eps, j=j):
            w = np.ones(n)
            w[j] += eps
            return _quantity(kind, estimator, n, X, y, w, Xt, yt, quantity)
        expected = _fd(kind, weighted, h)
        assert abs(inside[j] - expected) <= 2e-3 * abs(expected) + 1e-9, (j, inside[j], expected)
        checked += abs(expected) > 1e-4
    j = int(np.argmax(np.abs(outside)))

    def added(eps):
        Xa, ya = np.vstack([X, Xp[j:j + 1]]), np.r_[y, yp[j]]
        return _quantity(kind, estimator, n, Xa, ya, np.r_[np.ones(n), eps], Xt, yt, quantity)
    expected = _fd(kind, added, h)
    assert abs(outside[j] - expected) <= 2e-3 * abs(expected) + 1e-9, (outside[j], expected)
    checked += abs(expected) > 1e-4
    assert checked >= 2, "non-trivial influences were checked"
