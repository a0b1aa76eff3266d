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
from robust_hpo.testing import make_backdoor_problem


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

    L0 = loss(0.0)
    D = [(loss(s) - L0) / s for s in (h, h / 2, h / 4)]
    R1 = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R1[1] - R1[0]) / 3


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
