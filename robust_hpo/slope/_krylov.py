"""Preconditioned conjugate gradients for several right-hand sides at once.

scipy's ``cg`` takes one vector; the slope solves one system per attack (and a Newton step next to
them) with the same matrix, and a product with k columns costs little more than with one (the data
matrix is streamed once). :func:`block_pcg` runs k independent CG recurrences — each column its own
step lengths, no block-Krylov coupling — through shared matrix products, dropping columns as they
converge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

Operator = Callable[[np.ndarray], np.ndarray]


class _OneBlasThread:
    """Run a block of small BLAS calls on one thread.

    A CG iteration is a few matrix–vector products of a few milliseconds each; with several BLAS
    threads every call pays their start-up and synchronisation, which on a loaded machine costs more
    than the product itself (measured: conjugate gradients 5–10× slower at two threads on the
    shared 2-core machine). The linear models' polish and solves run inside it; the SVC kernel
    blocks keep the configured threads.
    Re-entrant and thread-safe (a reference count: the first caller lowers the limit, the last
    restores it); a no-op when BLAS already runs on one thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._controller: ThreadpoolController | None = None

    def __enter__(self) -> "_OneBlasThread":
        with self._lock:
            if self._depth == 0:
                if self._controller is None:  # created late: scipy's BLAS is loaded by then
                    self._controller = ThreadpoolController()
                if any(c.num_threads > 1 for c in self._controller.lib_controllers if c.user_api == "blas"):
                    self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


one_blas_thread = _OneBlasThread()


@dataclass
class PCGResult:
    """``x`` (same shape as the right-hand side), ``iterations`` (products with the matrix),
    ``residual`` (largest relative residual ‖b − A x‖ / ‖b‖ over the columns, from the recurrence),
    ``converged``, ``seconds`` and ``stopped`` (True when ``monitor`` asked to stop early)."""

    x: np.ndarray
    iterations: int
    residual: float
    converged: bool
    seconds: float
    stopped: bool = False


def block_pcg(apply_A: Operator, B: np.ndarray, apply_M: Operator, *, rtol: float, maxiter: int,
              x0: np.ndarray | None = None,
              monitor: Callable[[int, float, float, float], bool] | None = None,
              certify: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None) -> PCGResult:
    """Solve ``A X = B`` (A symmetric positive definite, B of shape (p,) or (p, k)) by preconditioned
    CG with the preconditioner ``apply_M ≈ A⁻¹``; both operators take and return (p, k') arrays.

    Stops when every column's relative residual is at most ``rtol`` or is certified,
    after ``maxiter`` iterations, or when ``monitor(iteration, residual, initial_residual, seconds)``
    returns True (the caller's cost model). ``certify(columns, rz, X)`` — the live columns' indices,
    their ``rᵀ M r`` and the current iterate (all columns) — returns which of them are accurate
    enough for the caller (see :func:`certified_stop`); those leave the recurrence as converged ones do.
    """
    start = time.perf_counter()
    vector = B.ndim == 1
    B2 = B[:, None] if vector else B
    X = np.zeros_like(B2) if x0 is None else np.array(x0, dtype=np.float64).reshape(B2.shape)
    norms = np.linalg.norm(B2, axis=0)
    live = np.flatnonzero(norms > 0)  # zero columns: x = 0 exactly
    X[:, norms == 0] = 0.0
    R = B2[:, live] - (apply_A(X[:, live]) if x0 is not None and live.size else 0.0)
    scale = norms[live]
    residual = float(np.max(np.linalg.norm(R, axis=0) / scale)) if live.size else 0.0
    initial = residual
    iterations = 0
    stopped = False
    if live.size and residual > rtol:
        Z = apply_M(R)
        P = Z.copy()
        rz = np.einsum("ij,ij->j", R, Z)
        while iterations < maxiter:
            AP = apply_A(P)
            curvature = np.einsum("ij,ij->j", P, AP)
            if not np.all(curvature > 0):  # not positive definite (or breakdown): report unconverged
                break
            step = rz / curvature
            X[:, live] += step * P
            R -= step * AP
            iterations += 1
            column = np.linalg.norm(R, axis=0) / scale
            residual = float(column.max())
            if residual <= rtol:
                break
            keep = column > rtol
            if not keep.all():  # converged columns leave the recurrence
                live, R, P, rz, scale = live[keep], R[:, keep], P[:, keep], rz[keep], scale[keep]
            if monitor is not None and monitor(iterations, residual, initial, time.perf_counter() - start):
                stopped = True
                break
            Z = apply_M(R)
            rz_new = np.einsum("ij,ij->j", R, Z)
            if certify is not None:
                done = certify(live, rz_new, X)
                if done.any():
                    keep = ~done
                    if not keep.any():
                        residual = 0.0  # every column certified
                        break
                    live, R, Z, P, rz, rz_new, scale = (live[keep], R[:, keep], Z[:, keep], P[:, keep],
                                                        rz[keep], rz_new[keep], scale[keep])
                    residual = float((np.linalg.norm(R, axis=0) / scale).max())
            P = Z + (rz_new / rz) * P
            rz = rz_new
    out = X[:, 0] if vector else X
    converged = bool(residual <= rtol and np.all(np.isfinite(out)))
    return PCGResult(out, iterations, residual, converged, time.perf_counter() - start, stopped)


def certified_stop(functionals: np.ndarray, B: np.ndarray, apply_M: Operator, *,
                   rtol: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A ``certify`` rule for :func:`block_pcg` on ``A X = B`` whose preconditioner satisfies
    ``M⁻¹ ≤ A`` (Loewner order; then ``rᵀA⁻¹r ≤ rᵀMr``): column j is done when both

    * the functional ``s_j = a_jᵀ x_j`` (``a_j`` the j-th column of ``functionals``) is within
      ``rtol·|s_j|`` of ``a_jᵀ A⁻¹ b_j``: its error ``a_jᵀA⁻¹r_j`` is at most
      ``√(a_jᵀ M a_j · r_jᵀ M r_j)`` (Cauchy–Schwarz in the A⁻¹ inner product), and
    * the iterate's error in the energy norm is at most ``rtol`` of the solution's:
      ``‖x_j − x*_j‖_A² = r_jᵀA⁻¹r_j ≤ r_jᵀ M r_j ≤ rtol² · b_jᵀ x_j`` (``b_jᵀx_j → ‖x*_j‖_A²``), which bounds
      every other functional c of the solution by ``rtol · ‖c‖_{A⁻¹} ‖x*_j‖_A``.

    Both are bounds, not estimates: a certified column is as accurate as stated, whatever A's
    spectrum. Costs one preconditioner application (to the functionals) and two dot products per
    column and iteration.
    """
    F = functionals.reshape(B.shape[0], -1)
    B2 = B.reshape(B.shape[0], -1)
    aMa = np.einsum("ij,ij->j", F, apply_M(F))

    def certify(live: np.ndarray, rz: np.ndarray, X: np.ndarray) -> np.ndarray:
        x = X[:, live]
        value = np.abs(np.einsum("ij,ij->j", F[:, live], x))
        energy = np.einsum("ij,ij->j", B2[:, live], x)
        rz = np.maximum(rz, 0.0)
        return (np.sqrt(aMa[live] * rz) <= rtol * value) & (rz <= rtol * rtol * energy)

    return certify
