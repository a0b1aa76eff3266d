"""The exact slope against finite differences of β-weighted scikit-learn refits.

The reference is independent of robust_hpo's code: each θ*(β) is a plain scikit-learn fit with
``sample_weight`` (1 for clean points, β for poison), and the loss is recomputed here from
``decision_function``. Smooth learners use Richardson extrapolation of one-sided differences;
the SVM curve is piecewise linear in β, so a small step is exact up to the solver tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.slope import backdoor_slope, normalised_slope, slope_model
from robust_hpo.testing import make_backdoor_problem, right_derivative


def _pm(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.where(y == classes[1], 1.0, -1.0)


def _mean_loss(est, X, y, kind: str) -> float:
    f = est.decision_function(X)
    t = _pm(y, est.classes_)
    if kind == "log":
        return float(np.mean(np.log1p(np.exp(-t * f))))
    if kind == "squared":
        return float(np.mean((t - f) ** 2))
    return float(np.mean(np.maximum(0.0, 1.0 - t * f)))


def _refit_loss(estimator, problem, beta: float, kind: str) -> float:
    X, y, Xp, yp, Xt, yt = problem
    est = clone(estimator)
    if beta == 0:
        est.fit(X, y)
    else:
        est.fit(np.vstack([X, Xp]), np.concatenate([y, yp]),
                sample_weight=np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)]))
    return _mean_loss(est, Xt, yt, kind)


def _richardson(estimator, problem, kind: str, h: float) -> float:
    """Third-order one-sided estimate of dL/dβ at 0 from steps h, h/2, h/4."""
    return right_derivative(lambda beta: _refit_loss(estimator, problem, beta, kind), h)


def _rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


LOGISTIC_CASES = [
    # (estimator, problem shape (n, d), seed): primal and dual (d > n) spaces, three solvers
    (LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), (200, 6), 0),
    (LogisticRegression(C=20.0, solver="lbfgs", tol=1e-14, max_iter=20000), (200, 6), 1),
    (LogisticRegression(C=0.05, solver="newton-cholesky", tol=1e-14, max_iter=1000), (150, 10), 2),
    (LogisticRegression(C=0.3, solver="liblinear", intercept_scaling=2.0, tol=1e-14, max_iter=1000), (200, 6), 3),
    (LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), (60, 200), 4),
    (LogisticRegression(C=1.0, fit_intercept=False, solver="newton-cholesky", tol=1e-14), (60, 120), 5),
]


@pytest.mark.parametrize("estimator, shape, seed", LOGISTIC_CASES)
def test_logistic_matches_refits(estimator, shape, seed):
    problem = make_backdoor_problem(seed, n=shape[0], d=shape[1])
    result = backdoor_slope(estimator, *problem)
    h = 1e-4 if shape[1] > shape[0] else 1e-2
    assert _rel_err(result.derivative, _richardson(estimator, problem, "log", h)) <= 1e-3
    assert result.loss == "log-loss"


RIDGE_CASES = [
    (RidgeClassifier(alpha=0.7), (200, 6), 0),
    (RidgeClassifier(alpha=50.0), (200, 6), 1),
    (RidgeClassifier(alpha=0.01, solver="cholesky"), (150, 10), 2),
    (RidgeClassifier(alpha=0.3, solver="cholesky"), (60, 200), 3),
    (RidgeClassifier(alpha=0.3, fit_intercept=False), (60, 200), 4),
]


@pytest.mark.parametrize("estimator, shape, seed", RIDGE_CASES)
def test_ridge_matches_refits(estimator, shape, seed):
    problem = make_backdoor_problem(seed, n=shape[0], d=shape[1])
    result = backdoor_slope(estimator, *problem)
    h = 1e-4 if shape[1] > shape[0] else 1e-2
    assert _rel_err(result.derivative, _richardson(estimator, problem, "squared", h)) <= 1e-3


def _corner_trigger_problem(seed: int, n: int, d: int):
    """A backdoor problem whose last two features are 0 on every clean point (a black image corner)
    and carry the trigger on poison and triggered points."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(seed, n=n, d=d)
    X[:, -2:] = 0.0
    Xp[:, -2:], Xt[:, -2:] = 1.5, 1.5
    Xp[:, -1] = Xt[:, -1] = 2.0
    return X, y, Xp, yp, Xt, yt


