"""Exact slopes for K ≥ 3 classes: multinomial logistic regression, multi-output ridge, one-vs-one SVC (:mod:`._ovo`).

Each is the problem scikit-learn fits (s_i = sample weight: 1 clean, β poison; c_i ∈ {0..K−1} the
class index; f_i ∈ R^K the scores ``X W + b``):

* ``LogisticRegression`` (multinomial): ``½‖W‖² + C Σ s_i [logsumexp(f_i) − f_{i,c_i}]``, intercept
  unpenalised. Curve loss = mean cross-entropy of the target label. The objective is invariant to
  adding one constant to all K intercepts, so the Hessian is singular along that direction; every
  right-hand side is orthogonal to it and the solves add ``u uᵀ`` (u the unit intercept-shift
  direction), which changes no score difference (the minimum-norm derivative).
* ``RidgeClassifier``: K outputs, ``α‖w_k‖² + Σ s_i (Y_ik − f_ik)²`` per output, Y the ±1
  one-vs-all coding — one Hessian ``2αI + 2ZᵀZ`` shared by all outputs (one factorisation or one
  block of conjugate-gradient solves). Curve loss = mean over triggered points of Σ_k (Y_k − f_k)².
* ``SVC`` (one-vs-one, as libsvm fits it): K(K−1)/2 binary machines, machine (i, j) trained on the
  points of classes i and j only; each is refined and differentiated as the binary
  :class:`~._svc.SVCSlope` (poison of class i or j enters only that machine). Curve loss = for each
  triggered point, the hinge of each of the K − 1 machines involving its target, the target as the
  positive side, summed; averaged over triggered points.

Margins (:class:`~._result.TriggerMargins`): target score minus the best other score for logistic
and ridge (positive ⇔ predicted as the target); for one-vs-one SVC the smallest decision value of
the target's K − 1 duels (target positive): positive ⇔ the target wins every duel, hence the vote
(a point that wins the vote on a tie-break without winning every duel counts as not predicted).
Their β-derivatives come from the same solves (the derivative of the active max / min).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg

from robust_hpo.errors import NotConvergedError, SingularHessianError
from robust_hpo.slope._base import Attack, AttackSolution, ConvexSlopeModel, MulticlassPart, best_other, \
    estimator_settings
from robust_hpo.slope._hessian import SOLVE_RTOL, ClassBlockPreconditioner, LinearModelHessian
from robust_hpo.slope._krylov import block_pcg, one_blas_thread
from robust_hpo.slope._ovr_batch import DenseFactor
from robust_hpo.slope._polish import MAX_NEWTON_STEPS, POLISH_RTOL, RESIDUAL_LIMIT

PRIMAL_ITERATIONS = 25
"""A (d+1)×(d+1) primal factorisation is chosen outright (not conjugate gradients with the cost
model's switch) when forming and factorising it costs at most this many conjugate-gradient
iterations — fewer than a solve to ``SOLVE_RTOL`` takes (a flop count: reproducible)."""


def primal_is_cheap(n: int, d: int) -> bool:
    """Whether ``n (d+1)² + (d+1)³/3 ≤ PRIMAL_ITERATIONS · 4 n (d+1)`` (one CG iteration: 4 n (d+1))."""
    q = d + 1
    return n * q * q + q ** 3 / 3.0 <= PRIMAL_ITERATIONS * 4.0 * n * q


PAIR_DROP = 1e-2
"""The multinomial preconditioner leaves out the coupling of classes k ≠ l at row i where
``C s_i p_ik p_il ‖z_i‖² ≤ PAIR_DROP`` (the penalty's diagonal is 1) and takes the same amount off
the diagonal, so that it stays below the Hessian (``P ≤ H``, see :meth:`MultinomialLogistic._factor`);
most rows' probabilities sit on one or two classes, so most of the K² blocks' rows drop out."""

FORCING = 0.3
"""The polish's Newton directions are solved to relative residual ``min(FORCING, residual)`` (an
inexact Newton forcing term; measured on digits K = 10: as many Newton steps as with 0.1, fewer
conjugate-gradient iterations while far from the optimum)."""

REFRESH_ITERATIONS = 4
"""A preconditioner that needed more than this many conjugate-gradient iterations for one solve is
formed again at the next point (the polish moves the curvature away from where it was formed)."""

DENSE_LIMIT = 1500
"""Multinomial Hessians of at most this many parameters (K·(d+1)) are formed and factorised; larger
ones are solved by conjugate gradients on Hessian-vector products, preconditioned by the class blocks
(:meth:`MultinomialLogistic._precondition_blocks`)."""


def _motion(a: Attack, Theta: np.ndarray, fit_intercept: bool, r_w: float) -> np.ndarray | float:
    """A pipeline scaler's term E (unpenalised intercepts) for coefficient columns Θ; 0 without one."""
    if a.motion is None:
        return 0.0
    W = Theta[:-1] if fit_intercept else Theta
    return a.motion.penalty_rhs(W, np.zeros(Theta.shape[1]) if fit_intercept else None, r_w, 0.0)


def logsumexp(F: np.ndarray, axis: int = 1) -> np.ndarray:
    """Row-wise ``log Σ_k exp F_k`` (shifted by the row maximum; scipy's is ~10× slower on 1,200 × 10)."""
    m = F.max(axis=1, keepdims=True)
    return (np.log(np.exp(F - m).sum(axis=1, keepdims=True)) + m)[:, 0]


def softmax(F: np.ndarray, axis: int = 1) -> np.ndarray:
    """Row-wise softmax (shifted by the row maximum)."""
    E = np.exp(F - F.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


def _design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


class _ScoreMargins(MulticlassPart):
    """Score-per-class learners: prediction = argmax, margin = target minus best other."""

    def predict_from(self, F: np.ndarray) -> np.ndarray:
        return np.argmax(F, axis=1)

    def margins_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return best_other(F, codes)[0]

    def loss_gradient(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """∂(curve loss)/∂F per row (n × K)."""
        raise NotImplementedError

    def _test_gradient(self, F: np.ndarray, codes: np.ndarray, quantity: str) -> np.ndarray:
        """∂L/∂F (n × K) of the mean curve loss (``"loss"``) or of the mean negative target margin
        (``"margin"``: −(f_target − f_best other), the active max) over the rows of F."""
        if quantity == "margin":
            _, other = best_other(F, codes)
            rows = np.arange(F.shape[0])
            G = np.zeros_like(F)
            G[rows, codes] = -1.0
            G[rows, other] += 1.0
        else:
            G = self.loss_gradient(F, codes)
        return G / F.shape[0]

    def _trigger(self, a: Attack, dTheta: np.ndarray, loss_grad: np.ndarray, F: np.ndarray,
                 details: dict[str, Any], Zt: np.ndarray | None = None) -> AttackSolution:
        """dL/dβ and the margins' derivative from dΘ/dβ ((d[+1]) × K) at the triggered rows
        (``Zt``: their design, where already made)."""
        Zt = _design(a.X_trigger, self.fit_intercept) if Zt is None else Zt
        dF = Zt @ dTheta
        value = float(np.sum(loss_grad * dF) / a.X_trigger.shape[0])
        margin, other = best_other(F, a.t_trigger)
        rows = np.arange(F.shape[0])
        return AttackSolution(value, margin, dF[rows, a.t_trigger] - dF[rows, other], details, oriented=True)


class MultinomialLogistic(_ScoreMargins):
    """Multinomial ``LogisticRegression`` (see the module docstring): Newton polish, then solves with
    the (K·(d+1))-dimensional Hessian — dense Cholesky up to :data:`DENSE_LIMIT` parameters,
    conjugate gradients beyond."""

    loss_name = "cross-entropy"

    def prepare(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
        est = model.estimator_
        self.model = model
        self.C = float(est.C)
        self.fit_intercept = bool(est.fit_intercept)
        self.K = model.n_classes_
        self.Z = _design(X, self.fit_intercept)
        self.q_dim = self.Z.shape[1]
        self.Y = np.eye(self.K)[codes]
        self.codes, self._rows = codes, np.arange(codes.size)
        self.ZT = np.ascontiguousarray(self.Z.T)
        self.sw = model.clean_weights()
        self.damping = model.damping
        p = self.Z.shape[1] * self.K
        self.dense = p <= DENSE_LIMIT
        self.blocks = None if self.dense else ClassBlockPreconditioner(
            X, r_w=1.0 + self.damping, r_b=self.damping, fit_intercept=self.fit_intercept)
        Theta = np.vstack([np.asarray(est.coef_, dtype=np.float64).T,
                           np.asarray(est.intercept_, dtype=np.float64)[None, :]]) if self.fit_intercept \
            else np.asarray(est.coef_, dtype=np.float64).T.copy()
        with one_blas_thread:
            details = self._polish(Theta, est)
        est.coef_ = self.Theta[: X.shape[1]].T.copy()
        if self.fit_intercept:
            est.intercept_ = self.Theta[-1].copy()
        return {"method": "multinomial-" + ("cholesky-pcg" if self.dense else "pcg"), "n_classes": self.K,
                "n_features": X.shape[1], **details}

    # -- objective ---------------------------------------------------------------------------------
    def _reg(self, Theta: np.ndarray) -> np.ndarray:
        R = Theta.copy()
        if self.fit_intercept:
            R[-1] = 0.0
        return R

    def _state(self, Theta: np.ndarray, F: np.ndarray) -> tuple[float, np.ndarray]:
        """(the objective, the probabilities softmax(F)) at Θ with scores F, from one exponential."""
        W = Theta[:-1] if self.fit_intercept else Theta
        m = F.max(axis=1, keepdims=True)
        E = np.exp(F - m)
        S = E.sum(axis=1, keepdims=True)
        loss = (np.log(S) + m)[:, 0] - F[self._rows, self.codes]
        E /= S
        return float(0.5 * np.sum(W * W) + self.C * (loss.sum() if self.sw is None else loss @ self.sw)), E

    def _gradient(self, Theta: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, float]:
        """(∇ objective, its relative norm) at Θ with probabilities P."""
        reg = self._reg(Theta)
        R = P - self.Y  # s_i (p_i − y_i): the weighted ∂ℓ/∂f per row
        if self.sw is not None:
            R *= self.sw[:, None]
        data = self.Z.T @ R
        data *= self.C
        scale = np.linalg.norm(reg) + np.linalg.norm(data)
        grad = reg + data
        return grad, float(np.linalg.norm(grad) / scale) if scale > 0 else 0.0

    def _polish(self, Theta: np.ndarray, est: Any) -> dict[str, Any]:
        F = self.Z @ Theta
        current, P = self._state(Theta, F)
        grad, residual = self._gradient(Theta, P)
        fitted, steps = residual, 0
        self._at(F, P=P)
        while residual > POLISH_RTOL and steps < MAX_NEWTON_STEPS and np.isfinite(residual):
            step = self._solve(grad.T.reshape(-1, 1),
                               rtol=max(min(FORCING, residual), 0.3 * POLISH_RTOL / residual))[:, 0]
            step = step.reshape(self.K, -1).T
            dF = self.Z @ step
            decrease = float(np.sum(grad * step))
            t, moved = 1.0, False
            for _ in range(30):
                value, P = self._state(Theta - t * step, F - t * dF)
                if value <= current - 1e-4 * t * decrease or (t == 1.0 and value <= current):
                    moved = True
                    break
                t *= 0.5
            steps += 1
            if not moved:
                break
            Theta, F, current = Theta - t * step, F - t * dF, value
            grad, new = self._gradient(Theta, P)
            stalled, residual = not new < residual, new
            self._at(F, P=P)
            if stalled and residual <= RESIDUAL_LIMIT:
                break
        if not (np.isfinite(residual) and residual <= RESIDUAL_LIMIT):
            raise NotConvergedError(
                f"{estimator_settings(est)} stopped at relative optimality residual {fitted:.2e}; {steps} "
                f"Newton polishing steps reached {residual:.2e}, above the limit {RESIDUAL_LIMIT:g} at which "
                "the slope is exact: lower tol or raise max_iter")
        self.Theta = Theta
        self.class_gradients = None
        if self.model.weights_.spec == "balanced":  # C Σ_{i ∈ k} s_i ∇θ ℓ_i per class k (κ' moves them)
            R = (softmax(F, axis=1) - self.Y) * self.model.weights_.sample[:, None]
            self.class_gradients = [self.C * (self.Z.T @ np.where(self.Y[:, [k]] > 0, R, 0.0))
                                    for k in range(self.K)]
        return {"residual_fit": fitted, "residual": residual, "newton_steps": steps}

    # -- the Hessian -------------------------------------------------------------------------------
    def _at(self, F: np.ndarray, single: bool = True, P: np.ndarray | None = None) -> None:
        """The Hessian at scores F (P: their softmax, where known): kept for products; the dense
        path's preconditioner is factorised here the first time and again where it went stale
        (:data:`REFRESH_ITERATIONS`)."""
        P = softmax(F, axis=1) if P is None else P
        self.P, self.PT, self.F_now = P, np.ascontiguousarray(P.T), F
        Z = self.Z
        s = np.ones(Z.shape[0]) if self.sw is None else self.sw
        self.Zs = Z
        if self.dense and getattr(self, "L", None) is not None and not getattr(self, "stale", False):
            return  # later curvatures: products with the exact H, this factor preconditions (_solve)
        if self.dense:
            self.L = self._factor(P, s, single)
            self.single, self.stale = single, False
            self.factorisations = getattr(self, "factorisations", 0) + 1
        else:  # class k's block of H: diag(r) + Zᵀ diag(C s p_k (1 − p_k)) Z
            self.blocks.at(self.C * P * (1.0 - P) * s[:, None])

    def _factor(self, P: np.ndarray, s: np.ndarray, single: bool) -> tuple[np.ndarray, bool]:
        """Cholesky factor of ``M + u uᵀ`` at probabilities P, M the preconditioner of conjugate
        gradients on the exact H (whose solves are checked by their residual, never taken as exact).

        ``single``: M formed and factorised in single precision from the row-wise blocks
        ``C s_i A_i ⊗ z_i z_iᵀ``, ``A_i = diag(p_i) − p_i p_iᵀ``, with the coupling of classes k ≠ l
        left out where ``C s_i p_ik p_il ‖z_i‖² ≤`` :data:`PAIR_DROP` and ``p_ik p_il`` taken off both
        diagonal entries: what is left of ``A_i`` stays diagonally dominant (its rows still sum to
        zero), hence positive semi-definite, and ``A_i`` minus it is diagonally dominant too — so
        ``M ≤ H`` (in exact arithmetic) and M is positive definite wherever H is. The blocks are
        products over the rows that keep each pair (measured on digits, K = 10: 5–15 % of the rows
        per pair). Otherwise (the double-precision fallback, where single precision is not positive
        definite) M = H exactly."""
        if not single:
            return self._exact_factor(P, s)
        Z, K, q = self.Z, self.K, self.Z.shape[1]
        if getattr(self, "_Z32", None) is None:
            self._Z32 = Z.astype(np.float32)
            self._zz = np.einsum("ij,ij->i", Z, Z)
            self._pairs = np.triu_indices(K, 1)
            self._incidence = np.zeros((self._pairs[0].size, K))
            self._incidence[np.arange(self._pairs[0].size), self._pairs[0]] = 1.0
            self._incidence[np.arange(self._pairs[0].size), self._pairs[1]] = 1.0
        A, n = self._Z32, Z.shape[0]
        w = self.C * s
        first, second = self._pairs
        PT = np.ascontiguousarray(P.T)
        coupling = PT[first] * PT[second]  # pairs × n: p_ik p_il
        coupling[coupling * (w * self._zz) <= PAIR_DROP] = 0.0
        diag = self._incidence.T @ coupling  # K × n: p_ik Σ_{kept l ≠ k} p_il
        # the K diagonal blocks, then the pairs' blocks, each Σ_i c_i z_i z_iᵀ over its rows with c_i > 0:
        # one gather of all those rows (scaled by √c_i), then one BLAS syrk per block on its slice
        weights = np.vstack([diag, coupling])
        weights *= w  # (K + pairs) × n, all ≥ 0
        kept = np.flatnonzero(weights)  # sorted by block
        block = kept // n
        Y = np.take(A, kept - block * n, axis=0)
        Y *= np.sqrt(weights.ravel()[kept]).astype(np.float32)[:, None]
        bounds = np.searchsorted(block, np.arange(K + first.size + 1))
        # only H's upper block triangle is written: potrf reads the lower triangle of Hᵀ (below)
        H = np.zeros((K * q, K * q), dtype=np.float32)
        rows_of, cols_of = np.concatenate([np.arange(K), first]) * q, np.concatenate([np.arange(K), second]) * q
        for j in np.flatnonzero(np.diff(bounds)):
            Yj = Y[bounds[j]:bounds[j + 1]]
            block = Yj.T @ Yj  # BLAS syrk
            if j >= K:
                block *= -1.0
            H[rows_of[j]:rows_of[j] + q, cols_of[j]:cols_of[j] + q] = block
        H[np.diag_indices_from(H)] += self._reg_diag().astype(np.float32)
        if self.fit_intercept:  # the intercept-shift direction u: M + u uᵀ (see the module docstring)
            b = np.arange(K) * q + q - 1
            H[np.ix_(b, b)] += 1.0 / K
        factor = _cholesky_in_place(H)
        return (factor, True) if factor is not None else self._exact_factor(P, s)

    def _exact_factor(self, P: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, bool]:
        """Cholesky factor of ``H + u uᵀ`` formed in double precision (every coupling kept)."""
        Z, K, q = self.Z, self.K, self.Z.shape[1]
        Pd = P if self.sw is None else P * s[:, None]
        G = (Pd[:, :, None] * Z[:, None, :]).reshape(Z.shape[0], K * q)  # row i: (s_i p_i) ⊗ z_i
        blocks = (Z.T @ G).reshape(q, K, q)  # Zᵀ diag(s p_k) Z for all k in one product
        if self.sw is not None:
            G *= (1.0 / np.sqrt(s))[:, None]  # row i: √s_i p_i ⊗ z_i
        H = G.T @ G  # a symmetric rank-n update (BLAS syrk)
        H *= -1.0
        for k in range(K):
            H[k * q:(k + 1) * q, k * q:(k + 1) * q] += blocks[:, k, :]
        H *= self.C
        H[np.diag_indices_from(H)] += self._reg_diag()
        if self.fit_intercept:
            b = np.arange(K) * q + q - 1
            H[np.ix_(b, b)] += 1.0 / K
        factor = _cholesky_in_place(H)
        if factor is None:
            raise SingularHessianError("the multinomial Hessian is not positive definite; pass damping > 0 "
                                       "or strengthen the regularisation")
        return factor, True

    def _reg_diag(self) -> np.ndarray:
        """The regulariser's diagonal (+ damping), class-major (computed once: every product uses it)."""
        if getattr(self, "_reg_cache", None) is None:
            r = np.ones(self.q_dim)
            if self.fit_intercept:
                r[-1] = 0.0
            self._reg_cache = np.tile(r, self.K) + self.damping
        return self._reg_cache

    def _matvec(self, V: np.ndarray) -> np.ndarray:
        """H V for columns V of vec(Θ) (class-major), in the K × n layout (sums over the K classes
        along contiguous rows: measured a third faster than n × K)."""
        K, q = self.K, self.Zs.shape[1]
        out = self._reg_diag()[:, None] * V
        PT = self.PT
        Cs = self.C if self.sw is None else self.C * self.sw
        for c in range(V.shape[1]):
            T = V[:, c].reshape(K, q)  # row k: θ_k
            A = T @ self.ZT  # K × n: the scores' directions
            A *= PT
            A -= PT * A.sum(axis=0)
            A *= Cs
            HT = A @ self.Zs  # K × q: row k is C Σ_i s_i [A_i (Θᵀz_i)]_k z_iᵀ
            if self.fit_intercept:
                HT[:, -1] += T[:, -1].sum() / K
            out[:, c] += HT.reshape(-1)
        return out

    def _precondition(self, R: np.ndarray) -> np.ndarray:
        """The factor's solve, in its own precision (the result in double): one column as two BLAS
        triangular solves (trsv: measured 5× faster than LAPACK's potrs on one column), several
        through potrs."""
        L = self.L[0]
        R = R.astype(L.dtype)
        if R.shape[1] == 1:
            trsv, = linalg.get_blas_funcs(("trsv",), (L,))
            x = trsv(L, trsv(L, R[:, 0], lower=1), lower=1, trans=1)
            return x[:, None].astype(np.float64)
        return linalg.cho_solve(self.L, R, check_finite=False).astype(np.float64)

    def _precondition_blocks(self, R: np.ndarray) -> np.ndarray:
        """Above :data:`DENSE_LIMIT`: the class blocks' curvature-subset preconditioners
        (:class:`~._hessian.ClassBlockPreconditioner`) on the classes' differences, exact on their common part.
        A vector the same in every class (``Θ + v 1ᵀ``) changes no probability: ``H + u uᵀ`` acts on it as
        ``(1 + damping) I`` (the penalty; ``u uᵀ`` on the intercepts), where the blocks would see every class's
        curvature; and H maps the classes' differences to themselves. So the blocks act on the
        differences only (projected before and after) and the common part is divided by ``1 + damping``."""
        shaped = R.reshape(self.K, self.q_dim, R.shape[1])
        common = shaped.mean(axis=0)
        out = self.blocks.solve((shaped - common).reshape(R.shape)).reshape(shaped.shape)
        out -= out.mean(axis=0)
        out += common / (1.0 + self.damping)
        return out.reshape(R.shape)

    def _solve(self, B: np.ndarray, rtol: float = SOLVE_RTOL) -> np.ndarray:
        if self.dense:  # conjugate gradients on the exact H, preconditioned by a factor (_at)
            for attempt in range(3):
                result = block_pcg(self._matvec, B, self._precondition, rtol=rtol, maxiter=60)
                self.cg_iterations = getattr(self, "cg_iterations", 0) + result.iterations
                if result.converged:
                    self.stale = self.stale or result.iterations > REFRESH_ITERATIONS
                    return result.x
                # refactorise at this curvature: single precision first, then double (an exact factor)
                single = attempt == 0 and self.single
                self.stale = True
                self._at(self.F_now, single=single)
                if not single:
                    return linalg.cho_solve(self.L, B, check_finite=False)
        result = block_pcg(self._matvec, B, self._precondition_blocks, rtol=rtol, maxiter=max(200, 2 * B.shape[0]))
        self.cg_iterations = getattr(self, "cg_iterations", 0) + result.iterations
        if not result.converged:
            raise SingularHessianError(
                f"conjugate gradients on the multinomial Hessian stopped at relative residual "
                f"{result.residual:.2e} after {result.iterations} iterations; pass damping > 0")
        return result.x

    # -- scores and derivatives ---------------------------------------------------------------------
    def scores(self, X: np.ndarray) -> np.ndarray:
        return _design(X, self.fit_intercept) @ self.Theta

    def loss_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return logsumexp(F, axis=1) - F[np.arange(F.shape[0]), codes]

    def solve(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        with one_blas_thread:
            K, q = self.K, self.Theta.shape[0]
            eye = np.eye(K)
            rhs = []
            for a in attacks:
                Zp = _design(a.X_poison, self.fit_intercept)
                R = softmax(Zp @ self.Theta, axis=1) - eye[a.t_poison]
                if a.weight is not None:
                    R *= a.weight[:, None]
                G = self.C * (Zp.T @ R) + _motion(a, self.Theta, self.fit_intercept, 1.0)
                if a.class_motion is not None:
                    G = G + sum(kappa * g for kappa, g in zip(a.class_motion, self.class_gradients))
                rhs.append(G.T.reshape(-1))
            D = -self._solve(np.column_stack(rhs))
            out = []
            for k, a in enumerate(attacks):
                F = self.scores(a.X_trigger)
                grad = softmax(F, axis=1) - eye[a.t_trigger]
                out.append(self._trigger(a, D[:, k].reshape(K, q).T, grad, F,
                                         {"cg_iterations": getattr(self, "cg_iterations", 0),
                                          "factorisations": getattr(self, "factorisations", 0)}))
        return out

    def loss_gradient(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return softmax(F, axis=1) - np.eye(self.K)[codes]

    def point_influences(self, X: np.ndarray, codes: np.ndarray, X_test: np.ndarray, test_codes: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """``dL/ds_j = −C z_jᵀ U (p_j − y_j)`` with ``U = H⁻¹ ∇Θ L`` (one solve for all j). ∇Θ L and
        every ``z_j (p_j − y_j)ᵀ`` are orthogonal to the intercept shift, so ``H + u uᵀ`` changes
        nothing (see the module docstring); the value does not depend on j's weight in the fit."""
        U = self._test_adjoint(X_test, test_codes, quantity)
        with one_blas_thread:
            Z = _design(X, self.fit_intercept)
            return -self.C * np.sum((Z @ U) * self.loss_gradient(Z @ self.Theta, codes), axis=1)

    def scaler_sensitivity(self, X_test: np.ndarray, test_codes: np.ndarray,
                           quantity: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """(∂L/∂ρ'_f, ∂L/∂a_f): a scaler's motion enters as ``E = [ρ' ⊙ W; 0]`` (unpenalised
        intercepts: the mean does not matter), so ``∂L/∂ρ'_f = −Σ_k W_fk U_fk``, U = H⁻¹ ∇Θ L."""
        U = self._test_adjoint(X_test, test_codes, quantity)
        d = X_test.shape[1]
        return -np.sum(self.Theta[:d] * U[:d], axis=1), np.zeros(d)

    def _test_adjoint(self, X_test: np.ndarray, test_codes: np.ndarray, quantity: str) -> np.ndarray:
        """``U = H⁻¹ ∇Θ L`` as a q × K matrix (L the mean test quantity, :meth:`_test_gradient`)."""
        with one_blas_thread:
            Zt = _design(X_test, self.fit_intercept)
            B = Zt.T @ self._test_gradient(Zt @ self.Theta, test_codes, quantity)  # q × K
            return self._solve(B.T.reshape(-1, 1))[:, 0].reshape(self.K, -1).T


class MultiOutputRidge(_ScoreMargins):
    """``RidgeClassifier`` with K ±1 outputs: one Hessian for all outputs (see the module docstring)."""

    loss_name = "squared"

    def prepare(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
        est = model.estimator_
        self.fit_intercept = bool(est.fit_intercept)
        K = model.n_classes_
        Y = np.where(np.eye(K, dtype=bool)[codes], 1.0, -1.0)
        Theta = np.vstack([np.asarray(est.coef_, dtype=np.float64).T,
                           np.asarray(est.intercept_, dtype=np.float64)[None, :]]) if self.fit_intercept \
            else np.asarray(est.coef_, dtype=np.float64).T.copy()
        r_w = 2.0 * float(est.alpha)
        sw = model.clean_weights()
        s = np.ones(X.shape[0]) if sw is None else sw
        with one_blas_thread:
            Z = _design(X, self.fit_intercept)
            if primal_is_cheap(*X.shape):  # (d+1)×(d+1): formed and factorised here, once
                self.hessian = _dense_ridge_hessian(Z, s, r_w, self.fit_intercept, model.damping)
            else:
                self.hessian = LinearModelHessian(X, 2.0 * s, r_w=r_w, r_b=0.0, fit_intercept=self.fit_intercept,
                                                  space="auto", damping=model.damping, cache=model.cache)
            reg = r_w * Theta
            if self.fit_intercept:
                reg[-1] = 0.0
            data = Z.T @ (-2.0 * s[:, None] * (Y - Z @ Theta))
            grad = reg + data
            fitted = float(np.linalg.norm(grad) / max(np.linalg.norm(reg) + np.linalg.norm(data), 1e-300))
            steps = 0
            if fitted > POLISH_RTOL:  # quadratic: one exact Newton step
                Theta = Theta - self.hessian.solve(grad, rtol=1e-10)
                steps = 1
                reg = r_w * Theta
                if self.fit_intercept:
                    reg[-1] = 0.0
                data = Z.T @ (-2.0 * s[:, None] * (Y - Z @ Theta))
            self.class_gradients = None
            if model.weights_.spec == "balanced":  # Σ_{i ∈ k} s_i ∇θ ℓ_i per class k (κ' moves them)
                R = -2.0 * model.weights_.sample[:, None] * (Y - Z @ Theta)
                self.class_gradients = [Z.T @ np.where(codes[:, None] == k, R, 0.0) for k in range(K)]
            residual = float(np.linalg.norm(reg + data) / max(np.linalg.norm(reg) + np.linalg.norm(data), 1e-300))
        if not residual <= RESIDUAL_LIMIT:
            raise NotConvergedError(f"{estimator_settings(est)}: the ridge solution has relative optimality "
                                    f"residual {residual:.2e} after a Newton step: lower tol or raise max_iter")
        self.Theta, self.K, self.r_w = Theta, K, r_w
        est.coef_ = Theta[: X.shape[1]].T.copy()
        if self.fit_intercept:
            est.intercept_ = Theta[-1].copy()
        return {"method": "multi-output-" + self.hessian.method, "n_classes": K, "n_features": X.shape[1],
                "residual_fit": fitted, "residual": residual, "newton_steps": steps}

    def scores(self, X: np.ndarray) -> np.ndarray:
        return _design(X, self.fit_intercept) @ self.Theta

    def _coding(self, codes: np.ndarray) -> np.ndarray:
        return np.where(np.eye(self.K, dtype=bool)[codes], 1.0, -1.0)

    def loss_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return np.sum((self._coding(codes) - F) ** 2, axis=1)

    def solve(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        with one_blas_thread:
            rhs = []
            for a in attacks:
                Zp = _design(a.X_poison, self.fit_intercept)
                R = -2.0 * (self._coding(a.t_poison) - Zp @ self.Theta)
                if a.weight is not None:
                    R *= a.weight[:, None]
                G = Zp.T @ R + _motion(a, self.Theta, self.fit_intercept, self.r_w)
                if a.class_motion is not None:
                    G = G + sum(k * g for k, g in zip(a.class_motion, self.class_gradients))
                rhs.append(G)
            D = -self.hessian.solve(np.hstack(rhs))
            out = []
            for k, a in enumerate(attacks):
                Zt = _design(a.X_trigger, self.fit_intercept)
                F = Zt @ self.Theta
                grad = -2.0 * (self._coding(a.t_trigger) - F)
                out.append(self._trigger(a, D[:, k * self.K:(k + 1) * self.K], grad, F,
                                         {"cg_iterations": self.hessian.cg_iterations}, Zt))
        return out

    def loss_gradient(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return -2.0 * (self._coding(codes) - F)

    def point_influences(self, X: np.ndarray, codes: np.ndarray, X_test: np.ndarray, test_codes: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """``dL/ds_j = −Σ_k (z_jᵀ U_k) ∂ℓ_j/∂f_k`` with ``U = H⁻¹ ∇Θ L`` (one block solve, the outputs'
        shared Hessian), ``ℓ_j = Σ_k (Y_jk − f_k(x_j))²``."""
        U = self._test_adjoint(X_test, test_codes, quantity)
        with one_blas_thread:
            Z = _design(X, self.fit_intercept)
            return -np.sum((Z @ U) * self.loss_gradient(Z @ self.Theta, codes), axis=1)

    def scaler_sensitivity(self, X_test: np.ndarray, test_codes: np.ndarray,
                           quantity: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """(∂L/∂ρ'_f, ∂L/∂a_f) with ``E = [r_w ρ' ⊙ W; 0]``: ``∂L/∂ρ'_f = −r_w Σ_k W_fk U_fk``."""
        U = self._test_adjoint(X_test, test_codes, quantity)
        d = X_test.shape[1]
        return -self.r_w * np.sum(self.Theta[:d] * U[:d], axis=1), np.zeros(d)

    def _test_adjoint(self, X_test: np.ndarray, test_codes: np.ndarray, quantity: str) -> np.ndarray:
        """``U = H⁻¹ ∇Θ L`` (q × K, one block solve on the outputs' shared Hessian)."""
        with one_blas_thread:
            Zt = _design(X_test, self.fit_intercept)
            return self.hessian.solve(Zt.T @ self._test_gradient(Zt @ self.Theta, test_codes, quantity))


def _cholesky_in_place(H: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor of a symmetric C-ordered H, written over it by LAPACK potrf on its
    Fortran-ordered transpose (the same matrix: no copy either way). potrf reads only the lower
    triangle of Hᵀ — H's upper triangle, all that needs to be filled in — and leaves the rest as it
    was; None where H is not numerically positive definite."""
    potrf, = linalg.get_lapack_funcs(("potrf",), (H,))
    L, info = potrf(H.T, lower=1, clean=0, overwrite_a=1)
    if info != 0 or not np.all(np.isfinite(np.diagonal(L))):
        return None
    return L


def _dense_ridge_hessian(Z: np.ndarray, s: np.ndarray, r_w: float, fit_intercept: bool, damping: float) -> Any:
    """The ridge Hessian ``diag(r) + 2 Zᵀ diag(s) Z`` factorised (r = r_w, intercept 0; + damping)."""
    if np.all(s == 1.0):  # unweighted: 2 ZᵀZ from one BLAS syrk on Z itself
        H = Z.T @ Z
        H *= 2.0
    else:
        Zs = Z * np.sqrt(2.0 * s)[:, None]
        H = Zs.T @ Zs
    r = np.full(Z.shape[1], r_w + damping)
    if fit_intercept:
        r[-1] = damping
    H[np.diag_indices_from(H)] += r
    try:
        return DenseFactor(linalg.cholesky(H, lower=True, check_finite=False))
    except linalg.LinAlgError:
        raise SingularHessianError("the ridge Hessian is not positive definite; pass damping > 0") from None
