"""Factorised Hessians of L2-regularised linear models, solved in the cheaper space.

The training objective's Hessian at the clean solution is

    H = diag(r) + Zᵀ diag(q) Z,      Z = [X, 1]  (the column of ones only with an intercept),

with ``r = (r_w, …, r_w, r_b)`` the regulariser's curvature (r_b = 0 for an unpenalised intercept)
and ``q ≥ 0`` the per-sample curvature of the weighted data term. Two exact factorisations:

* primal: Cholesky of the (d+1)×(d+1) matrix H — cost O(n d² + d³);
* dual (Woodbury): Cholesky of the n×n matrix ``r_w I + S K S`` with ``K = X Xᵀ``, ``S = diag(√q)``,
  plus a Schur complement for an unpenalised intercept — cost O(n² d + n³).

and one matrix-free method:

* cg: conjugate gradients on ``v ↦ r ⊙ v + Zᵀ(q ⊙ (Z v))`` — O(n d) a product, to a relative
  residual of 1e-10, within a budget of products costing about as many flops as the primal
  factorisation. The budget is shared by all solves; when it runs out the primal Cholesky is built
  and used from then on (so the total stays within about twice the cheaper of the two).

``"auto"`` picks the cheaper factorisation by those flop counts, and cg instead of the primal one
when the curvature ``q`` depends on the solution (logistic regression: ``Xᵀ diag(q) X`` must be
rebuilt for every fit, while ridge's constant-curvature ``Xᵀ X`` and the dual's ``X Xᵀ`` are
cached across a study's trials). No n×n diagonal matrix is ever built.

A feature that is zero on every training point (a pixel that is black in every clean image — where
a corner trigger sits) has no data term: its row and column of H are ``r_w`` on the diagonal and 0
elsewhere. Such features are solved by ``v_j / r_w`` and the factorisation covers the others only
(exact; d counts the active features in the costs above).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import LinearOperator, cg

from robust_hpo.errors import SingularHessianError, ValidationError
from robust_hpo.slope._cache import GramCache

Space = Literal["auto", "primal", "dual", "cg"]

CG_RTOL = 1e-10
"""Relative residual ‖H x − v‖ / ‖v‖ at which conjugate gradients stop."""


_FLAT_INTERCEPT = ("the intercept's Schur complement is not positive: the Hessian is singular "
                   "(all training points have vanishing curvature); pass damping > 0")


def choose_space(n: int, d: int) -> Literal["primal", "dual"]:
    """The cheaper space for an n×d design, by flop count (forming plus factorising)."""
    primal = n * d * d + d ** 3 / 3.0
    dual = n * n * d + n ** 3 / 3.0
    return "primal" if primal <= dual else "dual"


class LinearModelHessian:
    """``H⁻¹ v`` for ``H = diag(r) + Zᵀ diag(q) Z`` (see the module docstring).

    Vectors are laid out as ``[w (d entries), b]`` when ``fit_intercept`` else ``[w]``.
    ``damping`` is added to every diagonal entry (0 for the exact convex problem). With a
    ``cache``, the data-only Gram products (``X Xᵀ`` in the dual; ``Xᵀ X`` in the primal when the
    curvature ``q`` is constant, as for ridge) are computed once per training array.
    """

    def __init__(self, X: np.ndarray, q: np.ndarray, *, r_w: float, r_b: float,
                 fit_intercept: bool, space: Space = "auto", damping: float = 0.0,
                 cache: GramCache | None = None) -> None:
        if r_w + damping <= 0:
            raise SingularHessianError("the weight regulariser's curvature must be positive")
        n, d = X.shape
        self.n = n
        self.fit_intercept = fit_intercept
        self.r_w = float(r_w) + damping
        self.r_b = float(r_b) + damping
        active = np.flatnonzero(np.any(X != 0, axis=0))
        # None: every feature is active; else the indices of the active ones (others: H_jj = r_w)
        self._active: np.ndarray | None = active if active.size < d else None
        self.d = int(active.size)
        if space not in ("auto", "primal", "dual", "cg"):
            raise ValidationError(f"space must be 'auto', 'primal', 'dual' or 'cg', got {space!r}")
        q = np.asarray(q, dtype=np.float64)
        self.space: Literal["primal", "dual", "cg"] = choose_space(n, self.d) if space == "auto" else space
        if space == "auto" and self.space == "primal" and np.ptp(q) > 0:
            self.space = "cg"
        self._cache = cache
        X_active = X if self._active is None else X[:, self._active]
        self.cg_iterations = 0
        if self.space == "primal":
            self._factor_primal(X, X_active, q)
        elif self.space == "dual":
            self._factor_dual(X, X_active, q)
        else:  # factorised only if the budget of products runs out
            if fit_intercept and not self.r_b + q.sum() > 1e-12 * max(1.0, q.sum()):
                raise SingularHessianError(_FLAT_INTERCEPT)
            self._X_full, self._X, self._q, self._cho = X, X_active, q, None
            self._cg_budget = max(10, int((n * self.d ** 2 + self.d ** 3 / 3.0) / (4.0 * n * max(self.d, 1))))

    @property
    def method(self) -> str:
        """How solves are done: ``"primal-cholesky"``, ``"dual-cholesky"`` or ``"primal-cg"``
        (``"primal-cg+cholesky"`` once conjugate gradients ran out of budget)."""
        if self.space != "cg":
            return f"{self.space}-cholesky"
        return "primal-cg" if self._cho is None else "primal-cg+cholesky"

    # -- primal ------------------------------------------------------------------------------
    def _factor_primal(self, X_full: np.ndarray, X: np.ndarray, q: np.ndarray) -> None:
        gram = self._cache.inner(X_full) if self._cache is not None and np.ptp(q) == 0 else None
        if gram is not None:  # constant curvature: Xᵀ diag(q) X = q₀ Xᵀ X
            if self._active is not None:
                gram = gram[np.ix_(self._active, self._active)]
            G = gram * q[0]
        else:
            W = X * np.sqrt(q)[:, None]
            G = W.T @ W  # numpy's syrk: half the flops of a general product
        G[np.diag_indices_from(G)] += self.r_w
        if self.fit_intercept:
            a = X.T @ q
            H = np.empty((self.d + 1, self.d + 1))
            H[:-1, :-1] = G
            H[:-1, -1] = H[-1, :-1] = a
            H[-1, -1] = q.sum() + self.r_b
        else:
            H = G
        self._cho = _cholesky(H, "the primal Hessian")

    # -- dual ----------------------------------------------------------------------------------
    def _factor_dual(self, X_full: np.ndarray, X: np.ndarray, q: np.ndarray) -> None:
        self._X = X
        self._s = np.sqrt(q)
        if self._cache is not None:  # X Xᵀ is the same with or without the all-zero columns
            M = self._cache.outer(X_full) * np.outer(self._s, self._s)
        else:
            W = X * self._s[:, None]
            M = W @ W.T  # syrk
        M[np.diag_indices_from(M)] += self.r_w
        self._cho = _cholesky(M, "the dual (Woodbury) system r_w·I + S·X·Xᵀ·S")
        if self.fit_intercept:
            a = X.T @ q  # Xᵀ D 1
            self._a = a
            self._a_solved = self._solve_A(a)
            schur = self.r_b + q.sum() - a @ self._a_solved
            if not schur > 1e-12 * max(1.0, q.sum()):
                raise SingularHessianError(_FLAT_INTERCEPT)
            self._schur = schur

    def _solve_A(self, v: np.ndarray) -> np.ndarray:
        """(r_w I + Xᵀ D X)⁻¹ v by Woodbury."""
        u = self._s * (self._X @ v)
        u = _cho_solve(self._cho, u)
        return (v - self._X.T @ (self._s * u)) / self.r_w

    # -- public ----------------------------------------------------------------------------------
    def solve(self, v: np.ndarray) -> np.ndarray:
        """Return ``H⁻¹ v`` for a vector laid out as ``[w, b]`` (or ``[w]``)."""
        v = np.asarray(v, dtype=np.float64)
        if self._active is None:
            return self._solve_active(v)
        index = np.append(self._active, v.shape[0] - 1) if self.fit_intercept else self._active
        out = v / self.r_w  # the features no training point touches
        out[index] = self._solve_active(v[index])
        return out

    def _solve_active(self, v: np.ndarray) -> np.ndarray:
        if self.space == "cg" and self._cho is None:
            x = self._solve_cg(v)
            if x is not None:
                return x
            self._factor_primal(self._X_full, self._X, self._q)
        if self.space != "dual":
            return _cho_solve(self._cho, v)
        if not self.fit_intercept:
            return self._solve_A(v)
        v_w, v_b = v[:-1], v[-1]
        Ainv_vw = self._solve_A(v_w)
        x_b = (v_b - self._a @ Ainv_vw) / self._schur
        x_w = Ainv_vw - self._a_solved * x_b
        return np.concatenate([x_w, [x_b]])


    # -- matrix-free ------------------------------------------------------------------------------
    def _matvec(self, v: np.ndarray) -> np.ndarray:
        X, q = self._X, self._q
        if not self.fit_intercept:
            return self.r_w * v + X.T @ (q * (X @ v))
        u = q * (X @ v[:-1] + v[-1])
        return np.concatenate([self.r_w * v[:-1] + X.T @ u, [self.r_b * v[-1] + u.sum()]])

    def _solve_cg(self, v: np.ndarray) -> np.ndarray | None:
        """H⁻¹ v by conjugate gradients within the remaining budget; None when it runs out."""
        remaining = self._cg_budget - self.cg_iterations
        if remaining <= 0 or not np.any(v):
            return None if remaining <= 0 else np.zeros_like(v)
        size = v.shape[0]
        operator = LinearOperator((size, size), matvec=self._matvec, dtype=np.float64)
        steps = [0]

        def count(_: np.ndarray) -> None:
            steps[0] += 1

        with np.errstate(all="ignore"):  # a breakdown shows as info != 0 or a non-finite x
            x, info = cg(operator, v, rtol=CG_RTOL, atol=0.0, maxiter=remaining, callback=count)
        self.cg_iterations += steps[0]
        if info != 0 or not np.all(np.isfinite(x)):
            self.cg_iterations = self._cg_budget  # spent: the factorisation takes over
            return None
        return x


def _cholesky(M: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor. numpy's, on purpose: it shares the BLAS threads that just built
    ``M`` (scipy ships a second OpenBLAS whose threads would contend with numpy's spinning ones)."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError as exc:
        raise SingularHessianError(
            f"{what} is not positive definite ({exc}); the clean solution has a singular Hessian — "
            "pass damping > 0 (documented in docs/slope.md) or strengthen the regularisation"
        ) from None


def _cho_solve(L: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(L Lᵀ)⁻¹ v`` by two triangular solves."""
    y = linalg.solve_triangular(L, v, lower=True, check_finite=False)
    return linalg.solve_triangular(L, y, lower=True, trans="T", check_finite=False)