@pytest.mark.parametrize("estimator, kind", [
    (LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), "log"),
    (RidgeClassifier(alpha=0.3), "squared"),
])
@pytest.mark.parametrize("shape", [(150, 8), (50, 120)])  # primal and dual space
def test_trigger_on_features_no_clean_point_uses(estimator, kind, shape):
    """Features that are zero on the clean set are solved apart from the factorisation (exactly)."""
    problem = _corner_trigger_problem(6, *shape)
    result = backdoor_slope(estimator, *problem)
    h = 1e-4  # the trigger weights feel only the regulariser: the curve bends fast, small steps
    assert _rel_err(result.derivative, _richardson(estimator, problem, kind, h)) <= 1e-3


@pytest.mark.parametrize("space", ["primal", "dual", "cg"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_hessian_solve_with_untouched_features_matches_a_dense_solve(space, fit_intercept):
    from robust_hpo.slope import GramCache, LinearModelHessian

    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 12))
    X[:, [0, 5, 11]] = 0.0
    q = rng.uniform(0.1, 1.0, size=30)
    r_w, r_b, damping = 0.7, 0.0, 1e-3
    Z = np.hstack([X, np.ones((30, 1))]) if fit_intercept else X
    r = np.r_[np.full(12, r_w), [r_b]] if fit_intercept else np.full(12, r_w)
    H = np.diag(r + damping) + (Z.T * q) @ Z
    v = rng.normal(size=Z.shape[1])
    for cache in (None, GramCache()):
        got = LinearModelHessian(X, q, r_w=r_w, r_b=r_b, fit_intercept=fit_intercept, space=space,
                                 damping=damping, cache=cache).solve(v)
        assert np.allclose(got, np.linalg.solve(H, v), rtol=1e-8, atol=1e-10)


SVC_CASES = [
    (SVC(kernel="linear", C=0.05, tol=1e-11), (100, 30), 0),
    (SVC(kernel="linear", C=1.0, tol=1e-11), (100, 30), 1),
    (SVC(kernel="linear", C=0.5, tol=1e-11), (60, 200), 2),
    (SVC(kernel="rbf", C=10.0, gamma=0.3, tol=1e-11), (200, 5), 3),
    (SVC(kernel="rbf", C=1.0, gamma=0.05, tol=1e-11), (200, 8), 4),
    (SVC(kernel="rbf", C=100.0, gamma=1.0, tol=1e-11), (150, 4), 5),
]


@pytest.mark.parametrize("estimator, shape, seed", SVC_CASES)
def test_svc_matches_refits(estimator, shape, seed):
    problem = make_backdoor_problem(seed, n=shape[0], d=shape[1])
    result = backdoor_slope(estimator, *problem)
    assert result.details["n_margin_sv"] > 0
    # hinge loss is piecewise linear in β: two small steps agree, and with the exact slope
    L0 = _refit_loss(estimator, problem, 0.0, "hinge")
    fd = [(_refit_loss(estimator, problem, h, "hinge") - L0) / h for h in (1e-4, 5e-5)]
    assert _rel_err(fd[0], fd[1]) <= 1e-3
    assert abs(fd[1]) > 1e-3  # a non-trivial case: the poison moves the curve
    assert _rel_err(result.derivative, fd[1]) <= 1e-3


def test_sign_and_normalisation_conventions():
    problem = make_backdoor_problem(7)
    result = backdoor_slope(LogisticRegression(C=1.0), *problem)
    m = len(problem[2])
    assert result.derivative < 0, "poison lowers the triggered-test loss: negative derivative"
    assert result.influence == pytest.approx(result.derivative / m)
    assert result.slope == pytest.approx(-2 / np.pi * np.arctan(result.influence))
    assert 0 < result.slope < 1
    assert normalised_slope(0.0) == 0.0
    assert result.n_poison == m and result.n_trigger == len(problem[4])


