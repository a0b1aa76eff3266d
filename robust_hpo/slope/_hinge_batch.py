"""The K one-vs-rest linear SVMs of ``SGDClassifier(loss="hinge")`` solved together (small designs): a start
for the exact active-set refinement of :mod:`._svc`, in place of K libsvm fits.

Machine k (labels ``y_ik = ±1``, box ``c_i = C s_i κ_i``, C = 1/(α n)):
``min ½‖w‖² + Σ_i c_i max(0, 1 − y_ik (x_iᵀw + b))``, the intercept unpenalised; dual
``max Σ α_i − ½‖Σ α_i y_i x_i‖²`` over ``0 ≤ α ≤ c``, ``Σ α_i y_i = 0`` (libsvm's α).

**Method** (the proximal point method on the dual — the augmented Lagrangian of the primal):
``α ← argmax D(α) − ‖α − α⁰‖² / (2t)``. Its primal is ``min ½‖w‖² + Σ_i ψ_i(m_i)`` over (w, b),
``m_i = y_i (x_iᵀw + b)``, ``ψ_i(m) = max_{0 ≤ a ≤ c_i} a (1 − m) − (a − α⁰_i)² / (2t)``: a
hinge smoothed over a band of width ``h = c̄ / t`` around the margin, once differentiable, piecewise
quadratic; its maximiser ``a_i = clip(α⁰_i + t (1 − m_i), 0, c_i)`` is the new α. Semismooth Newton
with Armijo backtracking solves it, every machine in one product ``X W`` per step; each machine's
(d+1)×(d+1) Hessian ``diag(1, …, 1, 0) + t Zᵀ_band Z_band`` comes from the rows inside the band.
The width starts at :data:`START_WIDTH` and halves at every outer step; the iteration stops when no
point changes set (N: α = 0, B: α = c, S: between) over an outer step, or returns None after
:data:`MAX_NEWTON_STEPS` steps.

Nothing here is trusted: the caller solves each machine's KKT equalities on these sets and checks
every condition (``SVCSlope._refine``); a machine that does not settle is fitted by libsvm.
"""

from __future__ import annotations

import numpy as np

START_WIDTH = 1.0
"""First smoothing width h (margin units); it halves at every outer step."""

GRADIENT_RTOL = 1e-2
"""An outer step's smooth problem counts as solved when ``‖∇‖ ≤ GRADIENT_RTOL (1 + ‖w‖)`` (machine by
machine): the sets, not the smooth problems' optima, are what is needed."""

WIDTH_FACTOR = 0.5
"""The width's factor from one outer step to the next."""

MAX_NEWTON_STEPS = 80
"""Batched Newton steps (all outer steps together) before giving up (None: libsvm fits instead)."""

_BACKTRACKS = 30


def ovr_hinge_start(X: np.ndarray, Y: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Dual coefficients α (n × K, libsvm's α ≥ 0), intercepts b (K) on the optimum's sets, and the
    batched Newton steps taken; None where the sets did not settle within :data:`MAX_NEWTON_STEPS`.

    ``X``: n × d rows; ``Y``: n × K labels ±1 (machine k: class k against the rest); ``box``: the
    per-row bound ``c_i ≥ 0``."""
    n, d = X.shape
    K = Y.shape[1]
    cc = np.ascontiguousarray(box, dtype=np.float64)[:, None]
    positive = box > 0
    if not positive.any():
        return None
    scale = float(np.mean(box[positive]))
    A0 = np.zeros((n, K))
    width, steps, previous = START_WIDTH, 0, None
    W, b = _least_squares_start(X, Y, box, scale / width)
    H = np.zeros((K, d + 1, d + 1))
    diag = np.arange(d)
    while True:
        t = scale / width

        def evaluate(W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            M = Y * (X @ W + b)
            U = A0 + t * (1.0 - M)
            A = np.minimum(np.maximum(U, 0.0), cc)
            value = 0.5 * np.einsum("ij,ij->j", W, W) + np.einsum("ij,ij->j", A, 1.0 - M) \
                - np.einsum("ij,ij->j", A - A0, A - A0) / (2.0 * t)
            return U, A, value

        U, A, value = evaluate(W, b)
        while True:
            YA = Y * A
            Gw = W - X.T @ YA
            Gb = -YA.sum(axis=0)
            gnorm = np.sqrt(np.einsum("ij,ij->j", Gw, Gw) + Gb * Gb)
            todo = gnorm > GRADIENT_RTOL * (1.0 + np.sqrt(np.einsum("ij,ij->j", W, W)))
            if not todo.any():
                break
            if steps >= MAX_NEWTON_STEPS:
                return None
            steps += 1
            band = (U > 0.0) & (U < cc)
            G = np.vstack([Gw, Gb[None, :]])
            for k in np.flatnonzero(todo):
                Xb = X[band[:, k]]
                Hk = H[k]
                np.matmul(Xb.T, Xb, out=Hk[:d, :d])
                Hk[:d, :d] *= t
                Hk[diag, diag] += 1.0
                Hk[:d, d] = Hk[d, :d] = t * Xb.sum(axis=0)
                Hk[d, d] = t * Xb.shape[0] if Xb.shape[0] else 1.0  # no row in the band: a gradient step in b
            D = np.zeros((d + 1, K))
            D[:, todo] = -np.linalg.solve(H[todo], G[:, todo].T[:, :, None])[:, :, 0].T
            descent = np.einsum("ij,ij->j", D, G)
            step = np.where(todo, 1.0, 0.0)
            for _ in range(_BACKTRACKS):
                W_new, b_new = W + step * D[:d], b + step * D[d]
                U_new, A_new, value_new = evaluate(W_new, b_new)
                bad = todo & (value_new > value + 1e-4 * step * descent + 1e-13 * np.abs(value))
                if not bad.any():
                    break
                step = np.where(bad, 0.5 * step, step)
            else:
                return None  # no descent: rounding, or a singular band (the caller fits with libsvm)
            W, b, U, A, value = W_new, b_new, U_new, A_new, value_new
        sets = np.where(A <= 0.0, 0, np.where(A >= cc, 2, 1)).astype(np.int8)
        A0 = A
        if previous is not None and np.array_equal(sets, previous):
            return A0, b, steps
        previous = sets
        width *= WIDTH_FACTOR


def _least_squares_start(X: np.ndarray, Y: np.ndarray, box: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """The first smooth problem with every row inside its band: ``min ½‖w‖² + (t/2) Σ_i [c_i > 0] (1 − m_i)²``,
    a ridge problem whose Hessian all machines share (one factorisation)."""
    d = X.shape[1]
    Z = np.hstack([X[box > 0], np.ones((int(np.sum(box > 0)), 1))])
    H = t * (Z.T @ Z)
    H[np.arange(d), np.arange(d)] += 1.0
    theta = np.linalg.solve(H, t * (Z.T @ Y[box > 0]))
    return theta[:d], theta[d]
