"""Exact backdoor slopes for scikit-learn's convex learners by implicit differentiation.

Conventions (scikit-learn's own; s_i = sample weight: 1 for clean points, β for poison points):

* ``LogisticRegression``: ``½‖w‖² + C Σ s_i log(1 + exp(−y_i f_i))``; curve loss = log-loss (nats).
* ``RidgeClassifier``:    ``α‖w‖² + Σ s_i (y_i − f_i)²``;            curve loss = squared error.
* ``SVC`` (linear, rbf):   ``½‖w‖²_K + C Σ s_i max(0, 1 − y_i f_i)``;   curve loss = hinge.

Labels are encoded y = +1 for ``classes_[1]`` and −1 for ``classes_[0]`` (scikit-learn's order), and
``f`` is ``decision_function``. The intercept is unpenalised (lbfgs, newton-*, sag, saga; Ridge's
centring), or penalised as ``½ (b / intercept_scaling)²`` with liblinear — exactly as fitted.

The derivative is ``dL/dβ`` at β = 0 of the *mean* curve loss L over the triggered test points,
β weighting all m poison points at once. By the implicit function theorem on the optimality
conditions, ``dθ/dβ = −H⁻¹ c Σ_j ∇θ ℓ(t_j, f(x̃_j))`` (c = C, or 1 for ridge), so
``dL/dβ = ∇θ Lᵀ dθ/dβ``. For SVC, the KKT conditions of the margin support vectors replace
H (NOTES.md); the hinge curve is piecewise linear in β, and the value is the right derivative.
"""

from __future__ import annotations

import math
import numbers
import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo._validation import as_finite_2d, as_labels
from robust_hpo.errors import DegenerateSolveError
from robust_hpo.slope._cache import GramCache
from robust_hpo.slope._hessian import LinearModelHessian, Space
from robust_hpo.slope._result import SlopeResult

SUPPORTED = "LogisticRegression (L2), RidgeClassifier, SVC(kernel='linear') or SVC(kernel='rbf')"


