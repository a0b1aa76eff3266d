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
with Armijo backtracking solves it for every machine whose smooth problem is not yet solved: one product
``X D`` per step gives the margins' motion, along which the line search needs no other; each machine's
system ``diag(1, …, 1, 0) + t Zᵀ_band Z_band`` (``Z = [X, 1]``) comes from its rows inside the band, in
the band's space when the band has fewer rows than features. The first smooth problem starts from the
ridge solution with every row inside its band; the width starts at :data:`START_WIDTH` and halves at
every outer step. Stops when no point has changed set (N: α = 0, B: α = c, S: between) over
:data:`STABLE_STEPS` outer steps; None after :data:`MAX_NEWTON_STEPS` steps.

Nothing here is trusted: the caller solves each machine's KKT equalities on these sets and checks
every condition (``SVCSlope._refine``); a machine that does not settle is fitted by libsvm.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

START_WIDTH = 1.0
"""First smoothing width h (margin units)."""

GRADIENT_RTOL = 1e-2
"""An outer step's smooth problem counts as solved when ``‖∇‖ ≤ min(GRADIENT_RTOL, h) (1 + ‖w‖)`` (machine
by machine): the sets, not the smooth problems' optima, are what is needed."""

WIDTH_FACTOR = 0.5
"""The width's factor from one outer step to the next."""

MAX_NEWTON_STEPS = 100
"""Batched Newton steps (all outer steps together) before giving up (None: libsvm fits instead)."""

STABLE_STEPS = 3
"""Outer steps over which no point may change set. Over one, a machine's sets were wrong on 3 of 9 test
problems (a margin point still drifting to α = 0); the refinement would then hand it to libsvm."""

_BACKTRACKS = 30


