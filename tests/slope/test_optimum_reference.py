"""The benchmark's reference for what the slope's optimum costs scikit-learn (``benchmarks._optimum``).

Its relative gradient norm must match central differences of the objective computed from scikit-learn's
``log_loss`` (binary, multinomial, through a scaler), and the cheapest route it reports must really end at
the optimum the polish certifies (relative gradient ≤ POLISH_RTOL)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks._optimum import logistic_residual, optimum_cost
from robust_hpo.slope._polish import POLISH_RTOL


def _binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=12, n_informative=6, random_state=3)
    return X * 4.0, np.where(y == 1, "yes", "no")  # unscaled features: lbfgs stops short at its default tol


def _three() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


def _objective(est: LogisticRegression, X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> float:
    """``½‖W‖² + C Σ_i ℓ_i`` at θ = [W, b] (row-major), the loss from scikit-learn's ``log_loss``."""
    K = est.coef_.shape[0]
    W, b = theta[: K * X.shape[1]].reshape(K, -1), theta[K * X.shape[1]:]
    F = X @ W.T + b
    P = expit(F[:, 0]) if K == 1 else softmax(F, axis=1)
    return 0.5 * float(np.sum(W * W)) + est.C * log_loss(y, P, labels=est.classes_, normalize=False)


@pytest.mark.parametrize("make, est", [
    (_binary, LogisticRegression(C=10.0, max_iter=5000)),
    (_three, LogisticRegression(C=100.0, max_iter=5000)),
    (_three, make_pipeline(StandardScaler(), LogisticRegression(C=30.0, max_iter=5000))),
])
def test_the_residual_matches_finite_differences_of_the_objective(make, est) -> None:
    X, y = make()
    fitted = clone(est).fit(X, y)
    final, Xf = (fitted[-1], fitted[:-1].transform(X)) if hasattr(fitted, "steps") else (fitted, X)
    theta = np.concatenate([final.coef_.ravel(), final.intercept_])
    h = 1e-5 * max(1.0, float(np.abs(theta).max()))
    grad = np.array([(_objective(final, Xf, y, theta + h * e) - _objective(final, Xf, y, theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])
    reg = np.concatenate([final.coef_.ravel(), np.zeros(final.intercept_.size)])
    by_differences = np.linalg.norm(grad) / (np.linalg.norm(reg) + np.linalg.norm(grad - reg))
    assert by_differences > POLISH_RTOL  # a fit short of the optimum: the comparison is not of two zeros
    assert logistic_residual(final, Xf, y) == pytest.approx(by_differences, rel=1e-4)


def test_a_tight_fit_is_at_the_optimum() -> None:
    X, y = _binary()
    tight = LogisticRegression(C=10.0, solver="newton-cg", tol=1e-12, max_iter=10_000).fit(X, y)
    assert logistic_residual(tight, X, y) < 1e-9


def test_the_cheapest_route_reaches_the_optimum() -> None:
    X, y = _three()
    est = LogisticRegression(C=100.0, max_iter=5000)
    found = optimum_cost(est, X, y, fit_seconds=1.0, repeats=1)
    assert found is not None and found.fits is not None
    assert found.fit_residual > POLISH_RTOL
    solver, tol = found.how.split(",")[0], float(found.how.split("tol ")[1].split(":")[0])
    again = clone(est).set_params(solver=solver, tol=tol, max_iter=10_000).fit(X, y)
    assert logistic_residual(again, X, y) <= POLISH_RTOL
    assert "relative gradient" in found.describe()


def test_the_hinge_reference_and_other_learners() -> None:
    X, y = _three()
    hinge = optimum_cost(SGDClassifier(loss="hinge", alpha=1e-3, random_state=0), X, y, fit_seconds=1.0, repeats=1)
    assert hinge is not None and hinge.fit_residual is None and "3 one-vs-rest" in hinge.how
    assert optimum_cost(SGDClassifier(loss="log_loss", random_state=0), X, y, fit_seconds=1.0) is None
