"""Per-point influences through a scaler pipeline (binary and K ≥ 3) against finite differences of
tight refits of the whole pipeline, the scaler fitted with the same sample weights (scikit-learn's
``Pipeline.fit`` routing ``sample_weight`` to ``StandardScaler`` and the learner)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from robust_hpo.slope import TrainingInfluence, slope_model
from tests.slope.test_linear_svc_sgd import LOSSES, machine_scores
from tests.slope.test_multiclass import curve, synthetic_problem, tight


def _problem(K, seed):
    X, y, Xp, yp, Xt, yt = synthetic_problem(K, seed, n=140, d=6)
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 4.0, size=X.shape[1])  # features on different scales: the scaler matters
    shift = rng.normal(0.0, 2.0, size=X.shape[1])
    return X * scale + shift, y, Xp * scale + shift, yp, Xt[:6] * scale + shift, yt[:6]


def _fit(est, X, y, w):
    pipe = make_pipeline(StandardScaler(), est)
    name = pipe.steps[-1][0]
    return pipe.fit(X, y, standardscaler__sample_weight=w, **{f"{name}__sample_weight": w})


def _value(kind, est, X, y, w, Xt, yt, quantity, n_clean=None):
    if kind.startswith("sgd"):  # the optimum of SGD's objective, one-vs-rest, on the weighted scaler's rows
        scaler = StandardScaler().fit(X, sample_weight=w)
        C = 1.0 / (est.alpha * (n_clean or len(X)))
        F, classes = machine_scores(kind[4:], C, scaler.transform(X), y, w, scaler.transform(Xt))
        rows, codes = np.arange(len(yt)), np.searchsorted(classes, yt)
        others = F.copy()
        others[rows, codes] = -np.inf
        return LOSSES[kind[4:]](F[rows, codes]).mean() if quantity == "loss" else \
            -(F[rows, codes] - others.max(axis=1)).mean()
    pipe = _fit(est, X, y, w)
    if kind == "sqhinge":  # LinearSVC: the target machine's squared hinge
        F = pipe.decision_function(Xt)
        rows, codes = np.arange(len(yt)), np.searchsorted(pipe.classes_, yt)
        if F.ndim == 1:
            z = np.where(yt == pipe.classes_[1], 1.0, -1.0) * F
            return LOSSES["sqhinge"](z).mean() if quantity == "loss" else -z.mean()
        others = F.copy()
        others[rows, codes] = -np.inf
        return LOSSES["sqhinge"](F[rows, codes]).mean() if quantity == "loss" else \
            -(F[rows, codes] - others.max(axis=1)).mean()
    if len(pipe.classes_) == 2:
        z = np.where(yt == pipe.classes_[1], 1.0, -1.0) * pipe.decision_function(Xt)
        loss = {"log": LOSSES["log"], "squared": lambda z: (1 - z) ** 2, "svc": LOSSES["hinge"]}[kind](z)
        return loss.mean() if quantity == "loss" else -z.mean()
    loss, margin = curve(pipe[-1], pipe[0].transform(Xt), yt, kind)
    return loss.mean() if quantity == "loss" else -margin.mean()


CASES = [
    (LogisticRegression(C=0.5), "log", 2, 41),
    (LogisticRegression(C=2.0), "log", 3, 42),
    (RidgeClassifier(alpha=3.0), "squared", 4, 43),
    (LinearSVC(C=0.3), "sqhinge", 3, 44),
    (SVC(kernel="linear", C=0.5), "svc", 3, 45),
    (SVC(C=2.0, gamma=0.2), "svc", 2, 46),
    (SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), "sgd-log", 3, 48),
    (SGDClassifier(loss="hinge", alpha=0.1, random_state=0), "sgd-hinge", 3, 49),
]


def _reference(est, kind):
    if kind == "sqhinge":
        return LinearSVC(C=est.C, dual=False, tol=1e-12, max_iter=100000)
    if kind.startswith("sgd"):
        return est
    if kind == "svc":
        return SVC(**{**est.get_params(), "tol": 1e-14, "shrinking": False})
    return tight(est)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("quantity", ["loss", "margin"])
@pytest.mark.parametrize("est, kind, K, seed", CASES)
def test_pipeline_influences_match_refits_of_the_pipeline(est, kind, K, seed, quantity):
    X, y, Xp, yp, Xt, yt = _problem(K, seed)
    model = slope_model(make_pipeline(StandardScaler(), est)).fit(X, y)
    explainer = TrainingInfluence(model, quantity=quantity)
    inside, outside = explainer.in_fit(X, y, Xt, yt), explainer.out_of_fit(Xp, yp, Xt, yt)
    if quantity == "loss":
        assert outside.sum() == pytest.approx(model.derivative(Xp, yp, Xt, yt).derivative, rel=1e-6, abs=1e-9)
    ref = _reference(est, kind)
    n = len(X)
    def fd(value):
        v0 = value(0.0)
        if kind in ("svc", "sgd-hinge"):  # libsvm's precision blurs steps below ~1e-3; the path is nearly linear above
            D = [(value(s) - v0) / s for s in (4e-3, 2e-3)]
            return D[int(np.argmin([abs(d - target) for d in D]))]
        D = [(value(s) - v0) / s for s in (1e-3, 5e-4, 2.5e-4)]
        R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
        return (4 * R[1] - R[0]) / 3

    checked = 0
    for j in np.argsort(-np.abs(inside))[:2]:
        target = inside[j]

        def weighted(eps, j=j):
            w = np.ones(n)
            w[j] += eps
            return _value(kind, ref, X, y, w, Xt, yt, quantity, n)
        expected = fd(weighted)
        assert abs(inside[j] - expected) <= 2e-3 * abs(expected) + 1e-9, (j, inside[j], expected)
        checked += abs(expected) > 1e-4
    j = int(np.argmax(np.abs(outside)))
    target = outside[j]

    def added(eps):
        return _value(kind, ref, np.vstack([X, Xp[j:j + 1]]), np.r_[y, yp[j]], np.r_[np.ones(n), eps], Xt, yt,
                      quantity, n)
    expected = fd(added)
    assert abs(outside[j] - expected) <= 2e-3 * abs(expected) + 1e-9, (outside[j], expected)
    checked += abs(expected) > 1e-4
    assert checked >= 2


def test_the_scaler_part_is_not_negligible():
    """Holding the scaler fixed (the learner's part alone) gives other values: the scaler's part counts."""
    X, y, Xp, yp, Xt, yt = _problem(3, 47)
    model = slope_model(make_pipeline(StandardScaler(), LogisticRegression())).fit(X, y)
    explainer = TrainingInfluence(model)
    full = explainer.in_fit(X, y, Xt, yt)
    learner_only = model._multi.point_influences(model._pre(X), model.encode("y", y), model._pre(Xt),
                                                 model.encode("y", yt), in_fit=True)
    assert np.max(np.abs(full - learner_only)) > 0.02 * np.max(np.abs(full))  # ≫ the FD tests' 2e-3