def ovr_hinge_start(X: np.ndarray, Y: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Dual coefficients α (n × K, libsvm's α ≥ 0), intercepts b (K) on the optimum's sets, and the
    batched Newton steps taken; None where the sets did not settle within :data:`MAX_NEWTON_STEPS`.

    ``X``: n × d rows; ``Y``: n × K labels ±1 (machine k: class k against the rest); ``box``: the
    per-row bound ``c_i ≥ 0``. The margins ``m = y (xᵀw + b)`` move along each step by ``s δ``
    (one product ``X D`` per step; the line search needs no other)."""
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
    M = Y * (X @ W + b)
    Z = np.hstack([X, np.ones((n, 1))])
    A = np.zeros((n, K))
    stable = 0
    while True:
        t = scale / width
        run = np.arange(K)  # the machines whose smooth problem is not solved yet
        while run.size:
            Yr, Mr, A0r, Wr = Y[:, run], M[:, run], A0[:, run], W[:, run]
            U = A0r + t * (1.0 - Mr)
            Ar = np.minimum(np.maximum(U, 0.0), cc)
            A[:, run] = Ar
            YA = Yr * Ar
            G = np.vstack([Wr - X.T @ YA, -YA.sum(axis=0)[None, :]])
            tolerance = min(GRADIENT_RTOL, width) * (1.0 + np.sqrt(np.einsum("ij,ij->j", Wr, Wr)))
            todo = np.sqrt(np.einsum("ij,ij->j", G, G)) > tolerance
            if not todo.all():
                run, Yr, Mr, A0r, Wr, U, Ar, G = run[todo], Yr[:, todo], Mr[:, todo], A0r[:, todo], Wr[:, todo], \
                    U[:, todo], Ar[:, todo], G[:, todo]
                if not run.size:
                    break
            if steps >= MAX_NEWTON_STEPS:
                return None
            steps += 1
            band = (U > 0.0) & (U < cc)
            D = np.column_stack([_newton_direction(Z[band[:, j]], t, G[:, j]) for j in range(run.size)])
            delta = Yr * (X @ D[:d] + D[d])                  # the margins' motion per unit step
            ww, wd, dd = (np.einsum("ij,ij->j", Wr, Wr), np.einsum("ij,ij->j", Wr, D[:d]),
                          np.einsum("ij,ij->j", D[:d], D[:d]))
            # rows with α⁰ = 0 that stay outside the band for every step in [0, 1] add nothing: the line
            # search reads the others only, (row, machine) pairs flattened
            rows, cols = np.nonzero((np.maximum(U, U - t * delta) > 0.0) | (A0r > 0.0))
            m_, d_, a0_, c_ = Mr[rows, cols], delta[rows, cols], A0r[rows, cols], box[rows]

            def value(s: np.ndarray) -> np.ndarray:
                """The smooth objective at (w, b) + s D, machine by machine (0 ≤ s ≤ 1)."""
                r = 1.0 - (m_ + s[cols] * d_)
                a = np.minimum(np.maximum(a0_ + t * r, 0.0), c_)
                e = a - a0_
                return 0.5 * (ww + s * (2.0 * wd + s * dd)) + np.bincount(cols, a * r - e * e / (2.0 * t),
                                                                          minlength=s.size)

            current = value(np.zeros(run.size))
            descent = np.einsum("ij,ij->j", D, G)
            step = np.ones(run.size)
            for _ in range(_BACKTRACKS):
                bad = value(step) > current + 1e-4 * step * descent + 1e-13 * np.abs(current)
                if not bad.any():
                    break
                step = np.where(bad, 0.5 * step, step)
            else:
                return None  # no descent: rounding, or a singular band (the caller fits with libsvm)
            W[:, run] = Wr + step * D[:d]
            b[run] += step * D[d]
            M[:, run] = Mr + step * delta
        sets = np.where(A <= 0.0, 0, np.where(A >= cc, 2, 1)).astype(np.int8)
        A0 = A.copy()
        stable = stable + 1 if previous is not None and np.array_equal(sets, previous) else 0
        if stable >= STABLE_STEPS:
            return A0, b, steps
        previous = sets
        width *= WIDTH_FACTOR


_posv = linalg.get_lapack_funcs("posv", (np.zeros(1),))


def _newton_direction(Zb: np.ndarray, t: float, g: np.ndarray) -> np.ndarray:
    """``−H⁻¹ g`` for ``H = diag(1, …, 1, 0) + t Zbᵀ Zb`` (``Zb = [Xb, 1]``, the rows inside the band): in
    the band's space (``(I/t + Xb Xbᵀ) r = −Xb g_w + 1 Δb``, ``1ᵀ r = −g_b``, ``Δw = −g_w − Xbᵀ r``)
    when it has fewer rows than features, else from H itself; no row in the band: ``−g`` (the
    intercept has no curvature there; the line search scales it)."""
    nb, q = Zb.shape
    d = q - 1
    if nb == 0:
        return -g
    if nb <= d:
        Xb = Zb[:, :d]
        Kb = Xb @ Xb.T
        Kb.flat[::nb + 1] += 1.0 / t
        rhs = np.ones((nb, 2))
        rhs[:, 0] = -(Xb @ g[:d])
        _, sol, info = _posv(Kb, rhs, lower=1, overwrite_a=1, overwrite_b=1)
        if info != 0:
            Kb = Xb @ Xb.T
            Kb.flat[::nb + 1] += 1.0 / t
            sol = np.linalg.lstsq(Kb, rhs, rcond=None)[0]
        db = (-g[d] - sol[:, 0].sum()) / sol[:, 1].sum()
        out = np.empty(q)
        out[:d] = -g[:d] - Xb.T @ (sol[:, 0] + db * sol[:, 1])
        out[d] = db
        return out
    H = Zb.T @ Zb
    H *= t
    H.flat[:d * (d + 2):d + 2] += 1.0  # the penalty on w (the intercept has none)
    _, sol, info = _posv(H, -g, lower=1)
    return sol if info == 0 else np.linalg.lstsq(H, -g, rcond=None)[0]


def _least_squares_start(X: np.ndarray, Y: np.ndarray, box: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """The first smooth problem with every row inside its band: ``min ½‖w‖² + (t/2) Σ_i [c_i > 0] (1 − m_i)²``,
    a ridge problem whose Hessian all machines share (one factorisation)."""
    d = X.shape[1]
    Z = np.hstack([X[box > 0], np.ones((int(np.sum(box > 0)), 1))])
    H = t * (Z.T @ Z)
    H[np.arange(d), np.arange(d)] += 1.0
    theta = np.linalg.solve(H, t * (Z.T @ Y[box > 0]))
    return theta[:d], theta[d]