def test_gamma_scale_is_resolved_on_clean_data():
    problem = make_backdoor_problem(8, d=5)
    X = problem[0]
    gamma = 1.0 / (X.shape[1] * X.var())
    a = backdoor_slope(SVC(kernel="rbf", C=3.0, gamma="scale", tol=1e-10), *problem)
    b = backdoor_slope(SVC(kernel="rbf", C=3.0, gamma=gamma, tol=1e-10), *problem)
    assert a.derivative == pytest.approx(b.derivative, rel=1e-9)


def test_one_fit_serves_several_attacks():
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(9)
    model = slope_model(LogisticRegression(C=2.0)).fit(X, y)
    first = model.derivative(Xp[:10], yp[:10], Xt, yt)
    second = model.derivative(Xp, yp, Xt, yt)
    alone = backdoor_slope(LogisticRegression(C=2.0), X, y, Xp[:10], yp[:10], Xt, yt)
    assert first.derivative == pytest.approx(alone.derivative, rel=1e-10)
    assert second.derivative != pytest.approx(first.derivative)


def test_derivative_is_linear_in_the_poison_set():
    """dL/dβ sums over poison points: the derivative of a union is the sum of the parts."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(10)
    model = slope_model(RidgeClassifier(alpha=1.0)).fit(X, y)
    whole = model.derivative(Xp, yp, Xt, yt).derivative
    parts = model.derivative(Xp[:7], yp[:7], Xt, yt).derivative + model.derivative(Xp[7:], yp[7:], Xt, yt).derivative
    assert whole == pytest.approx(parts, rel=1e-10)


def test_logistic_hessian_matches_independent_formula():
    """Direct check of the implicit-function formula with a dense Hessian built here."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(11, n=80, d=4)
    C = 0.8
    est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14).fit(X, y)
    Z = np.hstack([X, np.ones((len(X), 1))])
    f = Z @ np.r_[est.coef_.ravel(), est.intercept_]
    H = np.diag([1.0] * X.shape[1] + [0.0]) + C * (Z.T * (expit(f) * expit(-f))) @ Z
    Zp, Zt = (np.hstack([A, np.ones((len(A), 1))]) for A in (Xp, Xt))
    tp, tt = _pm(yp, est.classes_), _pm(yt, est.classes_)
    theta = np.r_[est.coef_.ravel(), est.intercept_]
    gp = C * Zp.T @ (-tp * expit(-tp * (Zp @ theta)))
    gt = Zt.T @ (-tt * expit(-tt * (Zt @ theta))) / len(Zt)
    expected = -gt @ np.linalg.solve(H, gp)
    got = backdoor_slope(LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14), X, y, Xp, yp, Xt, yt)
    assert got.derivative == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("estimator, shape, space", [
    (LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12), (40, 120), "dual"),  # X Xᵀ
    (RidgeClassifier(alpha=0.5), (200, 6), "primal"),                                      # Xᵀ X
    (RidgeClassifier(alpha=0.5), (40, 120), "dual"),
])
def test_gram_cache_gives_the_same_slope_and_is_reused(estimator, shape, space):
    """Where a factorisation is used (forced here; chosen by the cost model in "auto"), the
    data-only Gram products come from the cache after the first fit."""
    from robust_hpo.slope import GramCache

    X, y, Xp, yp, Xt, yt = make_backdoor_problem(12, n=shape[0], d=shape[1])
    cache = GramCache()
    other = clone(estimator).set_params(**{"C" if hasattr(estimator, "C") else "alpha": 2.0})

    def slope(est, cache=None):
        model = slope_model(est, cache=cache)
        model.space = space
        return model.fit(X, y).derivative(Xp, yp, Xt, yt).derivative

    first, again = slope(estimator, cache), slope(other, cache)
    assert first == pytest.approx(backdoor_slope(estimator, X, y, Xp, yp, Xt, yt).derivative, rel=1e-7)
    assert again == pytest.approx(backdoor_slope(other, X, y, Xp, yp, Xt, yt).derivative, rel=1e-7)
    assert first == pytest.approx(slope(estimator), rel=1e-10)
    assert cache.misses == 1 and cache.hits >= 1


