"""All K one-vs-rest machines of a smooth linear learner polished at once (small designs).

The one-vs-rest machines of ``LinearSVC`` and ``SGDClassifier`` (log_loss, modified_huber) share
their design Z = [X, 1] and differ only in labels: machine k minimises
``½ r_w ‖w_k‖² + ½ r_b b_k² + c Σ_i s_i ℓ(y_ik, z_iᵀθ_k)`` (see :mod:`._linear`). When the
(d+1)×(d+1) Hessians are cheap to form (:func:`~._multiclass.primal_is_cheap`) the Newton polish of
:mod:`._linear` runs for all machines together: one product ``Z Θ`` per step for all scores, the K
Hessians ``diag(r) + c Zᵀ diag(s ℓ'') Z`` formed and Cholesky-factorised in one stacked call, an
Armijo line search per machine (each its own step length) — the same iteration as the per-machine
polish, machine by machine, without K × (steps) Python round trips. Each machine then holds its
factor at the polished θ (:class:`DenseFactor`) for the derivative solves.

Anything the batched path does not settle (a singular Hessian — SGD leaving every point flat —, a
stalled line search, the step limit) returns None and the caller polishes machine by machine, which
handles those cases and raises the documented errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from robust_hpo.slope._krylov import one_blas_thread
from robust_hpo.slope._polish import MAX_NEWTON_STEPS, POLISH_RTOL, RESIDUAL_LIMIT


class DenseFactor:
    """``H⁻¹ v`` from a Cholesky factor of one machine's (d+1)×(d+1) Hessian (the interface of
    :class:`~._hessian.LinearModelHessian` the linear adapters use)."""

    method = "primal-cholesky"
    space = "primal"
    cg_iterations = 0

    def __init__(self, L: np.ndarray) -> None:
        self.L = L

    def solve(self, v: np.ndarray, *, rtol: float = 0.0, x0: np.ndarray | None = None,
              functionals: np.ndarray | None = None) -> np.ndarray:
        """Exact: ``rtol``, ``x0`` and ``functionals`` (what an iterative solve may stop on) are not needed."""
        return linalg.cho_solve((self.L, True), np.asarray(v, dtype=np.float64), check_finite=False)


def polish_all(machines: list[Any], X: np.ndarray, Y: np.ndarray, Theta: np.ndarray, fit_intercept: bool,
               sw: np.ndarray | None, damping: float) -> tuple[np.ndarray, list[DenseFactor], dict[str, Any]] | None:
    """Polish Θ ((d[+1]) × K, column k machine k's [w, b]) for ±1 labels Y (n × K); returns the
    polished Θ, each machine's factor at it and the details (the largest residuals, total steps),
    or None where the batched iteration does not settle (see the module docstring)."""
    first = machines[0]
    c, r_w, r_b = first._objective_constants()
    loss, grad_f, curv_f = first.pointwise_loss, first.loss_grad, first.loss_curvature
    Z = np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X
    K, q = Y.shape[1], Z.shape[1]
    r = np.full(q, r_w + damping)
    if fit_intercept:
        r[-1] = r_b + damping
    s = np.ones(X.shape[0]) if sw is None else sw

    def optimality(Theta: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reg = (r - damping)[:, None] * Theta
        data = c * (Z.T @ (grad_f(Y, F) * s[:, None]))
        grad = reg + data
        scale = np.linalg.norm(reg, axis=0) + np.linalg.norm(data, axis=0)
        return grad, np.where(scale > 0, np.linalg.norm(grad, axis=0) / np.where(scale > 0, scale, 1.0), 0.0)

    def objective(T: np.ndarray, F: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Machine objectives for coefficient columns T and scores F of the machines ``cols``."""
        return 0.5 * ((r - damping)[:, None] * T * T).sum(axis=0) + c * (s @ loss(Y[:, cols], F))

    Z32 = Z.astype(np.float32)

    def factors(F: np.ndarray, cols: np.ndarray, exact: bool, Qc: np.ndarray | None = None) -> np.ndarray | None:
        """Cholesky factors of the machines' Hessians at scores F (curvatures ``Qc`` when known),
        formed in one product ``Zᵀ [Q_1 Z | … | Q_m Z]``; ``exact=False`` (a polishing step's Newton
        direction, checked by the exact gradient afterwards) forms it in single precision, the factor
        kept for the derivative solves in double."""
        if Qc is None:
            Qc = c * curv_f(Y[:, cols], F) * s[:, None]
        A = Z if exact else Z32
        M = (Qc.astype(A.dtype)[:, :, None] * A[:, None, :]).reshape(A.shape[0], -1)
        H = (A.T @ M).reshape(q, cols.size, q).transpose(1, 0, 2).astype(np.float64)
        H[:, np.arange(q), np.arange(q)] += r
        try:
            return np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return None

    with one_blas_thread:
        F = Z @ Theta
        grad, residual = optimality(Theta, F)
        fitted = residual.copy()
        steps = 0
        live = np.flatnonzero(residual > POLISH_RTOL)
        # a piecewise-constant curvature (squared hinge, modified huber: 0 or 2c s) often does not change
        # over the last Newton step: then the step's factor, formed exactly, is the final Hessian's
        Q = c * curv_f(Y, F) * s[:, None]
        piecewise = bool(np.all((Q == 0) | (Q == Q.max(axis=0, keepdims=True))))
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # machine: (curvature, exact factor)
        while live.size:
            if steps >= MAX_NEWTON_STEPS or not np.all(np.isfinite(residual)):
                return None
            Qc = c * curv_f(Y[:, live], F[:, live]) * s[:, None]
            L = factors(F[:, live], live, exact=piecewise, Qc=Qc)
            if L is None:
                return None
            if piecewise:
                kept.update({int(k): (Qc[:, j], L[j]) for j, k in enumerate(live)})
            step = np.column_stack([linalg.cho_solve((L[j], True), grad[:, k], check_finite=False)
                                    for j, k in enumerate(live)])
            dF = Z @ step
            T0, F0 = Theta[:, live], F[:, live]
            current = objective(T0, F0, live)
            decrease = np.einsum("ij,ij->j", grad[:, live], step)
            t = np.ones(live.size)
            accepted = np.zeros(live.size, dtype=bool)
            for _ in range(30):
                trial = objective(T0 - t * step, F0 - t * dF, live)
                ok = (trial <= current - 1e-4 * t * decrease) | ((t == 1.0) & (trial <= current))
                accepted |= ok
                if accepted.all():
                    break
                t = np.where(accepted, t, 0.5 * t)
            if not accepted.all():
                return None
            Theta[:, live] -= t * step
            F[:, live] -= t * dF
            steps += 1
            grad, new = optimality(Theta, F)
            stalled = ~(new[live] < residual[live])
            residual = new
            # as the per-machine polish: done at POLISH_RTOL, or at a rounding floor below the limit
            live = live[(residual[live] > POLISH_RTOL) & ~(stalled & (residual[live] <= RESIDUAL_LIMIT))]
        Q = c * curv_f(Y, F) * s[:, None]
        final: list[np.ndarray | None] = [None] * K
        for k, (Qk, Lk) in kept.items():
            if np.array_equal(Qk, Q[:, k]):  # the same curvature: the same Hessian, already factorised
                final[k] = Lk
        rest = np.array([k for k in range(K) if final[k] is None], dtype=np.intp)
        if rest.size:
            L = factors(F[:, rest], rest, exact=True, Qc=Q[:, rest])
            if L is None:
                return None
            for j, k in enumerate(rest):
                final[k] = L[j]
        L = np.stack(final)
    return Theta, [DenseFactor(L[k]) for k in range(K)], {
        "residual_fit": float(fitted.max()), "residual": float(residual.max()), "newton_steps": steps}

