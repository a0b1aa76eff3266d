"""Conjugate gradients on a torch matrix-vector product, with curvature and residual checks.

Written on torch tensors (not ``scipy.sparse.linalg.cg``) so that the vectors stay on the network's
device and so that negative curvature (``pᵀAp ≤ 0``: the damped Hessian is not positive definite)
is detected and reported instead of silently producing a meaningless solution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from robust_hpo.errors import InfluenceSolveError


@dataclass(frozen=True)
class CGSolution:
    """``x`` with ``‖A x − b‖ / ‖b‖ = residual`` (recomputed explicitly, not the recurrence's)."""

    x: torch.Tensor
    iterations: int
    residual: float


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *,
                       tol: float = 1e-6, max_iter: int = 500) -> CGSolution:
    """Solve ``A x = b`` for a symmetric positive definite ``A`` given as ``matvec(v) = A v``.

    Stops when the recurrence residual ``‖r‖ ≤ tol·‖b‖``; then recomputes ``‖b − A x‖ / ‖b‖`` with
    one more product and requires it to be ≤ ``10·tol``. Raises :class:`InfluenceSolveError` on
    negative or zero curvature (``A`` not positive definite), non-finite values, divergence or no
    convergence within ``max_iter`` iterations — it never returns an unconverged ``x``.
    """
    if not (isinstance(tol, float | int) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if b.ndim != 1:
        raise ValueError(f"b must be a 1-D tensor, got shape {tuple(b.shape)}")
    b_norm = float(torch.linalg.vector_norm(b))
    if not math.isfinite(b_norm):
        raise InfluenceSolveError("the right-hand side of the influence solve is not finite")
    x = torch.zeros_like(b)
    if b_norm == 0.0:
        return CGSolution(x=x, iterations=0, residual=0.0)
    r = b.clone()
    p = r.clone()
    rs = float(r @ r)
    for iteration in range(1, max_iter + 1):
        Ap = matvec(p)
        curvature = float(p @ Ap)
        if not math.isfinite(curvature):
            raise InfluenceSolveError(f"conjugate gradients met a non-finite value at iteration {iteration}")
        if curvature <= 0.0:
            raise InfluenceSolveError(
                f"conjugate gradients met non-positive curvature pᵀAp = {curvature:.3g} at iteration "
                f"{iteration}: the damped Hessian is not positive definite; increase the damping or "
                f"use the Gauss-Newton Hessian"
            )
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = float(r @ r)
        relative = math.sqrt(rs_new) / b_norm
        if not math.isfinite(relative) or relative > 1e8:
            raise InfluenceSolveError(
                f"conjugate gradients diverged at iteration {iteration} (relative residual {relative:.3g})"
            )
        if relative <= tol:
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    else:
        raise InfluenceSolveError(
            f"conjugate gradients did not converge in max_iter={max_iter} iterations (relative residual "
            f"{relative:.3g} > tol={tol:g}); raise max_iter or the damping"
        )
    true_residual = float(torch.linalg.vector_norm(b - matvec(x))) / b_norm
    if not true_residual <= 10.0 * tol:
        raise InfluenceSolveError(
            f"the influence solve's explicit residual ‖b − A x‖/‖b‖ = {true_residual:.3g} exceeds "
            f"10·tol = {10.0 * tol:g} (round-off or an inconsistent Hessian-vector product)"
        )
    return CGSolution(x=x, iterations=iteration, residual=true_residual)
