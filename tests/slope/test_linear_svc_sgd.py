"""LinearSVC and SGDClassifier: exact slopes at the optimum of their objectives, against refits.

References, independent of robust_hpo: LinearSVC refits with liblinear's primal Newton solver
(``dual=False``) at a tight tolerance; SGD's objective ``½α‖w‖² + (1/n) Σ s_i ℓ_i`` (n clean rows)
solved per one-vs-rest machine by LogisticRegression(C = 1/(αn)) for log_loss, libsvm's
SVC(kernel="linear", C = 1/(αn)) for hinge, and scipy's L-BFGS on the written-out objective for
modified_huber. Losses recomputed here. The estimators under test run at their defaults (SGD stops
early: the slope is that of the optimum).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import SVC, LinearSVC

from robust_hpo.slope import backdoor_slope, slope_model
from tests.slope.test_convex import _rel_err
from tests.slope.test_multiclass import digits_problem, synthetic_problem
from tests.slope.test_pipelines import binary_problem


def _huber(z):
    return np.where(z >= -1.0, np.maximum(0.0, 1.0 - z) ** 2, -4.0 * z)


def _huber_fit(X, y_pm, w, C):
    """argmin ½‖v‖² + C Σ w_i huber(y_i (x_i v + b)) by L-BFGS at a tight tolerance."""
    def objective(theta):
        v, b = theta[:-1], theta[-1]
        z = y_pm * (X @ v + b)
        g = C * w * y_pm * np.where(z >= -1.0, -2.0 * np.maximum(0.0, 1.0 - z), -4.0)
        return 0.5 * v @ v + C * np.sum(w * _huber(z)), np.append(v + X.T @ g, g.sum())
    theta = minimize(objective, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-13, "ftol": 0.0, "maxiter": 20000}).x
    return theta[:-1], theta[-1]


def machine_scores(kind, C, X, y, w, Xt):
    """Scores of every one-vs-rest machine (one column for two classes) on Xt."""
    classes = np.unique(y)
    positives = [classes[1]] if classes.size == 2 else list(classes)
    out = []
    for c in positives:
        y_pm = np.where(y == c, 1.0, -1.0)
        if kind == "log":
            est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000)
            out.append(est.fit(X, y_pm, sample_weight=w).decision_function(Xt))
        elif kind == "hinge":
            est = SVC(kernel="linear", C=C, tol=1e-13)
            out.append(est.fit(X, y_pm, sample_weight=w).decision_function(Xt))
        elif kind == "huber":
            v, b = _huber_fit(X, y_pm, w, C)
            out.append(Xt @ v + b)
        else:  # LinearSVC: liblinear's primal solver, tight
            est = LinearSVC(C=C, dual=False, tol=1e-12, max_iter=100000)
            out.append(est.fit(X, y_pm, sample_weight=w).decision_function(Xt))
    return np.column_stack(out), classes


LOSSES = {
    "log": lambda z: np.logaddexp(0.0, -z),
    "hinge": lambda z: np.maximum(0.0, 1.0 - z),
    "huber": _huber,
    "sqhinge": lambda z: np.maximum(0.0, 1.0 - z) ** 2,
}


def curve_loss(kind, C, problem, beta):
    X, y, Xp, yp, Xt, yt = problem
    Xa, ya = np.vstack([X, Xp]), np.concatenate([y, yp])
    w = np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)])
    F, classes = machine_scores(kind, C, Xa, ya, w, Xt)
    if classes.size == 2:
        z = np.where(yt == classes[1], 1.0, -1.0) * F[:, 0]
    else:
        z = F[np.arange(len(yt)), np.searchsorted(classes, yt)]  # the target's machine, target positive
    return LOSSES[kind](z).mean()


def fd(kind, C, problem, h):
    L0 = curve_loss(kind, C, problem, 0.0)
    if kind == "hinge":
        D = [(curve_loss(kind, C, problem, s) - L0) / s for s in (h, h / 2)]
        assert _rel_err(D[0], D[1]) <= 1e-3
        return D[1]
    D = [(curve_loss(kind, C, problem, s) - L0) / s for s in (h, h / 2, h / 4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R[1] - R[0]) / 3


CASES = [
    (LinearSVC(), "sqhinge", ("binary", 3), 1e-3),
    (LinearSVC(C=0.1, intercept_scaling=2.0), "sqhinge", ("synthetic", 3, 4), 1e-3),
    (LinearSVC(C=0.3), "sqhinge", ("digits", 4, 2), 1e-3),
    (SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0), "log", ("binary", 5), 1e-2),
    (SGDClassifier(loss="log_loss", alpha=1e-2, random_state=0), "log", ("synthetic", 4, 6), 1e-2),
    (SGDClassifier(loss="modified_huber", alpha=1e-3, random_state=0), "huber", ("binary", 7), 1e-3),
    (SGDClassifier(loss="modified_huber", alpha=1e-2, random_state=0), "huber", ("synthetic", 3, 8), 1e-3),
    (SGDClassifier(loss="hinge", alpha=1e-2, random_state=0), "hinge", ("binary", 4), 5e-4),
    (SGDClassifier(loss="hinge", alpha=1e-2, random_state=0), "hinge", ("synthetic", 3, 9), 5e-4),
]


def _problem(spec):
    if spec[0] == "binary":
        return binary_problem(spec[1])
    return synthetic_problem(spec[1], spec[2]) if spec[0] == "synthetic" else digits_problem(spec[1], spec[2])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, kind, spec, h", CASES)
def test_linear_svc_and_sgd_match_refits_of_their_objectives(estimator, kind, spec, h):
    problem = _problem(spec)
    result = backdoor_slope(estimator, *problem)
    C = estimator.C if kind == "sqhinge" else 1.0 / (estimator.alpha * len(problem[0]))
    assert result.exact and abs(result.derivative) > 1e-3
    expected = fd(kind, C, problem, h) if not (kind == "sqhinge" and estimator.intercept_scaling != 1.0) else \
        _fd_scaled(estimator, problem, h)
    assert _rel_err(result.derivative, expected) <= 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, kind, spec, h", [CASES[2], CASES[4]])
def test_one_vs_rest_polish_machine_by_machine_matches_refits(estimator, kind, spec, h, monkeypatch):
    """Small designs polish all one-vs-rest machines together; large ones (here forced) one by one:
    both against the same refits."""
    from robust_hpo.slope import _ovr

    problem = _problem(spec)
    C = estimator.C if kind == "sqhinge" else 1.0 / (estimator.alpha * len(problem[0]))
    expected = fd(kind, C, problem, h)
    batched = backdoor_slope(estimator, *problem)
    assert batched.details["method"] == "ovr-primal-cholesky-batched"
    monkeypatch.setattr(_ovr, "primal_is_cheap", lambda n, d: False)
    single = backdoor_slope(estimator, *problem)
    assert single.details["method"] != "ovr-primal-cholesky-batched"
    for result in (batched, single):
        assert result.exact and abs(result.derivative) > 1e-3
        assert _rel_err(result.derivative, expected) <= 1e-3


def _fd_scaled(estimator, problem, h):
    """LinearSVC with intercept_scaling: refits of the multi-class LinearSVC itself (primal, tight)."""
    X, y, Xp, yp, Xt, yt = problem
    tight = LinearSVC(C=estimator.C, intercept_scaling=estimator.intercept_scaling, dual=False, tol=1e-12,
                      max_iter=100000)

    def L(beta):
        w = np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)])
        F = tight.fit(np.vstack([X, Xp]), np.concatenate([y, yp]), sample_weight=w).decision_function(Xt)
        z = F[np.arange(len(yt)), np.searchsorted(tight.classes_, yt)]
        return LOSSES["sqhinge"](z).mean()

    L0 = L(0.0)
    D = [(L(s) - L0) / s for s in (h, h / 2, h / 4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R[1] - R[0]) / 3


def test_sgd_is_polished_to_the_optimum_and_predicts_with_it():
    X, y, Xp, yp, Xt, yt = synthetic_problem(3, 10)
    est = SGDClassifier(loss="log_loss", alpha=1e-2, max_iter=5, tol=None, random_state=0)
    model = slope_model(est).fit(X, y)
    C = 1.0 / (est.alpha * len(X))
    F, _ = machine_scores("log", C, X, y, np.ones(len(X)), Xt)
    assert np.allclose(model.estimator_.decision_function(Xt), F, atol=1e-5)
    assert np.array_equal(model.predict(Xt), model.classes_[np.argmax(F, axis=1)])


@pytest.mark.parametrize("estimator, match", [
    (SGDClassifier(loss="perceptron"), r"SGDClassifier\(loss='perceptron'\) is not supported"),
    (SGDClassifier(penalty="l1"), "penalty='l2'"),
    (LinearSVC(loss="hinge"), "loss='squared_hinge'"),
    (LinearSVC(multi_class="crammer_singer"), "crammer_singer"),
])
def test_unsupported_losses_are_named(estimator, match):
    with pytest.raises(ValueError, match=match):
        backdoor_slope(estimator, *binary_problem(1))


def _weighted_machine_loss(kind, C, problem, beta, spec, s):
    """The curve loss of one-vs-rest refits at β with explicit weights s κ(β) (κ from the β-weighted
    class sizes for "balanced"; every machine weighs every row by its class's κ)."""
    from tests.slope.test_weights import weights_at

    X, y, Xp, yp, Xt, yt = problem
    w = weights_at(beta, y, yp, spec, s)
    F, classes = machine_scores(kind, C, np.vstack([X, Xp]), np.concatenate([y, yp]), w, Xt)
    if classes.size == 2:
        z = np.where(yt == classes[1], 1.0, -1.0) * F[:, 0]
    else:
        z = F[np.arange(len(yt)), np.searchsorted(classes, yt)]
    return LOSSES[kind](z).mean()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, kind, spec", [
    (LinearSVC(C=0.3, class_weight="balanced"), "sqhinge", ("synthetic", 3, 21)),
    (LinearSVC(C=0.3, class_weight={3: 2.0}), "sqhinge", ("binary", 22)),
    (SGDClassifier(loss="log_loss", alpha=1e-2, class_weight="balanced", random_state=0), "log", ("synthetic", 4, 23)),
    (SGDClassifier(loss="hinge", alpha=1e-2, class_weight="balanced", random_state=0), "hinge", ("binary", 3)),
])
def test_weighted_linear_svc_and_sgd_match_weighted_refits(estimator, kind, spec):
    problem = _problem(spec)
    if spec[0] != "binary":  # an unbalanced poison: the balanced weights move
        problem = problem[:3] + (np.where(np.arange(len(problem[3])) % 3 == 0, 0, 1),) + problem[4:]
    s = np.random.default_rng(24).uniform(0.2, 3.0, size=len(problem[0]))
    result = backdoor_slope(estimator, *problem, sample_weight=s)
    C = estimator.C if kind == "sqhinge" else 1.0 / (estimator.alpha * len(problem[0]))
    L0 = _weighted_machine_loss(kind, C, problem, 0.0, estimator.class_weight, s)
    steps = (5e-4, 2.5e-4) if kind == "hinge" else (1e-3, 5e-4, 2.5e-4)
    D = [(_weighted_machine_loss(kind, C, problem, h, estimator.class_weight, s) - L0) / h for h in steps]
    if kind == "hinge":
        assert _rel_err(D[0], D[1]) <= 1e-3
        expected = D[1]
    else:
        R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
        expected = (4 * R[1] - R[0]) / 3
    assert result.exact and abs(result.derivative) > 1e-3
    assert _rel_err(result.derivative, expected) <= 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", [None, ("REFRESH_ITERATIONS", 0), ("SOLVE_RTOL", 0.0)])