class ConvexSlopeModel(ABC):
    """A scikit-learn convex learner fitted on clean data, ready to differentiate.

    ``fit`` fits a clone of ``estimator`` with scikit-learn (β = 0) and factorises what the
    derivative needs once; ``derivative`` then costs only a few solves per poison/trigger set,
    so several attacks reuse one fit.
    """

    loss_name: str = ""

    def __init__(self, estimator: Any, *, damping: float = 0.0, cache: GramCache | None = None) -> None:
        if not (isinstance(damping, numbers.Real) and math.isfinite(damping) and damping >= 0):
            raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
        self.estimator = estimator
        self.damping = float(damping)
        self.cache = cache
        self._check_params(estimator)

    # -- to implement ----------------------------------------------------------------------------
    @abstractmethod
    def _check_params(self, estimator: Any) -> None: ...

    @abstractmethod
    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        """Factorise at the fitted clean solution; return details for ``SlopeResult.details``."""

    @abstractmethod
    def _derivative(self, Xp: np.ndarray, tp: np.ndarray, Xt: np.ndarray, tt: np.ndarray) -> float:
        """dL/dβ with ±1-encoded poison labels ``tp`` and trigger labels ``tt``."""

    @staticmethod
    @abstractmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        """The curve loss per point for ±1 labels and decision values ``f``."""

    # -- shared ------------------------------------------------------------------------------------
    def _estimator_for_fit(self, X: np.ndarray) -> Any:
        return clone(self.estimator)

    def fit(self, X_clean: Any, y_clean: Any) -> "ConvexSlopeModel":
        X = as_finite_2d("X_clean", X_clean)
        y = as_labels("y_clean", y_clean, X.shape[0], "X_clean")
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(
                f"y_clean must contain two classes, got a single class {classes.tolist()}"
            )
        if classes.size > 2:
            raise ValueError(
                f"y_clean has {classes.size} classes {classes.tolist()}; the exact slope supports "
                f"binary problems only ({SUPPORTED}); pick a class pair, or use a network learner"
            )
        self.classes_ = classes
        self.n_features_ = X.shape[1]
        self.n_clean_ = X.shape[0]
        self.estimator_ = self._estimator_for_fit(X)
        start = time.perf_counter()
        self.estimator_.fit(X, y)
        self.fit_seconds_ = time.perf_counter() - start
        start = time.perf_counter()
        self.details_ = self._prepare(X, self.encode("y_clean", y))
        self.prepare_seconds_ = time.perf_counter() - start
        return self

    def encode(self, name: str, y: np.ndarray) -> np.ndarray:
        """Labels -> ±1 (``classes_[1]`` is +1); ``ValueError`` for labels outside the classes."""
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"{name} has labels {unknown.tolist()} outside the training classes "
                f"{self.classes_.tolist()}"
            )
        return np.where(y == self.classes_[1], 1.0, -1.0)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.decision_function(X), dtype=np.float64).ravel()

    def predict(self, X: Any) -> np.ndarray:
        return self.estimator_.predict(as_finite_2d("X", X))

    def loss(self, X: Any, y: Any, estimator: Any = None) -> float:
        """Mean curve loss of ``estimator`` (default: the clean fit) on (X, y)."""
        X = as_finite_2d("X", X)
        y_pm = self.encode("y", as_labels("y", y, X.shape[0], "X"))
        est = self.estimator_ if estimator is None else estimator
        f = np.asarray(est.decision_function(X), dtype=np.float64).ravel()
        return float(self.pointwise_loss(y_pm, f).mean())

    def fit_weighted(self, X_clean: Any, y_clean: Any, X_poison: Any, y_poison: Any,
                     beta: float) -> Any:
        """Refit with scikit-learn on clean ∪ poison, poison weighted by ``beta`` (Eq. 1)."""
        if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        Xc = as_finite_2d("X_clean", X_clean)
        Xp = as_finite_2d("X_poison", X_poison)
        est = self._estimator_for_fit(Xc)
        if beta == 0:
            return est.fit(Xc, np.asarray(y_clean))
        X = np.vstack([Xc, Xp])
        y = np.concatenate([np.asarray(y_clean), np.asarray(y_poison)])
        w = np.concatenate([np.ones(Xc.shape[0]), np.full(Xp.shape[0], float(beta))])
        return est.fit(X, y, sample_weight=w)

    def derivative(self, X_poison: Any, y_poison: Any, X_trigger: Any, y_trigger: Any) -> SlopeResult:
        """The backdoor learning slope at β = 0 for this poison set and triggered test set."""
        if not hasattr(self, "estimator_"):
            raise RuntimeError("call fit(X_clean, y_clean) before derivative(...)")
        Xp = as_finite_2d("X_poison", X_poison)
        Xt = as_finite_2d("X_trigger", X_trigger)
        for name, arr in (("X_poison", Xp), ("X_trigger", Xt)):
            if arr.shape[1] != self.n_features_:
                raise ValueError(
                    f"{name} has {arr.shape[1]} features but X_clean has {self.n_features_}"
                )
        tp = self.encode("y_poison", as_labels("y_poison", y_poison, Xp.shape[0], "X_poison"))
        tt = self.encode("y_trigger", as_labels("y_trigger", y_trigger, Xt.shape[0], "X_trigger"))
        start = time.perf_counter()
        value = self._derivative(Xp, tp, Xt, tt)
        seconds = time.perf_counter() - start + self.prepare_seconds_
        return SlopeResult.from_derivative(
            value, n_poison=Xp.shape[0], n_clean=self.n_clean_, n_trigger=Xt.shape[0],
            method=self.details_["method"], loss=self.loss_name, damping=self.damping,
            fit_seconds=self.fit_seconds_, slope_seconds=seconds, details=dict(self.details_),
        )


