"""Logistic regression and ridge: the slope from the Hessian of the clean objective, after a Newton polish.

Objective (θ = [w, b]; r = (r_w, …, r_w, r_b) the regulariser's curvature, c the data-term factor):

    F(θ) = ½ r_w ‖w‖² + ½ r_b b² + c Σ_i ℓ(y_i, x_iᵀw + b)

``LogisticRegression``: c = C, r_w = 1, r_b = 0 (or 1/intercept_scaling² with liblinear, whose
intercept is penalised); ``RidgeClassifier``: c = 1, r_w = 2α, r_b = 0 (scikit-learn's centring is
an unpenalised intercept).

**Polish.** A scikit-learn fit stops where its own tolerance says (lbfgs at ``tol=1e-4`` leaves a
parameter error of up to ~30 % at C = 100 on MNIST), and a derivative taken there inherits that error.
Before differentiating, Newton steps with an Armijo line search bring θ to
``‖∇F‖ ≤ POLISH_RTOL · (‖r ⊙ θ‖ + ‖c Zᵀ ℓ'‖)`` (the two terms of the gradient, which cancel at the
optimum; Z = [X, 1]); the polished θ is written back to the estimator's ``coef_`` / ``intercept_``
so that its predictions are those of the differentiated solution. If that relative residual stays
above ``RESIDUAL_LIMIT`` the fit is refused with :class:`~robust_hpo.errors.NotConvergedError`
naming the estimator's ``tol`` and ``max_iter``. Ridge is quadratic: one exact Newton step suffices
(its iterative solvers sag, saga, sparse_cg and lsqr need it; cholesky and svd are already exact).
"""

from __future__ import annotations

import time
import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from robust_hpo.errors import NotConvergedError, SingularHessianError, ValidationError
from robust_hpo.slope._base import (
    Attack,
    AttackSolution,
    ConvexSlopeModel,
    check_no_class_weight,
    check_positive,
    estimator_settings,
    fit_layout,
)
from robust_hpo.slope._hessian import LinearModelHessian, Space, on_used_features
from robust_hpo.slope._krylov import one_blas_thread

from robust_hpo.slope._polish import MAX_NEWTON_STEPS, POLISH_RTOL, RESIDUAL_LIMIT

FLAT_DECREASE = 1e-11
"""A Newton step whose predicted decrease of F is below this fraction of |F| is decided by the
gradient, not by F (whose rounding is ~n·ε·|F| for n summed terms)."""


