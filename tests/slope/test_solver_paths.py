"""The solver paths of the binary linear models' cost model, against finite differences of refits.

Many rows and few features: the Hessian's factorisation costs less than a few conjugate-gradient
iterations, so it is built before any (``primal-cholesky``); later Newton steps and the slope's solve
run conjugate gradients preconditioned by it (``primal-cholesky+pcg``) unless a new one costs less than
two iterations. The clean fit is scikit-learn's lbfgs at its default ``tol`` (far from the optimum:
relative gradient 0.4–1), so the Newton polish does the work; with tens of thousands of rows its last
step changes the objective by less than the objective's rounding and is judged by the gradient.
The reference: independent β-weighted refits at ``tol=1e-14`` (newton-cholesky), Richardson-extrapolated.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from robust_hpo.slope import slope_model
from robust_hpo.slope import _linear
from robust_hpo.testing import make_backdoor_problem, right_derivative


def _mean_log_loss(est, X, y) -> float:
    t = np.where(y == est.classes_[1], 1.0, -1.0)
    return float(np.mean(np.logaddexp(0.0, -t * est.decision_function(X))))


def _refit_derivative(C: float, problem, h: float = 1e-2) -> float:
    X, y, Xp, yp, Xt, yt = problem

    def loss(beta: float) -> float:
        est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000)
        if beta == 0:
            return _mean_log_loss(est.fit(X, y), Xt, yt)
        est.fit(np.vstack([X, Xp]), np.concatenate([y, yp]),
                sample_weight=np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)]))
        return _mean_log_loss(est, Xt, yt)

    return right_derivative(loss, h)


@pytest.mark.parametrize("n, d, m, C, methods", [
    (20000, 10, 1000, 10.0, ("primal-cholesky",)),              # a new factorisation at every curvature
    (8000, 150, 400, 1.0, ("primal-cholesky+pcg",)),             # the first one preconditions the rest
])
def test_factorised_before_cg_with_a_default_tolerance_fit_matches_refits(monkeypatch, n, d, m, C, methods):
    flat = []
    line_search = _linear._LinearModelSlope._line_search

    def spy(self, *args):
        moved = line_search(self, *args)
        flat.append(moved is not None and moved[3])
        return moved

    monkeypatch.setattr(_linear._LinearModelSlope, "_line_search", spy)
    problem = make_backdoor_problem(11, n=n, d=d, m=m)
    model = slope_model(LogisticRegression(C=C)).fit(*problem[:2])  # lbfgs, tol=1e-4
    result = model.derivative(*problem[2:])
    assert result.details["residual_fit"] > 1e-3 and result.details["newton_steps"] >= 1
    assert result.method in methods
    if n >= 20000:
        assert any(flat)  # the last step was below the objective's rounding
    reference = _refit_derivative(C, problem)
    assert abs(result.derivative - reference) <= 1e-3 * abs(reference)


@pytest.mark.parametrize("alpha, shape, fit_intercept, weighted", [
    (0.5, (200, 6), True, False),      # factorised first: Woodbury on the factorisation
    (1000.0, (900, 700), True, False), # conjugate gradients on the updated matrix
    (1e-3, (900, 700), True, True),    # CG hands over to a factorisation (Woodbury); sample weights
    (1e-3, (600, 300), True, False),   # factorised first (constant curvature: up to 50 iterations' worth)
    (2.0, (80, 200), False, False),    # d > n (dual), no intercept
])
def test_ridge_closed_form_refit_matches_scikit_learns_refit(alpha, shape, fit_intercept, weighted):
    """The β = 1 estimate of a binary ridge classifier without its refit: the margins of the model
    retrained on clean ∪ poison, against scikit-learn's own retraining."""
    from sklearn.linear_model import RidgeClassifier

    X, y, Xp, yp, Xt, yt = make_backdoor_problem(5, n=shape[0], d=shape[1])
    sw = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X)) if weighted else None
    est = RidgeClassifier(alpha=alpha, fit_intercept=fit_intercept)
    result = slope_model(est).fit(X, y, sample_weight=sw).derivative(Xp, yp, Xt, yt)
    assert result.details["refit"] == "closed-form"
    retrained = RidgeClassifier(alpha=alpha, fit_intercept=fit_intercept, solver="cholesky").fit(
        np.vstack([X, Xp]), np.concatenate([y, yp]),
        sample_weight=np.concatenate([np.ones(len(X)) if sw is None else sw, np.ones(len(Xp))]))
    expected = np.where(yt == retrained.classes_[1], 1.0, -1.0) * retrained.decision_function(Xt)
    assert np.allclose(result.margins.at_one, expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("m", [5, 60])  # fewer poison rows than features: Woodbury; more: the updated matrix
def test_ridge_closed_form_refit_with_a_trigger_on_features_no_clean_row_uses(m):
    """A corner trigger: the last two features are 0 on every clean row (left out of the clean
    factorisation) and carry the trigger on the poison rows; against scikit-learn's retraining."""
    from sklearn.linear_model import RidgeClassifier

    X, y, Xp, yp, Xt, yt = make_backdoor_problem(8, n=300, d=40, m=m)
    X[:, -2:] = 0.0
    Xp[:, -2:] = Xt[:, -2:] = 1.5
    est = RidgeClassifier(alpha=0.7)
    result = slope_model(est).fit(X, y).derivative(Xp, yp, Xt, yt)
    assert result.details["refit"] == "closed-form" and result.method.startswith("primal-cholesky")
    retrained = RidgeClassifier(alpha=0.7, solver="cholesky").fit(np.vstack([X, Xp]), np.concatenate([y, yp]))
    expected = np.where(yt == retrained.classes_[1], 1.0, -1.0) * retrained.decision_function(Xt)
    assert np.allclose(result.margins.at_one, expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("K, shape, alpha, fit_intercept, weighted, solver", [
    (2, (300, 12), 1.0, True, False, "auto"),
    (2, (900, 700), 1000.0, True, True, "sag"),      # a large design (the cost model may pick CG); sag named
    (2, (80, 200), 2.0, False, False, "lsqr"),       # d > n (dual), no intercept
    (4, (400, 30), 0.3, True, True, "auto"),         # K outputs, one factorisation
])
def test_ridge_is_fitted_on_the_slopes_factorisation(monkeypatch, K, shape, alpha, fit_intercept, weighted, solver):
    """The fitted ridge classifier is the optimum — scikit-learn's cholesky solution, to the polish's
    accuracy (relative gradient 1e-6: to rounding where the Hessian is factorised), whatever solver it
    names — while scikit-learn's own fit only ever sees one row per class."""
    from sklearn.linear_model import RidgeClassifier

    rng = np.random.default_rng(sum(shape) + K)
    X = rng.normal(size=shape) + rng.integers(0, 2, size=shape)
    y = rng.integers(0, K, size=shape[0]) * 3 + 1  # labels 1, 4, 7, …
    sw = rng.uniform(0.2, 3.0, size=shape[0]) if weighted else None
    sizes = []
    fit = RidgeClassifier.fit

    def spy(self, X, y, sample_weight=None):
        sizes.append(len(X))
        return fit(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(RidgeClassifier, "fit", spy)
    model = slope_model(RidgeClassifier(alpha=alpha, fit_intercept=fit_intercept, solver=solver)).fit(X, y, sw)
    assert sizes == [K]
    monkeypatch.setattr(RidgeClassifier, "fit", fit)
    reference = RidgeClassifier(alpha=alpha, fit_intercept=fit_intercept, solver="cholesky").fit(X, y, sample_weight=sw)
    scale = np.abs(reference.decision_function(X)).max()
    np.testing.assert_allclose(model.estimator_.decision_function(X), reference.decision_function(X),
                               rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(model.estimator_.classes_, reference.classes_)
    np.testing.assert_array_equal(model.estimator_.predict(X), reference.predict(X))
    assert model.details_["residual"] <= 1e-6
