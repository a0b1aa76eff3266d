"""The subset preconditioner is below the Hessian (P ≤ H), and a certified stop keeps what it promises.

Checked against dense linear algebra (numpy's eigvalsh and solve), not against the solver itself."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo.slope import LinearModelHessian
from robust_hpo.slope._hessian import CERTIFY_RTOL, SOLVE_RTOL
from robust_hpo.slope._krylov import block_pcg, certified_stop


def _problem(seed: int, n: int = 300, d: int = 40, *, nonnegative: bool = True):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) * (rng.random((n, d)) < 0.3) if nonnegative else rng.standard_normal((n, d))
    X[:, -3:] = 0.0  # features no point uses
    q = rng.random(n) ** 3 * rng.choice([0.01, 1.0, 50.0])
    q[rng.random(n) < 0.1] = 0.0  # points with no curvature (beyond a hinge's margin)
    return X, q


def _dense(X: np.ndarray, q: np.ndarray, r_w: float, r_b: float, fit_intercept: bool) -> np.ndarray:
    Z = np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X
    r = np.full(Z.shape[1], r_w)
    if fit_intercept:
        r[-1] = r_b
    return np.diag(r) + Z.T @ (q[:, None] * Z)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fit_intercept, r_b", [(True, 0.0), (True, 0.7), (False, 0.0)])
@pytest.mark.parametrize("nonnegative", [True, False])
def test_subset_preconditioner_is_below_the_hessian(seed, fit_intercept, r_b, nonnegative):
    """H − P ⪰ 0: the certificate's ``rᵀP⁻¹r ≥ rᵀH⁻¹r`` rests on it (an intercept's row of P is H's own)."""
    X, q = _problem(seed, nonnegative=nonnegative)
    r_w = 0.3
    h = LinearModelHessian(X, q, r_w=r_w, r_b=r_b, fit_intercept=fit_intercept, space="cg")
    h._design.subset_size = 25
    P_inv = h._subset().solve(np.eye(X.shape[1] + fit_intercept))
    P = np.linalg.inv((P_inv + P_inv.T) / 2)
    H = _dense(X, q, r_w, r_b, fit_intercept)
    gap = np.linalg.eigvalsh(H - P)
    assert gap.min() >= -1e-9 * np.abs(H).max()
    assert np.linalg.eigvalsh(P).min() > 0
    # and after a Newton step's new curvature (the same points, re-weighted; a new centroid)
    q2 = q * np.random.default_rng(seed + 10).random(q.size)
    h2 = h.with_curvature(q2)
    P2 = np.linalg.inv(h2._subset().solve(np.eye(X.shape[1] + fit_intercept)))
    assert np.linalg.eigvalsh(_dense(X, q2, r_w, r_b, fit_intercept) - (P2 + P2.T) / 2).min() \
        >= -1e-9 * np.abs(H).max()


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
def test_certified_stop_bounds_the_functional_and_the_energy_error(seed, rtol):
    X, q = _problem(seed, n=400, d=60)
    rng = np.random.default_rng(seed)
    h = LinearModelHessian(X, q, r_w=1.0, r_b=0.0, fit_intercept=True, space="cg")
    h._design.subset_size = 20
    M = h._subset().solve
    H = _dense(X, q, 1.0, 0.0, True)
    B = rng.standard_normal((61, 3))
    A = B + 0.5 * rng.standard_normal((61, 3))  # functionals related to the right-hand sides, as the slope's are
    exact = np.linalg.solve(H, B)
    certify = certified_stop(A, B, M, rtol=rtol)
    result = block_pcg(h._matmat, B, M, rtol=1e-14, maxiter=500, certify=certify)
    assert result.converged
    for j in range(3):
        got, want = A[:, j] @ result.x[:, j], A[:, j] @ exact[:, j]
        assert abs(got - want) <= rtol * abs(got)
        e = result.x[:, j] - exact[:, j]
        assert np.sqrt(e @ H @ e) <= rtol * np.sqrt(B[:, j] @ exact[:, j])
    plain = block_pcg(h._matmat, B, M, rtol=1e-14, maxiter=500)
    assert result.iterations < plain.iterations  # it does stop early


def test_linear_model_solve_with_functionals_stops_before_the_residual_tolerance():
    X, q = _problem(7, n=500, d=80)
    h = LinearModelHessian(X, q, r_w=1.0, r_b=0.0, fit_intercept=True, space="cg")
    rng = np.random.default_rng(7)
    b, a = rng.standard_normal(81), rng.standard_normal(81)
    H = _dense(X, q, 1.0, 0.0, True)
    exact = np.linalg.solve(H, b)
    certified = h.solve(b, functionals=a)
    iterations = h.cg_iterations
    tight = h.solve(b)
    assert h.cg_iterations - iterations > iterations  # the residual tolerance takes longer
    assert abs(a @ certified - a @ exact) <= CERTIFY_RTOL * abs(a @ certified)
    assert np.linalg.norm(H @ tight - b) <= 10 * SOLVE_RTOL * np.linalg.norm(b)