# ---------------------------------------------------------------------------------------------
# Linear models with a twice-differentiable loss: logistic regression and ridge.
# ---------------------------------------------------------------------------------------------
class _LinearModelSlope(ConvexSlopeModel):
    """Primal Hessian H = diag(r) + c·Zᵀ diag(ℓ'') Z of the clean objective, factorised once."""

    space: Space = "auto"

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

    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        c, r_w, r_b = self._objective_constants()
        self._c = c
        self._fit_intercept = bool(self.estimator_.fit_intercept)
        q = c * self.loss_curvature(y_pm, self.decision_function(X))
        self._hessian = LinearModelHessian(
            X, q, r_w=r_w, r_b=r_b, fit_intercept=self._fit_intercept,
            space=self.space, damping=self.damping, cache=self.cache,
        )
        return {"method": self._hessian.method, "space": self._hessian.space, "n_features": X.shape[1]}

    def _gradient(self, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Σ_i coef_i ∇θ f(x_i) laid out as [w, b]."""
        g = X.T @ coef
        return np.concatenate([g, [coef.sum()]]) if self._fit_intercept else g

    def _derivative(self, Xp: np.ndarray, tp: np.ndarray, Xt: np.ndarray, tt: np.ndarray) -> float:
        g_poison = self._c * self._gradient(Xp, self.loss_grad(tp, self.decision_function(Xp)))
        g_trigger = self._gradient(Xt, self.loss_grad(tt, self.decision_function(Xt))) / Xt.shape[0]
        value = float(-g_trigger @ self._hessian.solve(g_poison))
        self._record_solver()
        return value

    def _record_solver(self) -> None:
        """The solve may have changed method (cg → its Cholesky fallback): keep details current."""
        self.details_.update(method=self._hessian.method, cg_iterations=self._hessian.cg_iterations)


class LogisticSlope(_LinearModelSlope):
    loss_name = "log-loss"

    def _check_params(self, est: LogisticRegression) -> None:
        _check_positive("C", est.C, LogisticRegression)
        penalty = getattr(est, "penalty", "l2")
        if penalty not in ("l2", "deprecated") or (est.l1_ratio not in (0, 0.0, None)):
            raise ValueError(
                f"LogisticRegression must use the L2 penalty (l1_ratio=0) for the exact slope, got "
                f"penalty={penalty!r}, l1_ratio={est.l1_ratio!r}"
            )
        _check_no_class_weight(est)

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
    loss_name = "squared"

    def _check_params(self, est: RidgeClassifier) -> None:
        _check_positive("alpha", est.alpha, RidgeClassifier)
        if est.positive:
            raise ValueError("RidgeClassifier(positive=True) is not supported by the exact slope")
        _check_no_class_weight(est)

    def _objective_constants(self) -> tuple[float, float, float]:
        return 1.0, 2.0 * float(self.estimator_.alpha), 0.0

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return (y_pm - f) ** 2

    @staticmethod
    def loss_grad(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return -2.0 * (y_pm - f)

    @staticmethod
    def loss_curvature(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.full_like(f, 2.0)


# ---------------------------------------------------------------------------------------------
# Support vector machines: the incremental-SVM (KKT) system of the margin support vectors.
# ---------------------------------------------------------------------------------------------
class SVCSlope(ConvexSlopeModel):
    """KKT sensitivity of ``SVC`` (Cauwenberghs & Poggio 2001); see NOTES.md.

    A support vector is *at bound* when ``α ≥ C (1 − bound_rtol)``; the others are margin support
    vectors, whose ``y f(x) = 1`` and ``Σ α y = 0`` must keep holding as β grows. With no margin
    support vector at all (typical at very small C) the intercept is set-valued at β = 0 and the
    KKT system is empty: then the bound multipliers and the intercept are held fixed and only the
    entering poison moves f — a documented approximation, flagged in ``details["intercept"]``.
    ``gamma='scale'``/``'auto'`` is resolved on the clean training set and held fixed along β.
    """

    loss_name = "hinge"
    bound_rtol = 1e-8

    def _check_params(self, est: SVC) -> None:
        if est.kernel not in ("linear", "rbf"):
            raise ValueError(f"SVC kernel must be 'linear' or 'rbf' for the exact slope, got {est.kernel!r}")
        _check_positive("C", est.C, SVC)
        if est.kernel == "rbf" and not isinstance(est.gamma, str):
            _check_positive("gamma", est.gamma, SVC)
        elif isinstance(est.gamma, str) and est.gamma not in ("scale", "auto"):
            raise ValueError(f"SVC gamma must be a positive number, 'scale' or 'auto', got {est.gamma!r}")
        _check_no_class_weight(est)

    def _estimator_for_fit(self, X: np.ndarray) -> SVC:
        est = clone(self.estimator)
        if est.kernel == "rbf" and isinstance(est.gamma, str):
            gamma = 1.0 / X.shape[1] if est.gamma == "auto" else 1.0 / (X.shape[1] * X.var())
            if not gamma > 0 or not math.isfinite(gamma):
                raise ValueError("gamma='scale' is undefined: X_clean has zero variance; pass a number")
            est.set_params(gamma=gamma)
        return est

    def kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """K(A, B): ``A Bᵀ`` or ``exp(−γ‖a − b‖²)`` (plain BLAS; no per-call validation)."""
        G = A @ B.T
        if self.estimator_.kernel == "linear":
            return G
        sq = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * G
        np.maximum(sq, 0.0, out=sq)
        return np.exp(-self.estimator_.gamma * sq, out=sq)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``Σ_sv (α y)_sv K(x_sv, x) + b`` — scikit-learn's decision values, computed with BLAS."""
        return self.kernel(X, self._X_sv) @ self._coef_sv + self._b

    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        est = self.estimator_
        C = float(est.C)
        alpha = np.abs(est.dual_coef_.ravel())
        sv = est.support_
        margin = alpha < C * (1.0 - self.bound_rtol)
        self._degenerate = not margin.any()
        self._C = C
        self._X_sv = X[sv]
        self._coef_sv = est.dual_coef_.ravel().astype(np.float64)
        self._b = float(est.intercept_[0])
        self._XS = X[sv[margin]]
        self._yS = y_pm[sv[margin]]
        QSS = self._yS[:, None] * self.kernel(self._XS, self._XS) * self._yS[None, :]
        s = QSS.shape[0]
        kkt = np.zeros((s + 1, s + 1))
        kkt[:s, :s] = QSS
        kkt[:s, s] = self._yS
        kkt[s, :s] = self._yS
        if self.damping:
            kkt[np.arange(s), np.arange(s)] += self.damping
        self._kkt = kkt
        details = {"method": "svm-kkt", "kernel": est.kernel, "gamma": float(getattr(est, "_gamma", 0.0)),
                   "n_margin_sv": int(s), "n_bound_sv": int(sv.size - s)}
        if self._degenerate:
            details["intercept"] = ("held fixed: no margin support vectors, the intercept is "
                                    "set-valued at β = 0")
        return details

    def _solve_kkt(self, rhs: np.ndarray) -> np.ndarray:
        """Solve the (symmetric, indefinite) KKT system; least squares when it is singular."""
        try:  # numpy's LAPACK: shares BLAS threads with the kernel products (see _hessian)
            sol = np.linalg.solve(self._kkt, rhs)
            method = "lu"
        except np.linalg.LinAlgError:
            sol = None
        if sol is None or not np.all(np.isfinite(sol)) or _rel_residual(self._kkt, sol, rhs) > 1e-8:
            sol = np.linalg.lstsq(self._kkt, rhs, rcond=None)[0]
            method = "lstsq"
        res = _rel_residual(self._kkt, sol, rhs)
        if not res <= 1e-6:
            raise DegenerateSolveError(
                f"the SVC KKT system has no consistent solution (relative residual {res:.2e})"
            )
        self.details_["kkt_solver"] = method
        self.details_["kkt_residual"] = float(res)
        return sol

    def _derivative(self, Xp: np.ndarray, tp: np.ndarray, Xt: np.ndarray, tt: np.ndarray) -> float:
        viol = tp * self.decision_function(Xp) < 1.0  # poison points that enter at α = Cβ
        self.details_["n_poison_entering"] = int(viol.sum())
        ft = self.decision_function(Xt)
        active = tt * ft < 1.0  # triggered points where the hinge is not flat
        if not viol.any() or not active.any():
            return 0.0
        Xv, tv = Xp[viol], tp[viol]
        XtA = Xt[active]
        if self._degenerate:  # all support vectors at the bound: only the entering poison moves f
            df = self._C * (self.kernel(XtA, Xv) @ tv)
            return float(np.sum(-tt[active] * df) / Xt.shape[0])
        s = self._yS.size
        rhs = np.empty(s + 1)
        rhs[:s] = -self._C * self._yS * (self.kernel(self._XS, Xv) @ tv)
        rhs[s] = -self._C * tv.sum()
        sol = self._solve_kkt(rhs)
        d_alpha, d_b = sol[:s], sol[s]
        df = (self.kernel(XtA, self._XS) @ (d_alpha * self._yS)
              + self._C * (self.kernel(XtA, Xv) @ tv) + d_b)
        return float(np.sum(-tt[active] * df) / Xt.shape[0])

    @staticmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - y_pm * f)


