"""LogisticRegression and LinearSVC are fitted by scikit-learn on the features some clean row uses
(LogisticRegression with lbfgs at its default tol: on a float32 copy), then widened back and polished.

Proved against independent computations: scikit-learn's own tight float64 fit on all features, and
finite differences of tight refits on clean ∪ β·poison where the trigger sits on features no clean
row uses (a corner trigger on images), so that the refits use columns the clean fit never saw."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from robust_hpo.slope import GramCache, slope_model
from robust_hpo.testing import right_derivative

UNUSED = 8  # the last UNUSED columns are 0 on every clean row; the trigger switches two of them on


def _problem(seed: int, K: int, n: int = 240, d: int = 20, m: int = 24, n_trigger: int = 40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(K, d - UNUSED))

    def draw(k: int, triggered: bool):
        y = rng.integers(0, K, size=k)
        X = np.zeros((k, d))
        X[:, : d - UNUSED] = centres[y] + rng.normal(size=(k, d - UNUSED))
        if triggered:
            X[:, -2:] = 1.0
            y = np.zeros(k, dtype=int)  # the attacker's target
        return X, y * 2 + 5  # labels 5, 7, 9, …

    X, y = draw(n, False)
    Xp, yp = draw(m, True)
    Xt, yt = draw(n_trigger, True)
    return X, y, Xp, yp, Xt, yt


def _target_loss(est, Xt, yt) -> float:
    """Mean cross-entropy of the target label (binary: the log-loss), the curve loss of the slope."""
    index = np.searchsorted(est.classes_, yt)
    return float(-np.mean(est.predict_log_proba(Xt)[np.arange(len(yt)), index]))


def _refit_slope(C: float, problem, h: float = 1e-3) -> float:
    """dL/dβ at 0 from tight refits on clean ∪ β·poison (Richardson-extrapolated differences)."""
    X, y, Xp, yp, Xt, yt = problem

    def loss(beta: float) -> float:
        est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000)
        est.fit(np.vstack([X, Xp]), np.concatenate([y, yp]),
                sample_weight=np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)]))
        return _target_loss(est, Xt, yt)

    return right_derivative(loss, h)


@pytest.mark.parametrize("seed, K, C, tol, dtype", [
    (3, 2, 1.0, 1e-4, np.float32),    # the default: float32 copy of the used features
    (4, 3, 0.3, 1e-4, np.float32),    # multinomial
    (5, 2, 10.0, 1e-7, np.float64),   # a tol float32 gradients do not resolve: float64
])
def test_logistic_fit_on_used_features_is_the_optimum_and_its_slope_matches_refits(monkeypatch, seed, K, C,
                                                                                   tol, dtype):
    problem = _problem(seed, K)
    X, y = problem[:2]
    seen = []
    fit = LogisticRegression.fit

    def spy(self, X, y, sample_weight=None):
        seen.append((X.shape[1], X.dtype))
        return fit(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    model = slope_model(LogisticRegression(C=C, tol=tol)).fit(X, y)
    monkeypatch.setattr(LogisticRegression, "fit", fit)
    assert seen == [(X.shape[1] - UNUSED, dtype)]

    est = model.estimator_
    assert est.n_features_in_ == X.shape[1]
    assert est.coef_.dtype == np.float64 and est.coef_.shape == (1 if K == 2 else K, X.shape[1])
    assert np.all(est.coef_[:, -UNUSED:] == 0.0)
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(X, y)
    scale = np.abs(reference.decision_function(X)).max()
    np.testing.assert_allclose(est.decision_function(X), reference.decision_function(X), rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(est.predict(problem[4]), reference.predict(problem[4]))

    result = model.derivative(*problem[2:])
    expected = _refit_slope(C, problem)
    assert abs(result.derivative - expected) <= 1e-3 * abs(expected)


def test_study_cache_serves_the_fit_and_the_hessian_the_same_copy():
    """In a study the used-feature copy comes from the GramCache: one copy for every trial's fit and Hessian,
    and the trials' slopes are those of fits without the cache."""
    problem = _problem(8, 2)
    cache = GramCache()
    for C in (0.1, 3.0):
        cached = slope_model(LogisticRegression(C=C), cache=cache).fit(*problem[:2])
        plain = slope_model(LogisticRegression(C=C)).fit(*problem[:2])
        assert cached._hessian._design.active()[1] is cache.on_used_features(problem[0])
        a, b = cached.derivative(*problem[2:]).derivative, plain.derivative(*problem[2:]).derivative
        assert abs(a - b) <= 1e-6 * abs(b)


