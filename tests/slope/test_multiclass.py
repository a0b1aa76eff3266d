"""Multi-class (K ≥ 3) exact slopes against finite differences of tightly converged β-weighted refits.

The references are independent of robust_hpo: plain scikit-learn refits with ``sample_weight`` (1
clean, β poison) at tight tolerances; each curve loss and margin is recomputed here from
``decision_function`` (libsvm's one-vs-one values for SVC). The estimators under test run at their
default settings. Problems: digits 3- and 10-class subsets and make_classification (not tuned on).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.slope import backdoor_slope, slope_model
from tests.slope.test_convex import _rel_err
from tests.slope.test_margins import _refit


def digits_problem(K: int, seed: int, n: int = 300, m: int = 15, n_trigger: int = 40, target: int = 0):
    """Digits of classes 0..K−1 (pixels / 16); poison and triggered points: other classes' images
    with a 2×2 corner patch, labelled ``target``."""
    X, y = load_digits(return_X_y=True)
    keep = y < K
    X, y = X[keep] / 16.0, y[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    Xc, yc = X[:n], y[:n]
    rest = np.flatnonzero(y[n:] != target) + n

    def trigger(A):
        A = A.copy()
        A[:, [0, 1, 8, 9]] = 1.0
        return A

    Xp, Xt = trigger(X[rest[:m]]), trigger(X[rest[m:m + n_trigger]])
    return Xc, yc, Xp, np.full(m, target), Xt, np.full(n_trigger, target)


def synthetic_problem(K: int, seed: int, n: int = 240, d: int = 8, m: int = 12, n_trigger: int = 30):
    X, y = make_classification(n_samples=n + m + n_trigger, n_features=d, n_informative=5, n_redundant=1,
                               n_classes=K, n_clusters_per_class=1, random_state=seed)
    Xp, Xt = X[n:n + m].copy(), X[n + m:].copy()
    Xp[:, -1] += 3.0
    Xt[:, -1] += 3.0
    return X[:n], y[:n], Xp, np.full(m, 1), Xt, np.full(n_trigger, 1)



def _with_shape(est, X):
    """libsvm's one-vs-one decision values: column p for pair (i, j), positive votes for i."""
    old = est.decision_function_shape
    est.decision_function_shape = "ovo"
    try:
        return est.decision_function(X)
    finally:
        est.decision_function_shape = old


def curve(est, X, y, kind):
    """Per-point curve loss and target margin of a fitted estimator (independent of robust_hpo)."""
    codes = np.searchsorted(est.classes_, y)
    rows = np.arange(len(y))
    if kind == "svc":
        K = len(est.classes_)
        D = _with_shape(est, X)
        loss, margin = np.zeros(len(y)), np.full(len(y), np.inf)
        for p, (i, j) in enumerate(itertools.combinations(range(K), 2)):
            for side, sign in ((i, 1.0), (j, -1.0)):
                mine = codes == side
                value = sign * D[mine, p]
                loss[mine] += np.maximum(0.0, 1.0 - value)
                margin[mine] = np.minimum(margin[mine], value)
        return loss, margin
    F = est.decision_function(X)
    others = F.copy()
    others[rows, codes] = -np.inf
    margin = F[rows, codes] - others.max(axis=1)
    if kind == "log":
        return logsumexp(F, axis=1) - F[rows, codes], margin
    Y = np.where(np.eye(len(est.classes_), dtype=bool)[codes], 1.0, -1.0)
    return np.sum((Y - F) ** 2, axis=1), margin


def fd(tight, problem, kind, h):
    """Richardson-extrapolated (smooth) or two-step (hinge, piecewise linear) right derivatives of the
    mean curve loss and of the margins."""
    Xt, yt = problem[4], problem[5]
    L0, M0 = curve(_refit(tight, problem, 0.0), Xt, yt, kind)
    steps = (h, h / 2, h / 4) if kind != "svc" else (h, h / 2)
    D, DM = [], []
    for s in steps:
        L, M = curve(_refit(tight, problem, s), Xt, yt, kind)
        D.append((L.mean() - L0.mean()) / s)
        DM.append((M - M0) / s)
    if kind == "svc":
        assert _rel_err(D[0], D[1]) <= 1e-3  # on one linear piece
        return D[1], DM[1]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    RM = [2 * DM[1] - DM[0], 2 * DM[2] - DM[1]]
    return (4 * R[1] - R[0]) / 3, (4 * RM[1] - RM[0]) / 3


def tight(est):
    if isinstance(est, LogisticRegression):
        return clone(est).set_params(solver="newton-cholesky", tol=1e-14, max_iter=1000)
    if isinstance(est, RidgeClassifier):
        return clone(est).set_params(solver="cholesky")
    return clone(est).set_params(tol=1e-12)


