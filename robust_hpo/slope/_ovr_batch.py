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

A smooth curvature (log_loss) changes at every step: there the factors are formed once, in single
precision, and precondition conjugate gradients on the machines' exact Hessians (one product
``Zᵀ (Q ⊙ Z V)`` for all machines per iteration, :class:`BatchedHessians`); they are formed again
where a solve needed more than :data:`REFRESH_ITERATIONS` iterations. The derivative solves run the
same iteration on the Hessians at the polished Θ to the linear models' ``SOLVE_RTOL`` (exact
double-precision products; a machine whose iteration does not converge falls back to a
double-precision factor).

Anything the batched path does not settle (a singular Hessian — SGD leaving every point flat —, a
stalled line search, the step limit) returns None and the caller polishes machine by machine, which
handles those cases and raises the documented errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from robust_hpo.slope._hessian import SOLVE_RTOL
from robust_hpo.slope._krylov import one_blas_thread
from robust_hpo.slope._polish import MAX_NEWTON_STEPS, POLISH_RTOL, RESIDUAL_LIMIT


REFRESH_ITERATIONS = 8
"""A single-precision preconditioner that needed more than this many iterations in one polishing
solve is formed again at the next point."""

FLAT_SHARE = 0.5
"""Hessians are formed machine by machine from the rows with curvature where fewer than this share of
the (row, machine) curvatures are non-zero (a piecewise curvature: squared hinge, modified huber), and
in one product over all rows otherwise."""

MAX_ITERATIONS = 50
"""Conjugate-gradient iterations after which a machine's solve falls back to a double-precision factor."""


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


def _inverse_factors(L: np.ndarray) -> np.ndarray:
    """``(L_k L_kᵀ)⁻¹`` for stacked lower factors L (K × q × q), in double precision."""
    trtri, = linalg.get_lapack_funcs(("trtri",), (np.zeros(1),))
    inv = np.empty(L.shape)
    for k in range(L.shape[0]):  # LAPACK trtri per machine (measured 4× faster than a batched inverse)
        inv[k], info = trtri(L[k].astype(np.float64), lower=1)
        if info != 0:  # pragma: no cover - a Cholesky factor has a positive diagonal
            inv[k] = np.linalg.inv(L[k].astype(np.float64))
    inv = np.tril(inv)
    return np.matmul(inv.transpose(0, 2, 1), inv)


