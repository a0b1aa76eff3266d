"""SVC (linear and RBF kernels): the slope from the KKT conditions, after refining libsvm's solution.

Dual (scikit-learn's SVC, labels y = ±1, Q_ij = y_i y_j K(x_i, x_j)): ``0 ≤ α_i ≤ C s_i``,
``Σ α_i y_i = 0``, ``f(x) = Σ α_i y_i K(x_i, x) + b``. At the optimum every point is in one set:

* N (α = 0): ``y f ≥ 1``;  B (α = C, "bound"): ``y f ≤ 1``;  S (0 < α < C, "margin"): ``y f = 1``.

**Refinement.** libsvm stops at ``tol`` (1e-3 by default), where α, b — and sometimes the sets —
are approximate. Given the sets, α_S and b follow exactly from the equalities
``Q_SS α_S + y_S b = 1 − C Q_SB 1`` and ``y_Sᵀ α_S = −C y_Bᵀ 1`` (one LU of the KKT matrix,
reused by every derivative). The refined solution is then checked on every training point;
violators change sets (an α_S outside (0, C) to N or B, a point of N with ``y f < 1 − KKT_TOL`` or of
B with ``y f > 1 + KKT_TOL`` to S) and the equalities are solved again, at most
``MAX_ACTIVE_SET_STEPS`` times. If that does not settle, libsvm refits once at a 1000× tighter
``tol``; if that fails too, :class:`~robust_hpo.errors.NotConvergedError` names ``tol`` and
``max_iter``. The refined α, b are written back to the estimator (its predictions are those of the
differentiated solution).

**Derivative** (Cauwenberghs & Poggio 2001; NOTES.md): poison points with ``t f(x̃) < 1`` enter
with ``α = Cβ``; α_S and b move so that ``y_S f(x_S) = 1`` and ``Σ α y = 0`` keep holding. The hinge
curve is piecewise linear in β: the value is the right derivative at 0.

**Degenerate SVC** (no margin support vector — typical at very small C, or with all points support
vectors at the bound): the intercept is set-valued at β = 0 (every b in an interval
``[b_lo, b_hi]`` satisfies the KKT conditions; libsvm returns its middle). For β > 0 the poison's
hinge terms break the tie, so the intercept — hence the learning curve — *jumps* at β = 0⁺ and the
derivative at 0 does not exist. robust_hpo then returns the **one-sided value**: the right derivative
on the linear piece just after the jump (the intercept moves to the b* ∈ [b_lo, b_hi] minimising the
poison's hinge sum; the points that fix b* form the KKT system), with ``SlopeResult.exact = False``
and ``details`` ``degenerate``, ``one_sided``, ``intercept_interval``, ``intercept_jump`` (b* − b)
and ``loss_jump`` (L(0⁺) − L(0) on the triggered points). When b* is not unique the slope is refused
with :class:`~robust_hpo.errors.DegenerateSolveError`. Per-point influences
(:class:`~robust_hpo.slope.TrainingInfluence`) are refused at a degenerate SVC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.base import clone
from sklearn.svm import SVC

from robust_hpo.errors import DegenerateSolveError, NotConvergedError, ValidationError
from robust_hpo.slope._base import (
    Attack,
    AttackSolution,
    ConvexSlopeModel,
    check_no_class_weight,
    check_positive,
    estimator_settings,
    fit_layout,
    hinge_active,
    on_the_kink,
)

KKT_TOL = 1e-7
"""Tolerance on the margin conditions ``y f ≥ 1`` (N) and ``y f ≤ 1`` (B) of the refined solution."""

MAX_ACTIVE_SET_STEPS = 10

REFIT_TOL_FACTOR = 1e-3
"""When refinement does not settle, libsvm refits once at ``min(tol, 1e-3) × REFIT_TOL_FACTOR``."""

REFIT_MAX_ITER = 100_000_000
"""libsvm iterations allowed to that refit when the estimator sets no limit (max_iter=-1), at least 100× the
first fit's: at tol·1e-3 libsvm may take minutes without meeting its stopping rule (a 300-row machine of a
7-class SGD hinge: > 160 s), while a standardised 300-row table converged at 1e-9 after 39 million (8 s)."""

LIBSVM_MAX_INT = 2 ** 31 - 1
"""libsvm takes ``max_iter`` as a C int: a larger value raises OverflowError."""

FLAT_SPREAD = 1e-2
"""A linear SVM whose decision values span at most this (margin units) over the training rows is flat (w ≈ 0)."""


def _refit_max_iter(est: SVC) -> int:
    """libsvm's iteration limit for the tighter refit of ``est`` (fitted with ``max_iter=-1``): at least
    :data:`REFIT_MAX_ITER` and 100× the first fit's iterations, within libsvm's C ``int``."""
    return min(max(REFIT_MAX_ITER, 100 * int(np.sum(getattr(est, "n_iter_", 0)))), LIBSVM_MAX_INT)


def _unsettled_advice(refit: SVC, d: int, weights: np.ndarray | None = None) -> str:
    """What to change when neither libsvm's fit nor its tighter refit could be refined to the optimum
    (``weights``: the clean rows' effective sample weights, whose α box is C·s_i)."""
    box = float(refit.C) * (1.0 if weights is None else weights[refit.support_])
    free = int(np.count_nonzero(np.abs(refit.dual_coef_[0]) < box * (1.0 - 1e-8)))  # claimed on the margin
    if getattr(refit, "fit_status_", 0) == 1:
        why = f"; that refit stopped at its iteration limit (max_iter={refit.max_iter})"
    elif refit.kernel == "linear" and free > d + 1 and float(refit.tol) <= 1e-5:  # not a loose fit's guess
        why = (f"; it leaves {free} support vectors strictly inside the box for the {d + 1} unknowns of a "
               f"linear kernel on {d} features, where at most {d + 1} can sit on the margin")
    else:
        return ": lower tol or raise max_iter"
    return (f"{why}: libsvm cannot resolve this problem's optimum; use LinearSVC (the squared hinge, whose "
            "optimum Newton's method finds) or LogisticRegression, or try standardised features "
            "(make_pipeline(StandardScaler(), ...)) or another C")


_ROW_BLOCK = 2048  # rows of a kernel block (bounds the memory of K(X, X_sv) on large n)


class SVCSlope(ConvexSlopeModel):
    """KKT sensitivity of ``SVC`` on the refined clean solution (see the module docstring).

    ``gamma='scale'``/``'auto'`` is resolved on the clean training set and held fixed along β.
    """

    loss_name = "hinge"
    bound_rtol = 1e-8
    """Reading libsvm's solution: α ≥ C (1 − bound_rtol) is at the bound."""
    kkt_tol = KKT_TOL
    max_active_set_steps = MAX_ACTIVE_SET_STEPS

    def _check_params(self, est: SVC) -> None:
        if est.kernel not in ("linear", "rbf"):
            raise ValidationError(f"SVC kernel must be 'linear' or 'rbf' for the exact slope, got {est.kernel!r}")
        check_positive("C", est.C, SVC)
        if est.kernel == "rbf" and not isinstance(est.gamma, str):
            check_positive("gamma", est.gamma, SVC)
        elif isinstance(est.gamma, str) and est.gamma not in ("scale", "auto"):
            raise ValidationError(f"SVC gamma must be a positive number, 'scale' or 'auto', got {est.gamma!r}")
        check_no_class_weight(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._ovo import OneVsOneSVC

        return OneVsOneSVC(SVCSlope)

    def _estimator_for_fit(self, X: np.ndarray) -> SVC:
        est = clone(self.estimator)
        if est.kernel == "rbf" and isinstance(est.gamma, str):
            gamma = 1.0 / X.shape[1] if est.gamma == "auto" else 1.0 / (X.shape[1] * X.var())
            if not gamma > 0 or not math.isfinite(gamma):
                raise ValidationError("gamma='scale' is undefined: X_clean has zero variance; pass a number")
            est.set_params(gamma=gamma)
        return est

    # -- kernels ---------------------------------------------------------------------------------
    def kernel(self, A: np.ndarray, B: np.ndarray, B_norms: np.ndarray | None = None) -> np.ndarray:
        """K(A, B): ``A Bᵀ`` or ``exp(−γ‖a − b‖²)`` (plain BLAS, in place; no per-call validation).
        ``B_norms``: the rows' ``‖b‖²`` when known."""
        G = A @ B.T
        if self.estimator_.kernel == "linear":
            return G
        gamma = self.estimator_.gamma
        b2 = np.einsum("ij,ij->i", B, B) if B_norms is None else B_norms
        G *= 2.0 * gamma                                   # −γ(‖a‖² + ‖b‖² − 2 a·b), in place
        G -= gamma * np.einsum("ij,ij->i", A, A)[:, None]
        G -= gamma * b2[None, :]
        np.minimum(G, 0.0, out=G)
        return np.exp(G, out=G)

    def _kernel_rows(self, A: np.ndarray, B: np.ndarray, B_norms: np.ndarray | None = None) -> np.ndarray:
        """K(A, B), in row blocks (bounded memory for large A)."""
        if B_norms is None and self.estimator_.kernel != "linear":
            B_norms = np.einsum("ij,ij->i", B, B)
        if A.shape[0] <= _ROW_BLOCK:
            return self.kernel(A, B, B_norms)
        return np.vstack([self.kernel(A[i:i + _ROW_BLOCK], B, B_norms) for i in range(0, A.shape[0], _ROW_BLOCK)])

    def _kernel_dot(self, A: np.ndarray, B: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``K(A, B) @ v`` (v a vector or a matrix), without forming K for the linear kernel."""
        if B.shape[0] == 0:
            return np.zeros((A.shape[0],) + v.shape[1:])
        if self.estimator_.kernel == "linear":
            return A @ (B.T @ v)
        if A.shape[0] <= _ROW_BLOCK:
            return self.kernel(A, B) @ v
        return np.concatenate([self.kernel(A[i:i + _ROW_BLOCK], B) @ v
                               for i in range(0, A.shape[0], _ROW_BLOCK)])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``Σ_sv (α y)_sv K(x_sv, x) + b`` of the refined solution, computed with BLAS."""
        if self._w is not None:
            return X @ self._w + self._b
        if X.shape[0] <= _ROW_BLOCK:
            return self.kernel(X, self._X_sv, self._sv_norms) @ self._coef_sv + self._b
        return self._kernel_dot(X, self._X_sv, self._coef_sv) + self._b

    # -- refinement ------------------------------------------------------------------------------
    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        details: dict[str, Any] = {"method": "svm-kkt", "kernel": self.estimator_.kernel}
        try:
            state = self._refine(X, y_pm, self.estimator_)
        except _Unsettled as first:  # the sets libsvm found are not the optimum's
            est = self.estimator_
            if float(est.tol) <= 1e-3:  # libsvm's default or tighter: w ≈ 0 there is the optimum's, not a loose fit's
                self._refuse_a_flat_optimum(est, X)
            tol = min(float(est.tol), 1e-3) * REFIT_TOL_FACTOR
            tighter = clone(est).set_params(tol=tol, class_weight=None)
            if tighter.max_iter == -1:  # at a tight tol libsvm can run for minutes (float rounding): bound it
                tighter.set_params(max_iter=_refit_max_iter(est))
            weights = self.clean_weights()
            tighter.fit(X, np.where(y_pm > 0, self.classes_[1], self.classes_[0]),
                        **({} if weights is None else {"sample_weight": weights}))
            try:
                state = self._refine(X, y_pm, tighter)
            except _Unsettled as second:
                self._refuse_a_flat_optimum(tighter, X)
                raise NotConvergedError(
                    f"{estimator_settings(self.estimator)}: the solution does not satisfy its KKT "
                    f"conditions (violation {first.violation:.2e}) and active-set refinement did not "
                    f"settle, nor after a refit at tol={tol:g} (violation {second.violation:.2e})"
                    f"{_unsettled_advice(tighter, X.shape[1], weights)}"
                ) from None
            self.estimator_ = tighter
            details["refit_tol"] = tol
            state = state[:4] + (first.violation,) + state[5:]  # the residual of the user's fit
        return self._finish_prepare(X, y_pm, state, details)

    def _refuse_a_flat_optimum(self, est: SVC, X: np.ndarray) -> None:
        """A linear SVM whose decision values barely vary (w ≈ 0: the classes are not separated at all at this
        regularisation) puts every row on its margin or inside it: the KKT system is degenerate, the sets do
        not settle, and a tighter libsvm refit only spends minutes before failing too. Refused at once (read
        on a fit at libsvm's default ``tol`` or tighter: a looser one may stop before w moves)."""
        if est.kernel != "linear":
            return
        spread = float(np.ptp(est.decision_function(X)))
        if spread <= FLAT_SPREAD:
            raise NotConvergedError(
                f"{estimator_settings(self.estimator)}: the optimum is flat (w ≈ 0: its decision values span "
                f"{spread:.1e} over the training rows, in margin units) — no hyperplane separates the positive "
                "class from the other at all, every row sits on the margin or inside it, and the KKT system that "
                "defines the slope is degenerate; use LinearSVC or LogisticRegression (smooth losses: a unique "
                "optimum), or features that separate the classes")

    def _finish_prepare(self, X: np.ndarray, y_pm: np.ndarray, state: tuple,
                        details: dict[str, Any]) -> dict[str, Any]:
        """Install a refined solution ``state`` (:meth:`_refine`'s tuple) as this fit's."""
        alpha, b, S, B, residual_fit, residual, steps = state
        C = float(self.estimator_.C)
        self._C = C
        details.update(gamma=float(getattr(self.estimator_, "_gamma", 0.0)), n_margin_sv=int(S.sum()),
                       n_bound_sv=int(B.sum()), residual_fit=residual_fit, residual=residual,
                       active_set_steps=steps)
        self._set_solution(X, y_pm, alpha, b, S, B)
        if not getattr(self, "_view", False):  # a one-vs-one machine's estimator is a throwaway view
            self._write_back(X, y_pm)
        self._degenerate = not S.any()
        if self._degenerate:
            details["degenerate"] = True
            details["intercept_interval"] = list(self._interval)
            lo, hi = self._interval_ends
            self._ends = {side: (X[mask], y_pm[mask], B[mask]) for side, mask in (("lo", lo), ("hi", hi))}
        return details

    def _refine(self, X: np.ndarray, y_pm: np.ndarray,
                est: SVC) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, float, float, int]:
        """Exact α, b on libsvm's sets, corrected until every KKT condition holds; raises
        ``_Unsettled`` otherwise. Returns (α, b, S, B, violation before, violation after, steps)."""
        n = X.shape[0]
        weights = self.clean_weights()
        C = float(est.C) * (np.ones(n) if weights is None else weights)  # per-point box: α_i ≤ C s_i κ_i
        self._Cv = C
        alpha = np.zeros(n)
        alpha[est.support_] = np.abs(est.dual_coef_.ravel())
        B = (alpha >= C * (1.0 - self.bound_rtol)) & (C > 0)
        S = (alpha > 0) & ~B
        alpha[B] = C[B]
        b = float(est.intercept_[0])
        self._train_kernel = _TrainingKernel(self, X)
        before = self._violation(X, y_pm, alpha, b, S, B, C)[0]
        self._interval = (b, b)
        steps = 0
        try:
            while True:
                if S.any():
                    alpha, b = self._solve_equalities(X, y_pm, alpha, S, B, C)
                    violation, moves = self._violation(X, y_pm, alpha, b, S, B, C)
                else:
                    b, moves, violation = self._without_margin_sv(X, y_pm, alpha, b, S, B, C)
                if moves is None:
                    return alpha, b, S, B, before, violation, steps
                if steps >= MAX_ACTIVE_SET_STEPS:
                    raise _Unsettled(violation)
                S, B, alpha = moves
                steps += 1
        except _Unsettled:
            raise _Unsettled(before) from None  # report the violation of the fit that was refined

    def _solve_equalities(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, S: np.ndarray,
                          B: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, float]:
        K = self._train_kernel
        S_idx, B_idx = np.flatnonzero(S), np.flatnonzero(B)
        yS = y_pm[S_idx]
        kkt = self._kkt_from(K.block(S_idx, S_idx), yS, 0.0)
        rhs = np.empty(yS.size + 1)
        cB = C[B_idx] * y_pm[B_idx]  # α y of the bound support vectors
        rhs[:-1] = 1.0 - yS * (K.block(S_idx, B_idx) @ cB if B_idx.size else 0.0)
        rhs[-1] = -cB.sum()
        lu = _lu(kkt)
        self._last_kkt = (S_idx, kkt, lu)  # the final sets' system is the derivative's (_set_solution)
        sol, _, res = _solve_with(kkt, lu, rhs)
        if not res <= 1e-6:  # no α_S, b put S on the margin: the sets are wrong
            raise _Unsettled(res)
        out = alpha.copy()
        out[S_idx] = sol[:-1]
        return out, float(sol[-1])

    def _kkt_matrix(self, XS: np.ndarray, yS: np.ndarray, damping: float) -> np.ndarray:
        return self._kkt_from(self.kernel(XS, XS), yS, damping)

    @staticmethod
    def _kkt_from(KSS: np.ndarray, yS: np.ndarray, damping: float) -> np.ndarray:
        s = yS.size
        kkt = np.zeros((s + 1, s + 1))
        kkt[:s, :s] = yS[:, None] * KSS * yS[None, :]
        kkt[:s, s] = yS
        kkt[s, :s] = yS
        if damping:
            kkt[np.arange(s), np.arange(s)] += damping
        return kkt

    def _margins(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, b: float) -> np.ndarray:
        sv = np.flatnonzero(alpha > 0)
        return y_pm * (self._train_kernel.dot(sv, alpha[sv] * y_pm[sv]) + b)

    def _violation(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, b: float, S: np.ndarray,
                   B: np.ndarray, C: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """Largest KKT violation (margin units; α's in units of C) and the corrected sets, or None."""
        yf = self._margins(X, y_pm, alpha, b)
        N = ~(S | B)
        low, high = S & (alpha <= 0), S & (alpha >= C)
        enter = ((N & (yf < 1.0 - KKT_TOL)) | (B & (yf > 1.0 + KKT_TOL))) & (C > 0)
        parts = [np.max(np.abs(yf[S] - 1.0), initial=0.0),
                 np.max(np.maximum(0.0, 1.0 - yf[N]), initial=0.0),
                 np.max(np.maximum(0.0, yf[B] - 1.0), initial=0.0),
                 np.max(np.maximum(0.0, -alpha[S]) / C[S], initial=0.0),
                 np.max(np.maximum(0.0, alpha[S] - C[S]) / C[S], initial=0.0)]
        violation = float(max(parts))
        if not (low.any() or high.any() or enter.any()):
            return violation, None
        S_new = (S & ~low & ~high) | enter
        B_new = (B & ~enter) | high
        alpha_new = alpha.copy()
        alpha_new[low] = 0.0
        alpha_new[high] = C[high]
        return violation, (S_new, B_new, alpha_new)

    def _without_margin_sv(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, b: float,
                           S: np.ndarray, B: np.ndarray, C: float):
        """No margin SV: the interval of intercepts satisfying every KKT condition. A point-sized
        interval puts its end points on the margin (into S); an empty one, or Σ α y ≠ 0, means the
        sets are wrong (the caller refits); a proper interval is the degenerate case."""
        h = self._margins(X, y_pm, alpha, 0.0) * y_pm  # f − b
        N = ~(S | B)
        lower = np.where((N & (y_pm > 0)) | (B & (y_pm < 0)), y_pm - h, -np.inf)  # b ≥ ±1 − h
        upper = np.where((N & (y_pm < 0)) | (B & (y_pm > 0)), y_pm - h, np.inf)   # b ≤ ±1 − h
        b_lo, b_hi = float(lower.max()), float(upper.min())
        balance = abs(float(alpha @ y_pm)) / float(np.max(C))
        if balance > 0.5 or not b_lo <= b_hi + KKT_TOL:
            raise _Unsettled(max(balance, b_lo - b_hi))  # Σ α y ≠ 0 or no intercept fits: wrong sets
        self._interval = (b_lo, b_hi)
        self._interval_ends = (lower >= b_lo - KKT_TOL, upper <= b_hi + KKT_TOL)
        if b_hi - b_lo <= KKT_TOL:  # one intercept fits: the points that fix it are on the margin
            ends = (lower >= b_lo - KKT_TOL) | (upper <= b_hi + KKT_TOL)
            return b, (S | ends, B & ~ends, alpha), 0.0
        return min(max(b, b_lo), b_hi), None, 0.0

    def _install(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, b: float, S: np.ndarray,
                 B: np.ndarray) -> None:
        """Take a solution refined elsewhere (α, b and their sets, S not empty: the batched one-vs-one
        refinement of :mod:`._ovo`) as this fit's, as :meth:`_prepare` would leave it."""
        self._C = float(self.estimator_.C)
        self._interval = (b, b)
        self._degenerate = False
        self._train_kernel = _TrainingKernel(self, X)
        self._last_kkt = None
        self._set_solution(X, y_pm, alpha, b, S, B)

    def _set_solution(self, X: np.ndarray, y_pm: np.ndarray, alpha: np.ndarray, b: float,
                      S: np.ndarray, B: np.ndarray) -> None:
        sv = np.flatnonzero(alpha > 0)
        self._sv_index = sv
        self._X_sv = X[sv]
        self._sv_norms = np.einsum("ij,ij->i", self._X_sv, self._X_sv)
        self._coef_sv = alpha[sv] * y_pm[sv]
        self._b = b
        S_idx = np.flatnonzero(S)
        self._XS = X[S_idx]
        self._yS = y_pm[S_idx]
        self._S_in_sv = np.searchsorted(sv, S_idx)  # S ⊂ support vectors
        self._w = self._X_sv.T @ self._coef_sv if self.estimator_.kernel == "linear" else None
        B_idx = np.flatnonzero(B)
        codes = self.weights_.codes
        # bound support vectors: α = C s κ moves with κ ("balanced"): their rows, labels, s and class
        self._bound = (X[B_idx], y_pm[B_idx], self.weights_.sample[B_idx], codes[B_idx])
        last = getattr(self, "_last_kkt", None)
        self._last_kkt = None
        self._kkt_lu: tuple[np.ndarray, np.ndarray] | None = None
        if S.any() and last is not None and not self.damping and np.array_equal(last[0], S_idx):
            self._kkt, self._kkt_lu = last[1], last[2]  # refinement's last system: the same matrix
        else:
            self._kkt = self._kkt_from(self._train_kernel.block(S_idx, S_idx), self._yS, self.damping) \
                if S.any() else np.zeros((1, 1))
        self._train_kernel = None  # n × n_sv floats: not kept after fitting

    def _write_back(self, X: np.ndarray, y_pm: np.ndarray) -> None:
        """The refined solution into the estimator (libsvm's layout: support vectors grouped by class)."""
        est = self.estimator_
        sv = self._sv_index
        order = np.concatenate([sv[y_pm[sv] < 0], sv[y_pm[sv] > 0]])  # classes_[0] first, each in index order
        coef = np.empty(order.size)
        position = {int(i): k for k, i in enumerate(sv)}
        coef[:] = [self._coef_sv[position[int(i)]] for i in order]
        est.support_ = order.astype(np.int32)
        est.support_vectors_ = np.ascontiguousarray(X[order])
        est._n_support = np.array([(y_pm[sv] < 0).sum(), (y_pm[sv] > 0).sum()], dtype=np.int32)
        est.dual_coef_ = coef[None, :]
        est._dual_coef_ = -est.dual_coef_
        est.intercept_ = np.array([self._b])
        est._intercept_ = -est.intercept_

    # -- derivatives -------------------------------------------------------------------------------
    def _solve_kkt(self, rhs: np.ndarray) -> np.ndarray:
        """Solve the (symmetric, indefinite) KKT system; least squares when it is singular."""
        if self._kkt_lu is None:
            self._kkt_lu = _lu(self._kkt)
        sol, method, res = _solve_with(self._kkt, self._kkt_lu, rhs)
        if not res <= 1e-6:
            raise DegenerateSolveError(
                f"the SVC KKT system has no consistent solution (relative residual {res:.2e})"
            )
        self.details_["kkt_solver"] = method
        self.details_["kkt_residual"] = float(res)
        return sol

    def point_influences(self, X: np.ndarray, y_pm: np.ndarray, X_test: np.ndarray, y_test_pm: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """Right derivatives from one KKT solve for the test side. A point enters (its α grows with its
        weight, ``α = C s``) if it is a bound support vector of the fit (``in_fit``) or, for a point
        outside the fit, if it violates its margin (``y f < 1``); other points have influence 0. At
        test points beyond the margin the hinge is flat: they contribute nothing to ``"loss"``."""
        self._check_not_degenerate()
        if in_fit:
            entering = np.zeros(X.shape[0], dtype=bool)
            alpha = np.abs(self.estimator_.dual_coef_.ravel())
            entering[self.estimator_.support_[alpha >= self._C * (1.0 - self.bound_rtol)]] = True
        else:
            entering = y_pm * self.decision_function(X) < 1.0
        out = np.zeros(X.shape[0])
        active = (y_test_pm * self.decision_function(X_test) < 1.0 if quantity == "loss"
                  else np.ones(X_test.shape[0], dtype=bool))
        if not entering.any() or not active.any():
            return out
        XtA, ttA = X_test[active], y_test_pm[active]
        n_t = X_test.shape[0]
        s = self._yS.size
        # a = (1/n_t) Σ_t (−t_t) [y_S ∘ K(S, x_t); 1]: the test side of dL/ds_j = aᵀ KKT⁻¹ r_j + b_j
        a = np.empty(s + 1)
        a[:s] = self._yS * (self.kernel(self._XS, XtA) @ -ttA) / n_t
        a[s] = -ttA.sum() / n_t
        u = self._solve_kkt(a)
        Xe, ye = X[entering], y_pm[entering]
        # r_j = −C y_j [y_S ∘ K(S, x_j); 1];  b_j = (1/n_t) Σ_t (−t_t) C y_j K(x_j, x_t)
        r_dot_u = -self._C * ye * (self.kernel(Xe, self._XS) @ (u[:s] * self._yS) + u[s])
        b = self._C * ye * (self.kernel(Xe, XtA) @ -ttA) / n_t
        out[entering] = r_dot_u + b
        return out

    def _check_not_degenerate(self) -> None:
        """Per-point influences are not defined at a degenerate SVC (the intercept jumps at 0⁺)."""
        if self._degenerate:
            b_lo, b_hi = self._interval
            raise DegenerateSolveError(
                f"SVC(C={self._C:g}) has no margin support vector: every support vector is at the bound "
                f"C, so the intercept is set-valued at β = 0 (any b in [{b_lo:.4g}, {b_hi:.4g}] is "
                "optimal) and jumps at β = 0⁺; per-point influences are not defined; increase C "
                "(or change gamma)"
            )

    def _solve_attacks(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        out = []
        rbf = self._w is None
        for a in attacks:
            Kt = self._kernel_rows(a.X_trigger, self._X_sv, self._sv_norms) if rbf else None
            ft = (Kt @ self._coef_sv if rbf else a.X_trigger @ self._w) + self._b
            moving = a.motion is not None and bool(np.any(a.motion.rho))
            if self._degenerate:
                if moving or a.class_motion is not None or a.weight is not None:
                    raise DegenerateSolveError(
                        f"SVC(C={self._C:g}) has no margin support vector: the slope with a scaler or class weights "
                        "is not defined at a degenerate SVC; increase C")
                out.append(self._one_sided(a, ft))
                continue
            Kp = self._kernel_rows(a.X_poison, self._X_sv, self._sv_norms) if rbf else None
            fp = (Kp @ self._coef_sv if rbf else a.X_poison @ self._w) + self._b
            viol = a.t_poison * fp < 1.0  # poison points that enter at α = Cβ
            details: dict[str, Any] = {"n_poison_entering": int(viol.sum())}
            bound_moves = a.class_motion is not None and self._bound[0].shape[0] > 0
            if not viol.any() and not moving and not bound_moves:
                out.append(AttackSolution(0.0, ft, np.zeros_like(ft), details))
                continue
            # entering rows and their coefficients per unit Cβ: poison κ_p t_p
            Xv, tv = a.X_poison[viol], a.t_poison[viol] * (1.0 if a.weight is None else a.weight[viol])
            # K(S, viol) tv: a block of the poison rows' kernel (S ⊂ support vectors)
            KSv_tv = Kp[viol][:, self._S_in_sv].T @ tv if rbf else self._XS @ (Xv.T @ tv)
            if bound_moves:  # class_weight="balanced": the bound α = C s κ move by C s κ' y
                XB, yB, sB, cB = self._bound
                Xv = np.vstack([Xv, XB])
                coef_B = yB * sB * a.class_motion[cB]
                tv = np.concatenate([tv, coef_B])
                KSv_tv = KSv_tv + self._kernel_dot(self._XS, XB, coef_B)
            kernel_motion = self._kernel_motion(a.motion.rho) if moving else None
            if kernel_motion is not None:
                KSv_tv = KSv_tv + kernel_motion(self._XS) / self._C  # the margin rows' −y_s ∂f(x_s)
            d_alpha, d_b = self._kkt_derivative(self._XS, self._yS, Xv, tv, KSv_tv)
            out.append(self._trigger_side(a, ft, ft, self._XS, self._yS * d_alpha, Xv, tv, d_b, details,
                                          Kt_S=None if Kt is None else Kt[:, self._S_in_sv],
                                          kernel_motion=kernel_motion))
        return out

    def _kernel_motion(self, rho: np.ndarray):
        """``x ↦ ∂f(x)/∂β`` at fixed α, b when a pipeline scaler's variances move (ρ' per feature, see
        :mod:`._preprocess`): in the clean scaler's coordinates the kernel is ``x'ᵀ diag(1/ρ) z'``
        (linear) or ``exp(−γ Σ_j (x'_j − z'_j)² / ρ_j)`` (rbf), so ∂K = −x'ᵀ diag(ρ') z' or
        ``K · γ Σ_j ρ'_j (x'_j − z'_j)²``."""
        if self._w is not None:
            v = rho * self._w
            return lambda X: -(X @ v)
        gamma, Xsv, coef = float(self.estimator_.gamma), self._X_sv, self._coef_sv
        sv_rho = (Xsv * Xsv) @ rho

        def motion(X: np.ndarray) -> np.ndarray:
            Kx = self.kernel(X, Xsv, self._sv_norms)
            dist = sv_rho[None, :] + ((X * X) @ rho)[:, None] - 2.0 * (X * rho) @ Xsv.T
            return gamma * ((Kx * dist) @ coef)
        return motion

    def _kkt_derivative(self, XS: np.ndarray, yS: np.ndarray, Xv: np.ndarray, tv: np.ndarray,
                        KSv_tv: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """dα_S/dβ, db/dβ when the poison points Xv (labels tv) enter at α = Cβ (``KSv_tv``:
        K(XS, Xv) tv when already known)."""
        s = yS.size
        rhs = np.empty(s + 1)
        rhs[:s] = -self._C * yS * (self._kernel_dot(XS, Xv, tv) if KSv_tv is None else KSv_tv)
        rhs[s] = -self._C * tv.sum()
        if XS is self._XS:
            sol = self._solve_kkt(rhs)
        else:
            kkt = self._kkt_matrix(XS, yS, self.damping)
            sol, method, res = _solve_with(kkt, _lu(kkt), rhs)
            if not res <= 1e-6:
                raise DegenerateSolveError(
                    f"the SVC KKT system has no consistent solution (relative residual {res:.2e})")
        return sol[:s], float(sol[s])

    def _trigger_side(self, a: Attack, ft: np.ndarray, ft_from: np.ndarray, XS: np.ndarray,
                      coef_S: np.ndarray, Xv: np.ndarray, tv: np.ndarray, d_b: float,
                      details: dict[str, Any], exact: bool = True,
                      Kt_S: np.ndarray | None = None, kernel_motion: Any = None) -> AttackSolution:
        """dL/dβ and df_t/dβ = K(x_t, S) coef_S + C K(x_t, viol) t_viol + db at the triggered points.

        ``ft_from``: their decision values where the derivative starts (β = 0, or 0⁺ after a jump),
        which decide where the hinge is not flat; ``Kt_S``: K(X_trigger, S) when already computed.
        The slope needs df on the triggered points inside the margin; the margins need it on the
        others too — that part is timed as ``details["margins_seconds"]``."""
        active = a.t_trigger * ft_from < 1.0  # triggered points where the hinge is not flat
        n_t = a.X_trigger.shape[0]
        if self.estimator_.kernel == "linear":
            dw = XS.T @ coef_S + self._C * (Xv.T @ tv)
            if kernel_motion is not None:  # linear: ∂f(x) = −x'ᵀ(ρ' ⊙ w), i.e. w moves by −ρ' ⊙ w
                dw = dw + kernel_motion(np.eye(dw.size))
            if on_the_kink(a.t_trigger * ft_from).any():  # their side of the kink is the side df moves them to
                active = hinge_active(a.t_trigger * ft_from, a.t_trigger * (a.X_trigger @ dw + d_b))
            value = float(-(a.t_trigger[active] @ (a.X_trigger[active] @ dw + d_b)) / n_t)
            start = time.perf_counter()
            df = a.X_trigger @ dw + d_b
            details["margins_seconds"] = time.perf_counter() - start
            return AttackSolution(value, ft, df, details, exact=exact)
        df = (Kt_S @ coef_S if Kt_S is not None else self._kernel_dot(a.X_trigger, XS, coef_S)) + d_b
        if kernel_motion is not None:
            df += kernel_motion(a.X_trigger)
        Ct = self._C * tv
        kinks = on_the_kink(a.t_trigger * ft_from)
        active = active | kinks  # df is needed there to tell their side
        df[active] += self._kernel_dot(a.X_trigger[active], Xv, Ct)
        active = hinge_active(a.t_trigger * ft_from, a.t_trigger * df)
        value = float(np.sum(-a.t_trigger[active] * df[active]) / n_t)
        active = active | kinks  # their df already holds the violators' term
        start = time.perf_counter()  # the margins need df at the triggered points beyond the margin too
        if not active.all():
            df[~active] += self._kernel_dot(a.X_trigger[~active], Xv, Ct)
        details["margins_seconds"] = time.perf_counter() - start
        return AttackSolution(value, ft, df, details, exact=exact)

    def _one_sided(self, a: Attack, ft: np.ndarray) -> AttackSolution:
        """Degenerate SVC: the right derivative on the piece after the jump at β = 0⁺.

        For β > 0 the poison's hinge terms break the tie among the optimal intercepts: b jumps to
        b* = argmin over [b_lo, b_hi] of Σ_j max(0, 1 − t_j f_j(b)) (a convex piecewise-linear
        function: its minimum lies at an end of the interval or where a poison point reaches its
        margin). At b* the points that fix it are on the margin and form the KKT system; the
        entering poison is as usual. Refused (DegenerateSolveError) when b* is not unique.
        """
        b0, (b_lo, b_hi) = self._b, self._interval
        tp = a.t_poison
        hp = self.decision_function(a.X_poison) - b0  # poison decision values without the intercept
        kinks = tp - hp  # intercept at which poison point j is on its margin
        inside = kinks[(kinks > b_lo) & (kinks < b_hi)]
        candidates = np.unique(np.concatenate([[b_lo, b_hi], inside]))
        candidates = candidates[np.isfinite(candidates)]
        if candidates.size == 0:
            raise DegenerateSolveError(f"SVC(C={self._C:g}): the intercept is unbounded at β = 0")
        phi = np.maximum(0.0, 1.0 - tp[None, :] * (hp[None, :] + candidates[:, None])).sum(axis=1)
        best = int(np.argmin(phi))
        flat = np.abs(phi - phi[best]) <= 1e-12 * max(1.0, abs(phi[best]))
        if phi[best] == 0.0:
            # some intercepts of the interval leave every poison point beyond its margin: no poison
            # enters and nothing moves for β > 0 — exactly 0, unless the poison's constraints
            # narrow the interval (then libsvm's middle, hence f, jumps at 0⁺)
            zero = candidates[phi == 0.0]
            whole = zero.min() <= b_lo + KKT_TOL and zero.max() >= b_hi - KKT_TOL
            shift = 0.0 if whole else 0.5 * (zero.min() + zero.max()) - b0
            details = {"n_poison_entering": 0, "degenerate": True, "one_sided": not whole,
                       "intercept_jump": shift, "loss_jump": float(np.mean(
                           self.pointwise_loss(a.t_trigger, ft + shift) - self.pointwise_loss(a.t_trigger, ft)))}
            return AttackSolution(0.0, ft, np.zeros_like(ft), details, exact=whole)
        if flat.sum() > 1:
            raise DegenerateSolveError(
                f"SVC(C={self._C:g}) has no margin support vector (the intercept is set-valued in "
                f"[{b_lo:.4g}, {b_hi:.4g}] at β = 0) and the poison leaves it undetermined for β > 0: "
                "the slope is not defined; increase C (or change gamma)")
        b_star = float(candidates[best])
        on_margin = np.abs(tp * (hp + b_star) - 1.0) <= KKT_TOL
        viol = tp * (hp + b_star) < 1.0 - KKT_TOL
        parts_X, parts_y, sign = [a.X_poison[on_margin]], [tp[on_margin]], [np.zeros(on_margin.sum())]
        for side, value in (("lo", b_lo), ("hi", b_hi)):
            if abs(b_star - value) <= KKT_TOL:
                Xe, ye, bound = self._ends[side]
                parts_X.append(Xe)
                parts_y.append(ye)
                sign.append(np.where(bound, -1.0, 1.0))  # from the bound α can only fall, from 0 only rise
        XS, yS, sign_S = np.concatenate(parts_X), np.concatenate(parts_y), np.concatenate(sign)
        if yS.size == 0:
            raise DegenerateSolveError(f"SVC(C={self._C:g}): no point fixes the intercept after the jump")
        d_alpha, d_b = (self._kkt_derivative(XS, yS, a.X_poison[viol], tp[viol]) if viol.any()
                        else (np.zeros(yS.size), 0.0))
        scale = self._C * max(1, int(viol.sum()))
        wrong = ((sign_S > 0) & (d_alpha < -1e-9 * scale)) | ((sign_S < 0) & (d_alpha > 1e-9 * scale))
        if wrong.any():
            raise DegenerateSolveError(
                f"SVC(C={self._C:g}) has no margin support vector and the one-sided KKT solution after "
                "the jump at β = 0⁺ is not consistent; the slope is not defined: increase C")
        ft_after = ft + (b_star - b0)
        jump = float(np.mean(self.pointwise_loss(a.t_trigger, ft_after) - self.pointwise_loss(a.t_trigger, ft)))
        details = {"n_poison_entering": int(viol.sum()), "degenerate": True, "one_sided": True,
                   "intercept_jump": b_star - b0, "loss_jump": jump}
        return self._trigger_side(a, ft, ft_after, XS, yS * d_alpha, a.X_poison[viol], tp[viol], d_b,
                                  details, exact=False)

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - y_pm * f)


class _TrainingKernel:
    """Columns ``K(X, x_j)`` of the training kernel, each computed once (RBF); the linear kernel
    needs none (products go through ``X`` and ``w``)."""

    def __init__(self, model: "SVCSlope", X: np.ndarray) -> None:
        self.model = model
        self.X = X
        self.linear = model.estimator_.kernel == "linear"
        self.position: dict[int, int] = {}
        self.K = np.empty((X.shape[0], 0))
        self.flops = 0.0

    def _columns(self, idx: np.ndarray) -> np.ndarray:
        missing = [int(i) for i in idx if int(i) not in self.position]
        if missing:
            start = self.K.shape[1]
            new = self.model._kernel_rows(self.X, self.X[missing])
            self.K = np.hstack([self.K, new]) if start else new
            self.position.update({j: start + k for k, j in enumerate(missing)})
            self.flops += new.size * self.X.shape[1]
        return np.array([self.position[int(i)] for i in idx], dtype=np.intp)

    def dot(self, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``K(X, X[idx]) @ v`` over all training rows."""
        if idx.size == 0:
            return np.zeros(self.X.shape[0])
        if self.linear:
            return self.X @ (self.X[idx].T @ v)
        columns = self._columns(idx)  # may grow self.K
        return self.K[:, columns] @ v

    def block(self, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``K(X[rows], X[idx])``."""
        if self.linear:
            return self.X[rows] @ self.X[idx].T
        columns = self._columns(idx)
        return self.K[np.ix_(rows, columns)]


class _Unsettled(Exception):
    """Active-set refinement did not settle (internal; becomes a refit or NotConvergedError)."""

    def __init__(self, violation: float) -> None:
        super().__init__(violation)
        self.violation = violation


def _lu(A: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.errstate(all="ignore"):
            lu = linalg.lu_factor(A, check_finite=False)
    except (linalg.LinAlgError, ValueError):
        return None
    return lu if np.all(np.isfinite(lu[0])) else None


def _solve_with(A: np.ndarray, lu: tuple[np.ndarray, np.ndarray] | None,
                rhs: np.ndarray) -> tuple[np.ndarray, str, float]:
    """LU solve, or least squares when A is singular; (solution, method, relative residual)."""
    sol = None
    if lu is not None:
        with np.errstate(all="ignore"):
            sol = linalg.lu_solve(lu, rhs, check_finite=False)
    method = "lu"
    if sol is None or not np.all(np.isfinite(sol)) or _rel_residual(A, sol, rhs) > 1e-8:
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
        method = "lstsq"
    return sol, method, _rel_residual(A, sol, rhs)


def _rel_residual(A: np.ndarray, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(A @ x - b) / max(np.linalg.norm(b), 1e-300))


class SGDHingeSlope(SVCSlope):
    """``SGDClassifier(loss="hinge", penalty="l2")`` at the **exact optimum of its objective**
    ``½α‖w‖² + (1/n) Σ s_i max(0, 1 − y_i f_i)`` (n clean rows, fixed along β; intercept
    unpenalised): a linear SVM with ``C = 1/(α n)``, solved by libsvm and refined like ``SVC``
    (SGD itself stops early). ``estimator_`` is that ``SVC``. K ≥ 3: one-vs-rest, as SGD fits it."""

    fits_its_own_estimator = True
    refits_at_the_optimum = True

    def _check_params(self, est: Any) -> None:
        from robust_hpo.slope._linear import check_sgd

        check_sgd(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._ovr import OneVsRest

        return OneVsRest(SGDHingeSlope)

    def _estimator_for_fit(self, X: np.ndarray) -> SVC:
        if self._multi is not None:  # the one-vs-rest machines fit their own SVMs; this fit gives the layout
            return clone(self.estimator)
        return SVC(kernel="linear", C=1.0 / (float(self.estimator.alpha) * X.shape[0]), tol=1e-4)

    def _fit_estimator(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """K ≥ 3: SGD fitted on one row per class — only its layout (classes, K × d coefficients) is
        used: each one-vs-rest machine then fits and refines its own optimum and writes it in, so
        SGD's own epochs over every row would be thrown away. Two classes: the ``SVC`` itself."""
        if self._multi is None:
            return super()._fit_estimator(est, X, y)
        return fit_layout(est, X, y, early_stopping=False)  # no validation split of K rows

    def one_vs_rest_starts(self, X: np.ndarray, Y: np.ndarray) -> list[_DualStart] | None:
        """K ≥ 3, small designs: every machine's dual solution on the optimum's sets from one batched
        computation (:func:`~._hinge_batch.ovr_hinge_start`), each machine's start for :meth:`_prepare`
        in place of its libsvm fit; None (libsvm fits) for wide designs or where the sets did not settle."""
        from robust_hpo.slope._hinge_batch import ovr_hinge_start
        from robust_hpo.slope._multiclass import primal_is_cheap

        if not primal_is_cheap(*X.shape):
            return None
        C = float(self._estimator_for_fit(X).C)
        weights = self.clean_weights()
        box = C * (np.ones(X.shape[0]) if weights is None else weights)
        found = ovr_hinge_start(X, Y, box)
        if found is None:
            return None
        A, b, steps = found
        return [_DualStart(C, A[:, k], float(b[k]), steps) for k in range(Y.shape[1])]

    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        """From a one-vs-rest batched start (:meth:`one_vs_rest_starts`) when there is one: refined and
        checked like libsvm's solution; where its sets do not settle, libsvm fits the machine (as without it)."""
        start = self.__dict__.pop("_dual_start", None)
        if start is None:
            return super()._prepare(X, y_pm)
        try:
            state = self._refine(X, y_pm, start)
        except _Unsettled:
            self._fit_estimator(self.estimator_, X, y_pm)
            details = super()._prepare(X, y_pm)
            details["start"] = "libsvm (the batched start did not settle)"
            return details
        details = {"method": "svm-kkt", "kernel": "linear", "start": start.name}
        return self._finish_prepare(X, y_pm, state, details)


class _DualStart:
    """A machine's dual solution α ≥ 0, b in the attributes of a fitted ``SVC`` that
    :meth:`SVCSlope._refine` reads (``C``, ``support_``, ``dual_coef_`` — only its magnitude is read —,
    ``intercept_``)."""

    def __init__(self, C: float, alpha: np.ndarray, b: float, newton_steps: int) -> None:
        self.C = C
        self.support_ = np.flatnonzero(alpha > 0)
        self.dual_coef_ = alpha[self.support_][None, :]
        self.intercept_ = np.array([b])
        self.newton_steps = newton_steps

    name = "batched-proximal-newton"