CASES = [
    # (estimator at its defaults, problem, kind, FD step)
    (LogisticRegression(), ("digits", 3, 0), "log", 1e-2),
    (LogisticRegression(C=10.0), ("digits", 10, 1), "log", 1e-3),
    (LogisticRegression(C=0.5), ("synthetic", 4, 2), "log", 1e-2),
    (LogisticRegression(fit_intercept=False), ("synthetic", 3, 3), "log", 1e-2),
    (RidgeClassifier(), ("digits", 3, 4), "squared", 1e-4),
    (RidgeClassifier(alpha=0.1), ("digits", 10, 5), "squared", 1e-4),
    (RidgeClassifier(alpha=2.0, solver="sag"), ("synthetic", 5, 6), "squared", 1e-2),
    (SVC(kernel="linear", C=0.1), ("digits", 3, 7), "svc", 1e-4),
    (SVC(), ("digits", 10, 8), "svc", 1e-4),
    (SVC(kernel="linear"), ("synthetic", 4, 9), "svc", 1e-4),
]


def _problem(spec):
    source, K, seed = spec
    return digits_problem(K, seed) if source == "digits" else synthetic_problem(K, seed)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, spec, kind, h", CASES)
def test_multiclass_slope_and_margins_match_tight_refits(estimator, spec, kind, h):
    problem = _problem(spec)
    result = backdoor_slope(estimator, *problem)
    ref = tight(estimator)
    if kind == "svc" and ref.gamma == "scale":
        ref.set_params(gamma=1.0 / (problem[0].shape[1] * problem[0].var()))  # held fixed along β
    derivative, margin_derivative = fd(ref, problem, kind, h)
    assert result.exact
    assert _rel_err(result.derivative, derivative) <= 1e-3
    # margins at β = 0 and their derivative, where the FD of the active max/min is smooth
    model_margin = result.margins.margin
    _, M0 = curve(_refit(ref, problem, 0.0), problem[4], problem[5], kind)
    assert np.allclose(model_margin, M0, rtol=1e-5, atol=1e-5)
    scale = np.max(np.abs(margin_derivative))
    assert np.median(np.abs(result.margins.derivative - margin_derivative)) <= 1e-3 * scale
    assert result.margins.backdoor_accuracy(0.0) == pytest.approx(np.mean(M0 > 0))


@pytest.mark.parametrize("estimator", [LogisticRegression(), RidgeClassifier(), SVC()])
def test_multiclass_predictions_are_the_estimators(estimator):
    Xc, yc, Xp, yp, Xt, yt = digits_problem(4, 11)
    model = slope_model(estimator).fit(Xc, yc)
    assert np.mean(model.predict(Xt) == model.estimator_.predict(Xt)) >= 0.99
    assert set(np.unique(model.predict(Xc))) <= set(range(4))


def test_multiclass_loss_and_backdoor_accuracy_follow_the_conventions():
    problem = digits_problem(3, 12)
    Xc, yc, Xp, yp, Xt, yt = problem
    model = slope_model(LogisticRegression()).fit(Xc, yc)
    result = model.derivative(Xp, yp, Xt, yt, X_test=Xc, y_test=yc)
    loss, margin = curve(model.estimator_, Xt, yt, "log")
    assert model.loss(Xt, yt) == pytest.approx(loss.mean(), rel=1e-6)
    assert result.baseline_backdoor_accuracy == pytest.approx(np.mean(model.estimator_.predict(Xt) == yt))
    _, clean_margin = curve(model.estimator_, Xc, yc, "log")
    assert result.margins.scale == pytest.approx(np.mean(np.abs(clean_margin)), rel=1e-6)
    assert result.loss == "cross-entropy"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multinomial_conjugate_gradient_path_matches_refits(monkeypatch):
    """Above DENSE_LIMIT parameters the multinomial Hessian is never formed (CG preconditioned by the class blocks)."""
    from robust_hpo.slope import _multiclass

    monkeypatch.setattr(_multiclass, "DENSE_LIMIT", 0)
    problem = digits_problem(4, 13)
    result = backdoor_slope(LogisticRegression(C=2.0), *problem)
    assert result.method == "multinomial-pcg"
    derivative, _ = fd(tight(LogisticRegression(C=2.0)), problem, "log", 1e-2)
    assert _rel_err(result.derivative, derivative) <= 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multi_output_ridge_on_a_large_design_matches_refits(monkeypatch):
    """Small designs factorise the (d+1)×(d+1) ridge Hessian outright; large ones (here forced) go
    through LinearModelHessian's cost model: both against the same refits."""
    from robust_hpo.slope import _multiclass

    problem = digits_problem(4, 14)
    derivative, _ = fd(tight(RidgeClassifier(alpha=0.3)), problem, "squared", 1e-4)
    small = backdoor_slope(RidgeClassifier(alpha=0.3), *problem)
    assert small.method == "multi-output-primal-cholesky"
    monkeypatch.setattr(_multiclass, "primal_is_cheap", lambda n, d: False)
    large = backdoor_slope(RidgeClassifier(alpha=0.3), *problem)
    for result in (small, large):
        assert result.exact
        assert _rel_err(result.derivative, derivative) <= 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multinomial_double_precision_factor_matches_refits(monkeypatch):
    """The single-precision factor is only a preconditioner; where it is not used (forced here: the
    double-precision fallback) the slope is the same."""
    from robust_hpo.slope import _multiclass

    original = _multiclass.MultinomialLogistic._factor
    monkeypatch.setattr(_multiclass.MultinomialLogistic, "_factor",
                        lambda self, P, s, single: original(self, P, s, False))
    problem = digits_problem(3, 15)
    result = backdoor_slope(LogisticRegression(C=10.0), *problem)
    derivative, _ = fd(tight(LogisticRegression(C=10.0)), problem, "log", 1e-4)
    assert result.exact
    assert _rel_err(result.derivative, derivative) <= 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", [("REFRESH_ITERATIONS", 0), ("PAIR_DROP", 1e3), ("PAIR_DROP", 0.0)])