def _rel_residual(A: np.ndarray, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(A @ x - b) / max(np.linalg.norm(b), 1e-300))


def _check_positive(name: str, value: Any, cls: type) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise ValueError(f"{cls.__name__} {name} must be a finite number > 0, got {value!r}")


def _check_no_class_weight(est: Any) -> None:
    if est.class_weight is not None:
        raise ValueError(
            f"{type(est).__name__}(class_weight=...) is not supported: class weights would rescale "
            "the poison weight β; use class_weight=None"
        )


def slope_model(estimator: Any, *, damping: float = 0.0, cache: GramCache | None = None) -> ConvexSlopeModel:
    """The adapter for an unfitted scikit-learn estimator; ``ValueError`` if unsupported.

    ``cache`` (a :class:`GramCache`) reuses data-only Gram products across fits on the same array.
    """
    if isinstance(estimator, LogisticRegression):
        return LogisticSlope(estimator, damping=damping, cache=cache)
    if isinstance(estimator, RidgeClassifier):
        return RidgeSlope(estimator, damping=damping, cache=cache)
    if isinstance(estimator, SVC):
        return SVCSlope(estimator, damping=damping, cache=cache)
    raise ValueError(
        f"estimator must be one of {SUPPORTED}; got {type(estimator).__name__}. "
        "For other models use a network learner (finite-difference or influence slope)."
    )