def test_smooth_one_vs_rest_conjugate_gradients_match_refits(setting, monkeypatch):
    """SGD log_loss machines are polished and differentiated by conjugate gradients on their exact
    Hessians, single-precision factors preconditioning: at the defaults, with the factors formed
    before every solve, and with every derivative solve falling back to a double-precision factor
    (an unreachable tolerance), on a problem
    the defaults were not tuned on (digits, 5 classes, target 3) — directly (all machines in one
    iteration) and with balanced class weights (machine by machine: their weights move with β)."""
    from robust_hpo.slope import _ovr_batch

    if setting is not None:
        monkeypatch.setattr(_ovr_batch, *setting)
    problem = digits_problem(5, 31, target=3)
    estimator = SGDClassifier(loss="log_loss", alpha=3e-3, random_state=1)
    C = 1.0 / (estimator.alpha * len(problem[0]))
    result = backdoor_slope(estimator, *problem)
    assert result.details["method"] == "ovr-primal-cholesky-batched" and result.exact
    assert _rel_err(result.derivative, fd("log", C, problem, 1e-2)) <= 1e-3
    weighted = backdoor_slope(SGDClassifier(loss="log_loss", alpha=3e-3, class_weight="balanced", random_state=1),
                              *problem)
    assert weighted.details["method"] == "ovr-primal-cholesky-batched" and weighted.exact
    s = np.ones(len(problem[0]))
    L0 = _weighted_machine_loss("log", C, problem, 0.0, "balanced", s)
    D = [(_weighted_machine_loss("log", C, problem, h, "balanced", s) - L0) / h for h in (1e-3, 5e-4, 2.5e-4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    assert _rel_err(weighted.derivative, (4 * R[1] - R[0]) / 3) <= 1e-3
    assert _rel_err(weighted.derivative, result.derivative) > 1e-3  # the moving class weights matter here


def test_sgd_hinge_multiclass_with_early_stopping_reaches_the_same_optimum():
    """K ≥ 3 SGD hinge: SGD's own fit only gives the layout (one row per class), so its settings that
    need many rows (early_stopping's validation split) must not break it; the optimum does not depend on them."""
    from sklearn.datasets import make_blobs
    from sklearn.linear_model import SGDClassifier

    X, y = make_blobs(240, n_features=4, centers=3, cluster_std=2.5, random_state=7)
    plain = slope_model(SGDClassifier(loss="hinge", alpha=1e-2, random_state=0)).fit(X, y)
    early = slope_model(SGDClassifier(loss="hinge", alpha=1e-2, random_state=0, early_stopping=True)).fit(X, y)
    assert early.estimator_.get_params()["early_stopping"] is True
    np.testing.assert_allclose(early.estimator_.coef_, plain.estimator_.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(early.estimator_.intercept_, plain.estimator_.intercept_, rtol=1e-9, atol=1e-12)