def test_linear_svc_fit_on_used_features_is_liblinears_fit_on_all_of_them(monkeypatch):
    problem = _problem(6, 3)
    X, y = problem[:2]
    widths = []
    fit = LinearSVC.fit

    def spy(self, X, y, sample_weight=None):
        widths.append(X.shape[1])
        return fit(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(LinearSVC, "fit", spy)
    model = slope_model(LinearSVC(C=0.5)).fit(X, y)
    monkeypatch.setattr(LinearSVC, "fit", fit)
    assert widths == [X.shape[1] - UNUSED]
    reference = LinearSVC(C=0.5, tol=1e-12, max_iter=1_000_000).fit(X, y)
    assert model.estimator_.coef_.shape == reference.coef_.shape
    np.testing.assert_allclose(model.estimator_.decision_function(X), reference.decision_function(X),
                               rtol=0, atol=1e-5 * np.abs(reference.decision_function(X)).max())


@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(C=10.0, max_iter=3),
    lambda: LinearSVC(C=10.0, max_iter=3),
])
def test_the_starts_convergence_warning_is_not_passed_on_the_polished_fit_is_converged(make):
    """scikit-learn warns that its fit did not converge; the estimator returned is polished to the optimum
    (checked against scikit-learn's own tight fit), so that warning would only mislead — it is not passed on."""
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    X, y = _problem(9, 3)[:2]
    with pytest.warns(ConvergenceWarning):
        clone(make()).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = slope_model(make()).fit(X, y)
    tight = clone(make()).set_params(max_iter=1_000_000, tol=1e-12)
    if isinstance(tight, LogisticRegression):
        tight.set_params(solver="newton-cholesky", tol=1e-14)
    tight.fit(X, y)
    F, G = model.estimator_.decision_function(X), tight.decision_function(X)
    if isinstance(tight, LogisticRegression):  # multinomial scores: defined up to one shift per row
        F, G = F - F.mean(axis=1, keepdims=True), G - G.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(F, G, rtol=0, atol=1e-5 * np.abs(G).max())


def test_the_start_runs_on_one_blas_thread_except_newton_cholesky(monkeypatch) -> None:
    """Matrix–vector solvers (lbfgs) fit on one BLAS thread, as the polish does, the start and the β = 1
    estimate's refit alike; newton-cholesky (a matrix–matrix product per step) keeps the configured threads.
    The threads are read inside the fit."""
    from threadpoolctl import ThreadpoolController, threadpool_limits

    def blas_threads() -> int:
        return max((c.num_threads for c in ThreadpoolController().lib_controllers if c.user_api == "blas"),
                   default=0)

    seen: list[tuple[str, int]] = []
    original = LogisticRegression.fit

    def spy(self, X, y, sample_weight=None):
        seen.append((self.solver, blas_threads()))
        return original(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    X, y, Xp, yp, *_ = _problem(5, 2)
    with threadpool_limits(2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("this BLAS does not run on two threads")
        for solver in ("lbfgs", "newton-cholesky"):
            model = slope_model(LogisticRegression(solver=solver)).fit(X, y)
            model.fit_weighted(X, y, Xp, yp, 1.0, warm_start=True)  # the β = 1 estimate's refit
        assert blas_threads() == 2  # restored after the fits
    assert seen == [("lbfgs", 1)] * 2 + [("newton-cholesky", 2)] * 2