class _LinearModelSlope(ConvexSlopeModel):
    """Primal Hessian H = diag(r) + c·Zᵀ diag(ℓ'') Z of the clean objective at the polished solution."""

    space: Space = "auto"
    fits_on_used_features = False
    """scikit-learn fits X restricted to the features some clean row uses (:meth:`_fit_estimator`)."""

    @staticmethod
    @abstractmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        """∂ℓ/∂f per point."""

    @staticmethod
    @abstractmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        """∂²ℓ/∂f² per point."""

    @abstractmethod
    def _objective_constants(self) -> tuple[float, float, float]:
        """(c, r_w, r_b): data-term factor, weight and intercept regulariser curvatures."""

    # -- the clean solution ------------------------------------------------------------------------
    def _fit_estimator(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """scikit-learn's fit, the polish's start (:meth:`_fit_start`). Its ``ConvergenceWarning`` is not passed
        on: the polish takes the fit to the optimum, or raises :class:`NotConvergedError` naming ``tol`` and
        ``max_iter``, so the estimator this returns is converged whatever the start's solver said."""
        with warnings.catch_warnings(), self._fit_threads():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self._fit_start(est, X, y)

    def _fit_start(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """scikit-learn's fit on X restricted to the features some clean row uses (MNIST pixels: 550 of
        784), then widened back to all features with coefficient 0 on the others. A feature no row uses
        has no data term: its coefficient is 0 at the optimum and stays 0 along every solver's path, so
        this is the same fit on fewer columns (the polish then takes it to the optimum of the full
        problem, whose residual is checked on all features). The copy also serves the Hessian's products."""
        if not self.fits_on_used_features:
            return super()._fit_estimator(est, X, y)
        used, X_used = on_used_features(X, self.cache)
        self._on_used = (X, used, X_used)
        super()._fit_estimator(est, self._fit_copy(est, X_used), y)
        coef = np.asarray(est.coef_, dtype=np.float64)
        if X_used is not X:
            coef = np.zeros((coef.shape[0], X.shape[1]))
            coef[:, used] = est.coef_
        est.coef_ = coef
        if isinstance(est.intercept_, np.ndarray):
            est.intercept_ = est.intercept_.astype(np.float64)
        est.n_features_in_ = X.shape[1]
        return est

    def _fit_copy(self, est: Any, X_used: np.ndarray) -> np.ndarray:
        """The array scikit-learn fits ``est`` on (:class:`LogisticSlope`: float32, a cheaper start for the polish)."""
        return X_used

    def _design_on_used(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The fit's copy of X on its used features, for the Hessian (None: not made for this X)."""
        kept = getattr(self, "_on_used", None)
        return kept[1:] if kept is not None and kept[0] is X else None

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``X w + b`` of the polished solution."""
        return X @ self._w + self._b

    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        c, r_w, r_b = self._objective_constants()
        self._c, self._r_w, self._r_b = c, r_w, r_b
        est = self.estimator_
        self._fit_intercept = bool(est.fit_intercept)
        w = np.asarray(est.coef_, dtype=np.float64).ravel().copy()
        b = float(np.ravel(est.intercept_)[0]) if self._fit_intercept else 0.0
        self._sw = self.clean_weights()
        with one_blas_thread:  # matrix–vector work: see _krylov.one_blas_thread
            self._hessian, polish = self._polish(X, y_pm, w, b)
            self._class_gradients = None
            if self.weights_.spec == "balanced":  # c Σ_{i ∈ k} s_i ∇θ ℓ_i per class k: κ' moves them
                g = self.loss_grad(y_pm, self.decision_function(X)) * self.weights_.sample
                codes = self.weights_.codes
                self._class_gradients = np.column_stack(
                    [self._c * self._gradient(X, np.where(codes == k, g, 0.0)) for k in range(self.weights_.K)])
        self._write_back()
        return {"method": self._hessian.method, "space": self._hessian.space,
                "n_features": X.shape[1], **polish}

    def _gradient(self, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Σ_i coef_i ∇θ f(x_i) laid out as [w, b]."""
        g = X.T @ coef
        return np.concatenate([g, [coef.sum()]]) if self._fit_intercept else g

    def _objective(self, y_pm: np.ndarray, w: np.ndarray, b: float, f: np.ndarray) -> float:
        """F(θ) from the decision values ``f = X w + b``."""
        loss = self.pointwise_loss(y_pm, f)
        return float(0.5 * self._r_w * w @ w + 0.5 * self._r_b * b * b
                     + self._c * (loss.sum() if self._sw is None else loss @ self._sw))

    def _optimality(self, X: np.ndarray, y_pm: np.ndarray, w: np.ndarray, b: float,
                    f: np.ndarray) -> tuple[np.ndarray, float]:
        """(∇F, relative residual ‖∇F‖ / (‖r ⊙ θ‖ + ‖c Zᵀ ℓ'‖)) at θ with decision values f."""
        with one_blas_thread:
            g = self.loss_grad(y_pm, f)
            data = self._c * self._gradient(X, g if self._sw is None else g * self._sw)
        reg = np.append(self._r_w * w, self._r_b * b) if self._fit_intercept else self._r_w * w
        grad = reg + data
        scale = np.linalg.norm(reg) + np.linalg.norm(data)
        residual = float(np.linalg.norm(grad) / scale) if scale > 0 else 0.0
        return grad, residual

    def _curvature(self, y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        q = self._c * self.loss_curvature(y_pm, f)
        return q if self._sw is None else q * self._sw

    def _constant_curvature(self) -> bool:
        return False

    def _polish(self, X: np.ndarray, y_pm: np.ndarray, w: np.ndarray,
                b: float) -> tuple[LinearModelHessian, dict[str, Any]]:
        """Inexact Newton steps to the optimum; the Hessian at the final θ and what was done.

        Each step solves ``H δ = ∇F`` only as accurately as the step needs (relative residual
        ``min(0.1, ρ)``, not below what reaches ``POLISH_RTOL``), with the Hessian solver's
        preconditioner carried from step to step."""
        with one_blas_thread:
            f = X @ w + b
        grad, residual = self._optimality(X, y_pm, w, b, f)
        fitted = residual
        try:
            hessian = LinearModelHessian(X, self._curvature(y_pm, f), r_w=self._r_w, r_b=self._r_b,
                                         fit_intercept=self._fit_intercept, space=self.space,
                                         damping=self.damping, cache=self.cache, on_used=self._design_on_used(X))
        except SingularHessianError:
            if residual <= POLISH_RTOL:
                raise
            # a piecewise-quadratic loss flat at the fit's θ (every point beyond its margin, as an
            # early-stopped SGD can leave it): restart the polish from θ = 0, where every point curves
            w, b = np.zeros_like(w), 0.0
            f = np.zeros(X.shape[0])
            grad, residual = self._optimality(X, y_pm, w, b, f)
            hessian = LinearModelHessian(X, self._curvature(y_pm, f), r_w=self._r_w, r_b=self._r_b,
                                         fit_intercept=self._fit_intercept, space=self.space,
                                         damping=self.damping, cache=self.cache, on_used=self._design_on_used(X))
        steps = 0
        while residual > POLISH_RTOL and steps < MAX_NEWTON_STEPS and np.isfinite(residual):
            forcing = 0.3 * POLISH_RTOL / residual  # quadratic: the exact step is the optimum
            if not self._constant_curvature():
                forcing = max(min(0.1, residual), forcing)
            step = hessian.solve(grad, rtol=forcing)
            dw, db = (step[:-1], float(step[-1])) if self._fit_intercept else (step, 0.0)
            moved = self._line_search(X, y_pm, w, b, f, dw, db, float(grad @ step))
            steps += 1
            if moved is None:
                break
            new_grad, new_residual = self._optimality(X, y_pm, moved[0], moved[1], moved[2])
            if moved[3] and not new_residual < residual:
                break  # a full step below the objective's rounding did not lower the gradient: stay
            w, b, f = moved[:3]
            grad = new_grad
            stalled = not new_residual < residual
            residual = new_residual
            if not self._constant_curvature():
                hessian = hessian.with_curvature(self._curvature(y_pm, f))
            if stalled and residual <= RESIDUAL_LIMIT:
                break  # rounding floor: a Newton step no longer lowers the residual
        if not (np.isfinite(residual) and residual <= RESIDUAL_LIMIT):
            raise NotConvergedError(
                f"{estimator_settings(self.estimator_)} stopped at relative optimality residual "
                f"{fitted:.2e}; {steps} Newton polishing steps reached {residual:.2e}, above the limit "
                f"{RESIDUAL_LIMIT:g} at which the slope is exact: lower tol or raise max_iter"
            )
        self._w, self._b, self._grad = w, b, grad
        return hessian, {"residual_fit": fitted, "residual": residual, "newton_steps": steps}

    def _line_search(self, X: np.ndarray, y_pm: np.ndarray, w: np.ndarray, b: float, f: np.ndarray,
                     dw: np.ndarray, db: float,
                     decrease: float) -> tuple[np.ndarray, float, np.ndarray, bool] | None:
        """(w, b, f, flat) at θ − t·step for the largest t ∈ {1, ½, …} meeting Armijo's condition.

        ``flat``: the predicted decrease ``∇Fᵀ step`` is below the rounding of F itself (F sums n
        terms; near the optimum of a large problem its change is lost in the last digits), so
        Armijo's test would compare noise and shrink t to nothing. The full Newton step is then
        taken (the caller keeps it only if the gradient falls)."""
        current = self._objective(y_pm, w, b, f)
        with one_blas_thread:
            df = X @ dw + db  # one product: f along the step is f − t·df
        if 0 <= decrease <= FLAT_DECREASE * abs(current):
            return w - dw, b - db, f - df, True
        t = 1.0
        for _ in range(30):
            w_new, b_new, f_new = w - t * dw, b - t * db, f - t * df
            value = self._objective(y_pm, w_new, b_new, f_new)
            if value <= current - 1e-4 * t * decrease or (t == 1.0 and value <= current):
                return w_new, b_new, f_new, False
            t *= 0.5
        return None

    def _write_back(self) -> None:
        """The polished θ into the estimator, so that its predictions are the differentiated solution's."""
        est = self.estimator_
        est.coef_ = self._w.reshape(np.shape(est.coef_)).astype(np.asarray(est.coef_).dtype, copy=True)
        if self._fit_intercept:
            intercept = np.asarray(est.intercept_)
            est.intercept_ = np.full(intercept.shape, self._b, dtype=intercept.dtype) if intercept.ndim \
                else type(est.intercept_)(self._b)

    # -- derivatives -------------------------------------------------------------------------------
    def parameter_derivatives(self, attacks: Sequence[Attack],
                              functionals: np.ndarray | None = None) -> np.ndarray:
        """dθ/dβ per attack as the columns of a (d[+1]) × k array: ``−H⁻¹ c Σ_j ∇θ ℓ(t_j, f(x̃_j))``.

        ``functionals``: per attack the gradient of the quantity the caller takes from dθ/dβ (the
        triggered points' mean loss): the solve may stop once that quantity is certified
        (:meth:`LinearModelHessian.solve`)."""
        G = np.column_stack([self._c * self._gradient(a.X_poison, self._poison_grad(a))
                             + self._penalty_motion(a) + self._class_motion(a) for a in attacks])
        U = self._hessian.solve(G, functionals=functionals)
        self._record_solver()
        return -U

    def _poison_grad(self, a: Attack) -> np.ndarray:
        """κ_p ∂ℓ/∂f at the poison rows."""
        g = self.loss_grad(a.t_poison, self.decision_function(a.X_poison))
        return g if a.weight is None else g * a.weight

    def _class_motion(self, a: Attack) -> np.ndarray | float:
        """Σ_clean s_i κ'_{c_i} c ∇θ ℓ_i: class_weight="balanced" moving with β (0 otherwise)."""
        if a.class_motion is None:
            return 0.0
        return self._class_gradients @ a.class_motion

    def _penalty_motion(self, a: Attack) -> np.ndarray | float:
        """A pipeline scaler's term E of the optimality conditions' β-derivative (0 without one)."""
        if a.motion is None:
            return 0.0
        b = np.array([self._b]) if self._fit_intercept else None
        return a.motion.penalty_rhs(self._w[:, None], b, self._r_w, self._r_b)[:, 0]

    def _solve_attacks(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        with one_blas_thread:
            return self._solve_attacks_one_thread(attacks)

    def _solve_attacks_one_thread(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        f_triggers = [self.decision_function(a.X_trigger) for a in attacks]
        g_triggers = [self._gradient(a.X_trigger, self.loss_grad(a.t_trigger, ft)) / a.X_trigger.shape[0]
                      for a, ft in zip(attacks, f_triggers)]
        D = self.parameter_derivatives(attacks, np.column_stack(g_triggers))
        out = []
        for k, (a, ft, g_trigger) in enumerate(zip(attacks, f_triggers, g_triggers)):
            dtheta = D[:, k]
            start = time.perf_counter()
            dft = a.X_trigger @ dtheta[: a.X_trigger.shape[1]] + (dtheta[-1] if self._fit_intercept else 0.0)
            out.append(AttackSolution(derivative=float(g_trigger @ dtheta), f_trigger=ft, df_trigger=dft,
                                      details={"margins_seconds": time.perf_counter() - start}))
        return out

    def point_influences(self, X: np.ndarray, y_pm: np.ndarray, X_test: np.ndarray, y_test_pm: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """``dL/ds_j = −c ℓ'(y_j, f(x_j)) ∇θf(x_j)ᵀ H⁻¹ ∇θL``: one solve for all j (H is symmetric),
        whichever weight j has in the fit."""
        u = self._test_adjoint(X_test, y_test_pm, quantity)
        dz = X @ u[: X.shape[1]] + (u[-1] if self._fit_intercept else 0.0)  # ∇θ f(x_j) · u
        return -self._c * self.loss_grad(y_pm, self.decision_function(X)) * dz

    def scaler_sensitivity(self, X_test: np.ndarray, y_test_pm: np.ndarray,
                           quantity: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """(∂L/∂ρ'_f, ∂L/∂a_f) per feature: the test quantity's derivative per unit of a pipeline scaler's
        motion (:class:`~._preprocess.Motion`), ``−⟨H⁻¹∇θL, E⟩`` with E its penalty term — one solve
        (``TrainingInfluence`` through a scaler)."""
        u = self._test_adjoint(X_test, y_test_pm, quantity)
        d = X_test.shape[1]
        g_a = -self._r_b * (self._b * u[:d] + self._w * u[d]) if self._fit_intercept else np.zeros(d)
        return -self._r_w * self._w * u[:d], g_a

    def _test_adjoint(self, X_test: np.ndarray, y_test_pm: np.ndarray, quantity: str) -> np.ndarray:
        """``H⁻¹ ∇θL``, L the mean test quantity (the loss, or ``"margin"``: minus the mean margin)."""
        dq = self.loss_grad(y_test_pm, self.decision_function(X_test)) if quantity == "loss" else -y_test_pm
        with one_blas_thread:
            u = self._hessian.solve(self._gradient(X_test, dq) / X_test.shape[0])
        self._record_solver()
        return u

    def _record_solver(self) -> None:
        """The solve may have changed method (cg → its Cholesky fallback): keep details current."""
        self.details_.update(method=self._hessian.method, cg_iterations=self._hessian.cg_iterations)


FLOAT32_MIN_TOL = 1e-5
"""``LogisticRegression(solver="lbfgs")`` with ``tol`` at least this fits a float32 copy of X: the same
iterations at half the memory traffic (MNIST 7-1 pixels: coefficients within 1e-6 of the float64 fit's,
far inside lbfgs's own ``tol``), a start the float64 Newton polish takes to the optimum. A tighter
``tol`` asks for more than float32 gradients resolve: float64 then."""


class LogisticSlope(_LinearModelSlope):
    loss_name = "log-loss"
    fits_on_used_features = True

    def _fit_copy(self, est: Any, X_used: np.ndarray) -> np.ndarray:
        if est.solver == "lbfgs" and float(est.tol) >= FLOAT32_MIN_TOL:
            return X_used.astype(np.float32)
        return X_used

    def _fit_threads(self) -> Any:
        """One BLAS thread, as the polish (:data:`~._krylov.one_blas_thread`): every solver but
        ``newton-cholesky`` spends its time in matrix–vector products (MNIST 7-1 pixels: lbfgs took 94–168 ms
        at two BLAS threads, 13–18 ms at one). ``newton-cholesky`` forms ``Xᵀ D X`` (a matrix–matrix
        product) and keeps the configured threads."""
        return super()._fit_threads() if self.estimator.solver == "newton-cholesky" else one_blas_thread

    def _check_params(self, est: LogisticRegression) -> None:
        check_positive("C", est.C, LogisticRegression)
        penalty = getattr(est, "penalty", "l2")
        if penalty not in ("l2", "deprecated") or (est.l1_ratio not in (0, 0.0, None)):
            raise ValidationError(
                f"LogisticRegression must use the L2 penalty (l1_ratio=0) for the exact slope, got "
                f"penalty={penalty!r}, l1_ratio={est.l1_ratio!r}"
            )
        check_no_class_weight(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._multiclass import MultinomialLogistic

        if self.estimator.solver == "liblinear":
            raise ValidationError("LogisticRegression(solver='liblinear') fits two classes only; y_clean has "
                                  f"{self.classes_.size} classes: use another solver (the multinomial slope)")
        return MultinomialLogistic()

    def _objective_constants(self) -> tuple[float, float, float]:
        est = self.estimator_
        r_b = 1.0 / est.intercept_scaling ** 2 if est.solver == "liblinear" else 0.0
        return float(est.C), 1.0, r_b

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, -y_pm * f)

    @staticmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return -y_pm * expit(-y_pm * f)

    @staticmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return expit(f) * expit(-f)


class RidgeSlope(_LinearModelSlope):
    """``RidgeClassifier``: ``α‖w‖² + Σ s_i (y_i − f_i)²`` (±1 targets, intercept unpenalised).

    **Fitted on the slope's factorisation.** The objective is quadratic, so its optimum is one exact
    Newton step from θ = 0 on the Hessian the slope factorises anyway: scikit-learn's own fit (which
    forms ``XᵀX`` a second time) is not run. scikit-learn fits one row per class, which gives the
    estimator its fitted structure (classes, label binarizer, shapes, attributes of the installed
    version); its coefficients are then replaced by the optimum (:meth:`_fit_estimator`) — the same
    closed form as scikit-learn's ``cholesky`` solver, to rounding, and the optimum every other solver
    approaches (the polish takes any fit there)."""

    loss_name = "squared"

    def _check_params(self, est: RidgeClassifier) -> None:
        check_positive("alpha", est.alpha, RidgeClassifier)
        if est.positive:
            raise ValidationError("RidgeClassifier(positive=True) is not supported by the exact slope")
        check_no_class_weight(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._multiclass import MultiOutputRidge

        return MultiOutputRidge()

    def _objective_constants(self) -> tuple[float, float, float]:
        return 1.0, 2.0 * float(self.estimator_.alpha), 0.0

    def _constant_curvature(self) -> bool:
        return True

    def _fit_estimator(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """scikit-learn's fit on one row per class (the fitted structure), coefficients set to 0: the
        polish (:meth:`_prepare`, one exact Newton step on the slope's factorisation, every clean row
        with its weight) then writes the optimum into ``est`` (see the class docstring)."""
        fit_layout(est, X, y)
        est.coef_ = np.zeros_like(est.coef_, dtype=np.float64)
        est.intercept_ = np.zeros_like(np.asarray(est.intercept_, dtype=np.float64)) \
            if est.fit_intercept else est.intercept_
        return est

    def margins_at_one(self, a: Attack) -> np.ndarray | None:
        """The triggered points' margins ``t f(x̃)`` of the model refitted at β = 1 on clean ∪ poison, in
        closed form: the objective is quadratic, so that optimum is one Newton step from the clean one,
        ``θ₁ = θ* − (H + 2c Z_pᵀ Z_p)⁻¹ (∇F(θ*) + c Σ_p ℓ'(t_p, f_p) z_p)``, solved on the slope's
        Hessian (:meth:`LinearModelHessian.solve_with_rows`) — the optimum scikit-learn's refit reaches,
        without its fit. None (refit with scikit-learn) with several classes, a pipeline, class weights or
        ``damping`` (the damped Hessian is not the refit's)."""
        if self._multi is not None or self.preprocessing is not None or self.weights_.spec is not None \
                or self.damping > 0:
            return None
        with one_blas_thread:
            g = self._grad + self._c * self._gradient(a.X_poison, self._poison_grad(a))
            u = self._hessian.solve_with_rows(g, a.X_poison, np.full(a.X_poison.shape[0], 2.0 * self._c))
            self._record_solver()
            w = self._w - u[: self._w.size]
            b = self._b - (float(u[-1]) if self._fit_intercept else 0.0)
            return a.t_trigger * (a.X_trigger @ w + b)

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return (y_pm - f) ** 2

    @staticmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return -2.0 * (y_pm - f)

    @staticmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.full_like(f, 2.0)


class LinearSVCSlope(_LinearModelSlope):
    """``LinearSVC`` (liblinear, primal): ``½‖w‖² + ½ b²/intercept_scaling² + C Σ s_i max(0, 1 − y_i f_i)²``
    — the squared hinge, intercept regularised as liblinear fits it. The curvature ``2·[y f < 1]`` is
    piecewise constant: the polish is a semismooth Newton method and the slope is exact where no
    training point sits exactly on its margin. K ≥ 3: one-vs-rest (:mod:`._ovr`)."""

    loss_name = "squared hinge"
    fits_on_used_features = True

    def _check_params(self, est: Any) -> None:
        check_positive("C", est.C, type(est))
        if est.penalty != "l2" or est.loss != "squared_hinge":
            raise ValidationError(
                f"LinearSVC must use penalty='l2' and loss='squared_hinge' for the exact slope, got "
                f"penalty={est.penalty!r}, loss={est.loss!r} (for the hinge use SVC(kernel='linear'))")
        if est.multi_class != "ovr":
            raise ValidationError(f"LinearSVC(multi_class={est.multi_class!r}) is not supported: use 'ovr'")
        check_positive("intercept_scaling", est.intercept_scaling, type(est))
        check_no_class_weight(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._ovr import OneVsRest

        return OneVsRest(type(self))

    def _objective_constants(self) -> tuple[float, float, float]:
        est = self.estimator_
        return float(est.C), 1.0, 1.0 / float(est.intercept_scaling) ** 2

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - y_pm * f) ** 2

    @staticmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return -2.0 * y_pm * np.maximum(0.0, 1.0 - y_pm * f)

    @staticmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.where(y_pm * f < 1.0, 2.0, 0.0)


SGD_LOSSES = ("log_loss", "hinge", "modified_huber")


def check_sgd(est: Any) -> None:
    if est.loss not in SGD_LOSSES:
        raise ValidationError(f"SGDClassifier(loss={est.loss!r}) is not supported by the exact slope; use one of "
                              f"{list(SGD_LOSSES)}")
    if est.penalty != "l2":
        raise ValidationError(f"SGDClassifier must use penalty='l2' for the exact slope, got {est.penalty!r}")
    check_positive("alpha", est.alpha, type(est))
    check_no_class_weight(est)


class _SGDSmoothSlope(_LinearModelSlope):
    """``SGDClassifier`` with a smooth loss, at the **exact optimum of its objective**
    ``½α‖w‖² + (1/n) Σ s_i ℓ(y_i, f_i)`` — n the number of clean rows, fixed along β (so that β = 0
    is the clean fit), intercept unpenalised; i.e. c = 1/(α n). SGD itself stops early (its
    ``tol``, ``max_iter``, learning rate): the Newton polish takes its solution to the optimum and
    writes it back, so predictions are the optimum's. K ≥ 3: one-vs-rest, as SGD fits it."""

    refits_at_the_optimum = True

    def _check_params(self, est: Any) -> None:
        check_sgd(est)

    def _multiclass_part(self) -> Any:
        from robust_hpo.slope._ovr import OneVsRest

        return OneVsRest(type(self))

    def _objective_constants(self) -> tuple[float, float, float]:
        return 1.0 / (float(self.estimator_.alpha) * self.n_clean_), 1.0, 0.0


class SGDLogSlope(_SGDSmoothSlope):
    loss_name = "log-loss"
    pointwise_loss = staticmethod(LogisticSlope.pointwise_loss)
    loss_grad = staticmethod(LogisticSlope.loss_grad)
    loss_curvature = staticmethod(LogisticSlope.loss_curvature)


class SGDModifiedHuberSlope(_SGDSmoothSlope):
    """modified_huber: ``max(0, 1 − z)²`` for z = y f ≥ −1, ``−4 z`` below (once differentiable)."""

    loss_name = "modified huber"

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        z = y_pm * f
        return np.where(z >= -1.0, np.maximum(0.0, 1.0 - z) ** 2, -4.0 * z)

    @staticmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        z = y_pm * f
        return y_pm * np.where(z >= -1.0, -2.0 * np.maximum(0.0, 1.0 - z), -4.0)

    @staticmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        z = y_pm * f
        return np.where((z >= -1.0) & (z < 1.0), 2.0, 0.0)