def test_gram_cache_does_not_confuse_arrays():
    from robust_hpo.slope import GramCache

    cache = GramCache(max_entries=1)
    A = np.arange(6.0).reshape(3, 2)
    B = A + 1.0
    assert np.allclose(cache.outer(A), A @ A.T)
    assert np.allclose(cache.outer(B), B @ B.T)
    assert np.allclose(cache.outer(A), A @ A.T)
    assert cache.misses == 3


@pytest.mark.parametrize("C", [1e-3, 1.0, 50.0])
def test_logistic_spaces_agree_and_the_cost_model_switches_to_a_factorisation(C, monkeypatch):
    """auto = preconditioned conjugate gradients; the factorisations give the same value, and when
    the measured cost model says a factorisation is cheaper, the solve switches to it."""
    from robust_hpo.slope import LogisticSlope
    from robust_hpo.slope import _hessian

    X, y, Xp, yp, Xt, yt = make_backdoor_problem(13, n=200, d=8)
    est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000)
    values = {}
    for space in ("auto", "primal", "dual", "cg"):
        model = LogisticSlope(est)
        model.space = space
        result = model.fit(X, y).derivative(Xp, yp, Xt, yt)
        values[space] = result.derivative
        if space == "cg":
            assert result.method == "pcg" and result.details["cg_iterations"] > 0
        elif space == "auto":  # what the cost model picks depends on the shape and the convergence
            assert result.method in ("pcg", "pcg+primal-cholesky", "pcg+dual-cholesky", "primal-cholesky",
                                     "primal-cholesky+pcg")
        else:
            assert result.method == f"{space}-cholesky"
    assert values["dual"] == pytest.approx(values["primal"], rel=1e-8)  # both exact
    for space in ("auto", "cg"):  # conjugate gradients stop once the slope is certified to CERTIFY_RTOL
        assert values[space] == pytest.approx(values["primal"], rel=_hessian.CERTIFY_RTOL)
    monkeypatch.setattr(_hessian, "FACTOR_FLOP_SPEEDUP", 1e30)  # factorising costs nothing
    switched = LogisticSlope(LogisticRegression(C=50.0, tol=1e-2)).fit(X, y).derivative(Xp, yp, Xt, yt)
    assert switched.method in ("pcg+primal-cholesky", "pcg+dual-cholesky", "primal-cholesky")
    assert switched.derivative == pytest.approx(values["primal"] if C == 50.0 else switched.derivative, rel=1e-8)


@pytest.mark.parametrize("C", [0.05, 50.0])
def test_the_solver_choice_and_the_slope_do_not_depend_on_timing(monkeypatch, C):
    """Same inputs, same path and the same bits, whatever the clock says (a loaded machine)."""
    import random
    import time

    from robust_hpo.slope import LogisticSlope

    X, y, Xp, yp, Xt, yt = make_backdoor_problem(13, n=400, d=300)
    est = LogisticRegression(C=C, tol=1e-2)
    calm = LogisticSlope(est).fit(X, y).derivative(Xp, yp, Xt, yt)
    clock, now = random.Random(7), [0.0]

    def erratic() -> float:  # some calls take nothing, others a minute: a shared, busy machine
        now[0] += clock.choice((1e-9, 60.0))
        return now[0]

    monkeypatch.setattr(time, "perf_counter", erratic)
    loaded = LogisticSlope(est).fit(X, y).derivative(Xp, yp, Xt, yt)
    assert (loaded.method, loaded.details["cg_iterations"]) == (calm.method, calm.details["cg_iterations"])
    assert loaded.derivative == calm.derivative
    assert np.array_equal(loaded.margins.derivative, calm.margins.derivative)