def test_multinomial_preconditioner_settings_do_not_change_the_slope(monkeypatch, setting):
    """The preconditioner only speeds conjugate gradients on the exact Hessian: formed again before
    every solve (REFRESH_ITERATIONS = 0), nearly block-diagonal (most class couplings left out), or
    with every coupling kept, the slope matches the same tight refits."""
    from robust_hpo.slope import _multiclass

    monkeypatch.setattr(_multiclass, *setting)
    problem = digits_problem(4, 16)
    result = backdoor_slope(LogisticRegression(C=30.0), *problem)
    derivative, _ = fd(tight(LogisticRegression(C=30.0)), problem, "log", 1e-4)
    assert result.exact
    assert _rel_err(result.derivative, derivative) <= 1e-3


def _dense_multinomial_hessian(Z: np.ndarray, P: np.ndarray, C: float, fit_intercept: bool) -> np.ndarray:
    """``diag(r) + C Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ z_i z_iᵀ (+ u uᵀ)``, class-major, built here."""
    K, q = P.shape[1], Z.shape[1]
    H = np.zeros((K * q, K * q))
    for z, p in zip(Z, P):
        H += C * np.kron(np.diag(p) - np.outer(p, p), np.outer(z, z))
    r = np.ones(q)
    if fit_intercept:
        r[-1] = 0.0
        u = np.zeros(K * q)
        u[q - 1::q] = 1.0 / np.sqrt(K)
        H += np.outer(u, u)
    return H + np.diag(np.tile(r, K))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_large_multinomial_preconditioner_is_positive_definite_and_exact_on_the_common_part(
        monkeypatch, fit_intercept):
    """Above DENSE_LIMIT the class blocks precondition the classes' differences; a vector equal in every
    class is an eigenvector of H (+ u uᵀ) with eigenvalue 1 (checked here on a dense H), which the
    preconditioner inverts exactly."""
    from scipy.special import softmax

    from robust_hpo.slope import _multiclass

    monkeypatch.setattr(_multiclass, "DENSE_LIMIT", 0)
    X, y, *_ = synthetic_problem(3, 21, n=90)
    C = 3.0
    model = slope_model(LogisticRegression(C=C, fit_intercept=fit_intercept)).fit(X, y)
    part = model._multi
    Z = np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X
    H = _dense_multinomial_hessian(Z, softmax(Z @ part.Theta, axis=1), C, fit_intercept)
    p = H.shape[0]
    M = part._precondition_blocks(np.eye(p))
    assert np.allclose(M, M.T, atol=1e-12)
    assert np.linalg.eigvalsh((M + M.T) / 2).min() > 0
    common = np.tile(np.random.default_rng(0).normal(size=Z.shape[1]), 3)
    assert np.allclose(H @ common, common)
    assert np.allclose(M @ (H @ common), common)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, spec, h", [
    (LogisticRegression(C=100.0), ("digits", 4, 22), 1e-5),
    (LogisticRegression(C=0.3, fit_intercept=False), ("synthetic", 5, 23), 1e-2),
    (LogisticRegression(C=2.0, class_weight="balanced"), ("digits", 3, 24), 1e-2),
])
def test_large_multinomial_path_matches_refits(monkeypatch, estimator, spec, h):
    """The conjugate-gradient path (forced) against refits: weak regularisation, no intercept, class weights."""
    from robust_hpo.slope import _multiclass

    monkeypatch.setattr(_multiclass, "DENSE_LIMIT", 0)
    problem = _problem(spec)
    result = backdoor_slope(estimator, *problem)
    assert result.method == "multinomial-pcg" and result.exact
    if estimator.class_weight is None:
        derivative, _ = fd(tight(estimator), problem, "log", h)
    else:  # "balanced" from the β-weighted class sizes, recomputed at each β (tests/slope/test_weights.py)
        from robust_hpo.testing import right_derivative
        from tests.slope.test_weights import weights_at

        X, y, Xp, yp, Xt, yt = problem

        def loss(beta: float) -> float:
            est = tight(estimator).set_params(class_weight=None).fit(
                np.vstack([X, Xp]), np.concatenate([y, yp]), sample_weight=weights_at(beta, y, yp, "balanced", np.ones(len(y))))
            return float(curve(est, Xt, yt, "log")[0].mean())
        derivative = right_derivative(loss, h)
    assert _rel_err(result.derivative, derivative) <= 1e-3