def batched_pcg(apply_A: Any, apply_M: Any, B: np.ndarray, rtol: float,
                maxiter: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Independent preconditioned conjugate gradients, one per column of B, each with its own
    operator (``apply_A(P)`` and ``apply_M(R)`` act column by column: column j is system j);
    (X, converged per column, iterations). A converged column stops moving; at most ``maxiter``
    (default :data:`MAX_ITERATIONS`) iterations."""
    maxiter = MAX_ITERATIONS if maxiter is None else maxiter
    X = np.zeros_like(B)
    R = B.copy()
    norms = np.linalg.norm(B, axis=0)
    norms[norms == 0] = 1.0
    Zr = apply_M(R)
    P = Zr.copy()
    rz = np.einsum("ij,ij->j", R, Zr)
    iterations = 0
    active = np.linalg.norm(R, axis=0) / norms > rtol
    while active.any() and iterations < maxiter:
        AP = apply_A(P)
        curvature = np.einsum("ij,ij->j", P, AP)
        if not np.all(curvature[active] > 0):
            break
        alpha = np.where(active, rz / np.where(active, curvature, 1.0), 0.0)
        X += alpha * P
        R -= alpha * AP
        iterations += 1
        active &= np.linalg.norm(R, axis=0) / norms > rtol
        Zr = apply_M(R)
        rz_new = np.einsum("ij,ij->j", R, Zr)
        beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
        P = Zr + beta * P
        rz = rz_new
    converged = (np.linalg.norm(R, axis=0) / norms <= rtol) & np.all(np.isfinite(X), axis=0)
    return X, converged, iterations


class BatchedHessians:
    """The K machines' exact Hessians ``diag(r) + Zᵀ diag(Q_k) Z`` (Q = c s ℓ'', n × K) at one point,
    solved together by :func:`batched_pcg` preconditioned by (single-precision) factors
    ``M_k⁻¹``; machines whose iteration does not converge are solved by a double-precision factor."""

    def __init__(self, Z: np.ndarray, Q: np.ndarray, r: np.ndarray, inverse: np.ndarray) -> None:
        self.Z, self.ZT, self.Q, self.r, self.inverse = Z, np.ascontiguousarray(Z.T), Q, r, inverse
        self.cg_iterations = 0
        self._exact: dict[int, np.ndarray] = {}

    def operators(self, machines: np.ndarray) -> tuple[Any, Any]:
        """(V ↦ H_k v, R ↦ M_k⁻¹ r) column by column, column j for machine k = machines[j]."""
        Q = self.Q if np.array_equal(machines, np.arange(self.Q.shape[1])) else self.Q[:, machines]
        inverse = self.inverse[machines]
        r = self.r[:, None]

        def product(V: np.ndarray) -> np.ndarray:
            out = self.ZT @ (Q * (self.Z @ V))
            out += r * V
            return out

        def precondition(R: np.ndarray) -> np.ndarray:
            return np.matmul(inverse, R.T[:, :, None])[:, :, 0].T

        return product, precondition

    def solve(self, B: np.ndarray, machines: np.ndarray, rtol: float | None = None) -> np.ndarray:
        """``H_k⁻¹ B[:, j]``, k = machines[j], to relative residual ``rtol`` (default: the linear
        models' ``SOLVE_RTOL``)."""
        X, converged, iterations = batched_pcg(*self.operators(machines), B, SOLVE_RTOL if rtol is None else rtol)
        self.cg_iterations += iterations
        for j in np.flatnonzero(~converged):
            X[:, j] = linalg.cho_solve((self._exact_factor(int(machines[j])), True), B[:, j], check_finite=False)
        return X

    def _exact_factor(self, k: int) -> np.ndarray:
        if k not in self._exact:
            H = self.Z.T @ (self.Q[:, k, None] * self.Z)
            H[np.diag_indices_from(H)] += self.r
            self._exact[k] = linalg.cholesky(H, lower=True, check_finite=False)
        return self._exact[k]


class MachineHessian:
    """Machine k's part of :class:`BatchedHessians` with :class:`DenseFactor`'s interface."""

    method = "primal-cholesky-pcg"
    space = "primal"

    def __init__(self, batch: BatchedHessians, k: int) -> None:
        self.batch, self.k = batch, k

    @property
    def cg_iterations(self) -> int:
        return self.batch.cg_iterations

    def solve(self, v: np.ndarray, *, rtol: float = 0.0, x0: np.ndarray | None = None,
              functionals: np.ndarray | None = None) -> np.ndarray:
        """Solved to ``SOLVE_RTOL`` (``functionals``, what a certified stop would need, is not used:
        the batch's single-precision preconditioner is not known to be ≤ H)."""
        V = np.asarray(v, dtype=np.float64)
        B = V[:, None] if V.ndim == 1 else V
        X = self.batch.solve(B, np.full(B.shape[1], self.k))
        return X[:, 0] if V.ndim == 1 else X


def solve_machines(factors: list[Any], G: np.ndarray) -> np.ndarray:
    """``H_k⁻¹ G[:, k]`` for every machine k (one batched iteration where the factors share one)."""
    if isinstance(factors[0], MachineHessian):
        return factors[0].batch.solve(G, np.arange(G.shape[1]))
    return np.column_stack([factors[k].solve(G[:, k]) for k in range(G.shape[1])])


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
        formed in one product ``Zᵀ [Q_1 Z | … | Q_m Z]`` (mostly flat rows: each from its rows with curvature,
        :data:`FLAT_SHARE`); ``exact=False`` (a polishing step's Newton
        direction, checked by the exact gradient afterwards) forms it in single precision, the factor
        kept for the derivative solves in double."""
        if Qc is None:
            Qc = c * curv_f(Y[:, cols], F) * s[:, None]
        A = Z if exact else Z32
        if np.count_nonzero(Qc) < FLAT_SHARE * Qc.size:  # mostly flat rows (squared hinge): each machine's own
            H = np.empty((cols.size, q, q))
            for j in range(cols.size):
                rows = np.flatnonzero(Qc[:, j])
                Aj = np.take(A, rows, axis=0)
                Aj *= np.sqrt(Qc[rows, j]).astype(A.dtype)[:, None]
                H[j] = Aj.T @ Aj  # BLAS syrk over the rows with curvature
        else:
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
        every = np.arange(K)
        values = objective(Theta, F, every)
        inverse, stale = None, False  # smooth curvature: the preconditioners' (L Lᵀ)⁻¹, formed when stale
        while live.size:
            if steps >= MAX_NEWTON_STEPS or not np.all(np.isfinite(residual)):
                return None
            if piecewise:
                Qc = c * curv_f(Y[:, live], F[:, live]) * s[:, None]
                L = factors(F[:, live], live, exact=True, Qc=Qc)
                if L is None:
                    return None
                kept.update({int(k): (Qc[:, j], L[j]) for j, k in enumerate(live)})
                step = np.column_stack([linalg.cho_solve((L[j], True), grad[:, k], check_finite=False)
                                        for j, k in enumerate(live)])
            else:  # conjugate gradients on the exact Hessians, single-precision factors precondition
                Q = c * curv_f(Y, F) * s[:, None] if Q is None else Q
                if inverse is None or stale:
                    L = factors(F, every, exact=False, Qc=Q)
                    if L is None:
                        return None
                    inverse, stale = _inverse_factors(L), False
                batch = BatchedHessians(Z, Q, r, inverse)
                rtol = max(min(0.1, float(residual[live].min())), 0.3 * POLISH_RTOL / float(residual[live].max()))
                step, converged, iterations = batched_pcg(*batch.operators(live), grad[:, live], rtol)
                if not converged.all():
                    return None
                stale = iterations > REFRESH_ITERATIONS
            dF = Z @ step
            T0, F0 = Theta[:, live], F[:, live]
            current = values[live]
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
            values[live] = trial  # each machine's objective at its accepted step
            Q = None  # the curvature moved with F
            steps += 1
            grad, new = optimality(Theta, F)
            stalled = ~(new[live] < residual[live])
            residual = new
            # as the per-machine polish: done at POLISH_RTOL, or at a rounding floor below the limit
            live = live[(residual[live] > POLISH_RTOL) & ~(stalled & (residual[live] <= RESIDUAL_LIMIT))]
        Q = c * curv_f(Y, F) * s[:, None] if Q is None else Q
        if not piecewise:  # the derivative solves: the same iteration at the polished Θ
            if inverse is None or stale:
                L = factors(F, every, exact=False, Qc=Q)
                if L is None:
                    return None
                inverse = _inverse_factors(L)
            batch = BatchedHessians(Z, Q, r, inverse)
            return Theta, [MachineHessian(batch, k) for k in range(K)], {
                "residual_fit": float(fitted.max()), "residual": float(residual.max()), "newton_steps": steps}
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

