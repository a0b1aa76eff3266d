"""The shared part of the convex slope adapters: fit, label encoding, validation and result assembly.

A :class:`ConvexSlopeModel` fits a clone of a scikit-learn estimator on the clean set (β = 0),
brings that fit to the optimum it claims (``_prepare``: Newton polish for the smooth losses,
active-set refinement for SVC; a residual above the learner's limit raises
:class:`~robust_hpo.errors.NotConvergedError`) and then differentiates the optimality conditions for
any number of attacks (``derivative`` / ``derivatives``) without training on poison.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from robust_hpo._validation import as_finite_2d, as_labels
from robust_hpo.errors import NotFittedError, ValidationError
from robust_hpo.slope._cache import GramCache
from robust_hpo.slope._refit import with_refits
from robust_hpo.slope._result import SlopeResult, TriggerMargins
from robust_hpo.slope._weights import ClassWeights, check_class_weight, check_sample_weight

SUPPORTED = ("LogisticRegression (L2), RidgeClassifier, SVC(kernel='linear'), SVC(kernel='rbf'), LinearSVC, "
             "SGDClassifier (log_loss, hinge, modified_huber; l2), or a Pipeline of StandardScaler/MinMaxScaler "
             "and one of them")


@dataclass(frozen=True)
class Attack:
    """One validated attack in the model's encoding: poison rows, poison labels, triggered rows, targets —
    ±1 for two classes (``classes_[1]`` is +1), class indices 0..K−1 for K ≥ 3."""

    X_poison: np.ndarray
    t_poison: np.ndarray
    X_trigger: np.ndarray
    t_trigger: np.ndarray
    motion: Any = None
    """A pipeline scaler's :class:`~._preprocess.Motion` for this poison set (None: no scaler)."""
    weight: np.ndarray | None = None
    """The poison rows' class weights κ (per unit β; None: all 1)."""
    class_motion: np.ndarray | None = None
    """κ'_k at β = 0 (class_weight="balanced"; None: the class weights do not move)."""
    raw: tuple[np.ndarray, np.ndarray] | None = None
    """The poison and triggered rows as given, before a pipeline's preprocessing (for the β = 1 refit)."""


@dataclass(frozen=True)
class AttackSolution:
    """What a learner's solve gives for one attack: dL/dβ, the triggered points' decision values and
    their β-derivative (``df_t/dβ``), details of the solve, and whether the value is the exact
    derivative at β = 0 (False: a documented one-sided value, e.g. a degenerate SVC)."""

    derivative: float
    f_trigger: np.ndarray
    df_trigger: np.ndarray
    details: dict[str, Any]
    exact: bool = True
    oriented: bool = False
    """True when ``f_trigger`` / ``df_trigger`` already are the target margins and their derivative
    (multi-class: target score minus the best other score); False: binary decision values (× ±1)."""


class ConvexSlopeModel(ABC):
    """A scikit-learn convex learner fitted on clean data, ready to differentiate.

    ``fit`` fits a clone of ``estimator`` with scikit-learn (β = 0), brings the solution to the
    optimum (see the module docstring) and prepares what the derivative needs once;
    ``derivative`` / ``derivatives`` then cost a few solves per attack, so several attacks reuse one
    fit.
    """

    loss_name: str = ""
    estimate: str = "refit"
    """How ``SlopeResult.predicted_backdoor_accuracy`` is made: "refit" (a β = 1 refit per attack,
    ``robust_hpo.slope._refit``: the retrained model's own value) or "linear" (margins linearised)."""

    def __init__(self, estimator: Any, *, damping: float = 0.0, cache: GramCache | None = None,
                 preprocessing: Any = None, pipeline: Any = None) -> None:
        if not (isinstance(damping, numbers.Real) and math.isfinite(damping) and damping >= 0):
            raise ValidationError(f"damping must be a finite number >= 0, got {damping!r}")
        self.estimator = estimator
        self.damping = float(damping)
        self.cache = None if preprocessing is not None else cache  # the scaled array is not the cached one
        self.preprocessing = preprocessing
        self.pipeline = pipeline
        self._check_params(estimator)

    # -- to implement ----------------------------------------------------------------------------
    @abstractmethod
    def _check_params(self, estimator: Any) -> None: ...

    @abstractmethod
    def _prepare(self, X: np.ndarray, y_pm: np.ndarray) -> dict[str, Any]:
        """Polish the fitted clean solution, check its optimality residual and factorise what the
        derivative needs; return details for ``SlopeResult.details`` (at least ``method``)."""

    @abstractmethod
    def _solve_attacks(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        """One :class:`AttackSolution` per attack (the learners batch their solves)."""

    @staticmethod
    @abstractmethod
    def pointwise_loss(y_pm: np.ndarray, f: np.ndarray) -> np.ndarray:
        """The curve loss per point for ±1 labels and decision values ``f``."""

    @abstractmethod
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Decision values of the (polished) clean solution for 2-D float rows."""

    @abstractmethod
    def point_influences(self, X: np.ndarray, y_pm: np.ndarray, X_test: np.ndarray, y_test_pm: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """``dL/ds_j`` for each row j of ``X``: the derivative of the mean curve loss over the test
        points (``quantity="margin"``: of the mean ``−y f(x)``) when point j's sample weight grows
        from its value in the fit — 1 when ``in_fit`` (``X`` is the training set, in its order), 0
        otherwise. Float rows and ±1 labels (:meth:`encode`); no validation (see
        :class:`robust_hpo.slope.TrainingInfluence`, which validates and documents the convention)."""

    # -- shared ------------------------------------------------------------------------------------
    def _estimator_for_fit(self, X: np.ndarray) -> Any:
        return clone(self.estimator)

    def fit(self, X_clean: Any, y_clean: Any, sample_weight: Any = None) -> "ConvexSlopeModel":
        """Fit on the clean set (``sample_weight``: the clean rows' weights; poison rows weigh β)."""
        X = as_finite_2d("X_clean", X_clean, max_abs=MAX_ABS_VALUE)
        y = as_labels("y_clean", y_clean, X.shape[0], "X_clean")
        sw = check_sample_weight(sample_weight, X.shape[0])
        classes = np.unique(y)
        if classes.size < 2:
            raise ValidationError(
                f"y_clean must contain two classes, got a single class {classes.tolist()}"
            )
        if sw is not None:  # a class without weight is not fitted at all (libsvm, liblinear fail on it)
            totals = np.bincount(np.searchsorted(classes, y), weights=sw, minlength=classes.size)
            if np.any(totals <= 0):
                raise ValidationError(
                    f"sample_weight gives class(es) {classes[totals <= 0].tolist()} of y_clean a total weight of 0; "
                    "expected a positive weight in every class (drop those rows instead)")
        self._memo = None  # decision values of an earlier fit are stale
        self.classes_ = classes
        self.n_features_ = X.shape[1]
        self.n_clean_ = X.shape[0]
        self.clean_rows_ = (X, y, sw)  # raw rows, for the β = 1 refit (robust_hpo.slope._refit)
        self._multi = self._multiclass_part() if classes.size > 2 else None
        self.weights_ = ClassWeights(getattr(self.estimator, "class_weight", None), classes,
                                     np.searchsorted(classes, y), sw)
        start = time.perf_counter()
        if self.preprocessing is not None:
            X = self.preprocessing.fit_transform(X, sw)
        warm = getattr(self, "_start", None)  # _optimum_refit: polish from another fit's optimum
        if warm is not None:
            self.estimator_ = copy.deepcopy(warm)
        else:
            self.estimator_ = self._estimator_for_fit(X)
            self._fit_estimator(self.estimator_, X, y)
        self.fit_seconds_ = time.perf_counter() - start
        start = time.perf_counter()
        if self._multi is None:
            self.details_ = self._prepare(X, self.encode("y_clean", y))
        else:
            self.details_ = self._multi.prepare(self, X, self.encode("y_clean", y))
        self.prepare_seconds_ = time.perf_counter() - start
        if self.preprocessing is not None:
            self.pipeline_ = self.preprocessing.pipeline(self.estimator_)
        return self

    def _fit_estimator(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """Fit ``est`` on clean rows with the effective weights ``s κ`` (class_weight as sample weights)."""
        if self.weights_.trivial:
            return est.fit(X, y)
        spec = est.get_params().get("class_weight")
        est.set_params(class_weight=None)
        est.fit(X, y, sample_weight=self.weights_.clean())
        est.set_params(class_weight=spec)
        return est

    def clean_weights(self) -> np.ndarray | None:
        """``s κ`` per clean row (None: all 1)."""
        return None if self.weights_.trivial else self.weights_.clean()

    def _pre(self, X: np.ndarray) -> np.ndarray:
        """Validated raw rows through the fitted preprocessing (identity without a pipeline)."""
        return X if self.preprocessing is None else self.preprocessing.transform(X)

    def _multiclass_part(self) -> "MulticlassPart":
        """The multi-class (K ≥ 3) computation of this learner; refused where there is none."""
        raise ValidationError(
            f"y_clean has {self.classes_.size} classes {self.classes_.tolist()}; the exact slope of "
            f"{type(self.estimator).__name__} supports two classes only; pick a class pair, or use "
            "LogisticRegression, RidgeClassifier, SVC, LinearSVC or SGDClassifier"
        )

    @property
    def n_classes_(self) -> int:
        return int(self.classes_.size)

    def encode(self, name: str, y: np.ndarray) -> np.ndarray:
        """Labels -> ±1 (``classes_[1]`` is +1) for two classes, class indices 0..K−1 for K ≥ 3;
        ``ValueError`` for labels outside the classes."""
        try:  # the class index of each label; a label outside the classes is not found where it sorts
            codes = np.minimum(np.searchsorted(self.classes_, y), self.classes_.size - 1).astype(np.intp)
            known = self.classes_[codes] == y
        except TypeError:  # labels that do not compare with the classes (strings against numbers)
            codes, known = np.zeros(len(y), dtype=np.intp), np.zeros(len(y), dtype=bool)
        if not np.all(known):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            raise ValidationError(
                f"{name} has labels {unknown.tolist()} outside the training classes "
                f"{self.classes_.tolist()} (those of y_clean)"
            )
        if getattr(self, "_multi", None) is not None:
            return codes
        return np.where(y == self.classes_[1], 1.0, -1.0)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels from the polished solution's decision values (``classes_[1]`` where f > 0;
        K ≥ 3: the learner's own rule — the largest score, or one-vs-one votes for SVC)."""
        f = self._decision_memo(X, None)
        if self._multi is not None:
            return self.classes_[self._multi.predict_from(f)]
        return np.where(f > 0, self.classes_[1], self.classes_[0])

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Decision values of raw rows (binary: ``f``; K ≥ 3: the multi-class part's score matrix)."""
        X = self._pre(X)
        return self.decision_function(X) if self._multi is None else self._multi.scores(X)

    def target_margins(self, X: Any, y: Any) -> np.ndarray:
        """Margin of each row toward its label ``y``: binary ``τ f(x)`` (τ = ±1 the label's
        encoding), K ≥ 3 the target score minus the best other score (one-vs-one SVC: the smallest
        decision value of the target's duels, target positive). Positive: predicted as ``y``."""
        Xr = _rows("", "X", X, self.n_features_)
        t = self.encode("y", as_labels("y", y, Xr.shape[0], "X"))
        F = self._scores(Xr)
        return t * F if self._multi is None else self._multi.margins_from(F, t)

    def _decision_memo(self, X: Any, rows: np.ndarray | None) -> np.ndarray:
        """Decision values of ``X``. ``predict`` leaves them for the next ``derivatives`` call on the
        same array object (a study's trial predicts the clean test set for its accuracy, then scales
        the margins on that set); that call uses them once and forgets them."""
        memo, self._memo = getattr(self, "_memo", None), None
        if rows is not None and memo is not None and memo[0] is X:
            return memo[1]
        f = self._scores(rows if rows is not None else _rows("", "X", X, self.n_features_))
        if rows is None:
            self._memo = (X, f)
        return f

    def loss(self, X: Any, y: Any, estimator: Any = None) -> float:
        """Mean curve loss of ``estimator`` (default: the polished clean fit) on (X, y)."""
        X = as_finite_2d("X", X)
        y_pm = self.encode("y", as_labels("y", y, X.shape[0], "X"))
        if estimator is not None and self.preprocessing is not None and hasattr(estimator, "steps"):
            X = estimator[:-1].transform(X)  # a refitted pipeline: its own preprocessing
            estimator = estimator[-1]
        else:
            X = self._pre(X) if estimator is None else X
        if self._multi is not None:
            F = self._multi.scores(X) if estimator is None else self._multi.scores_of(estimator, X)
            return float(self._multi.loss_from(F, y_pm).mean())
        if estimator is None:
            f = self.decision_function(X)
        else:
            f = np.asarray(estimator.decision_function(X), dtype=np.float64).ravel()
        return float(self.pointwise_loss(y_pm, f).mean())

    def fit_weighted(self, X_clean: Any, y_clean: Any, X_poison: Any, y_poison: Any,
                     beta: float, sample_weight: Any = None, *, warm_start: bool = False) -> Any:
        """Refit with scikit-learn on clean ∪ poison, poison weighted by ``beta`` (Eq. 1); clean rows
        weigh ``sample_weight`` (default 1), class weights as the slope defines them (``_weights``).
        SGDClassifier (``refits_at_the_optimum``): the exact optimum of its objective, not SGD's
        early-stopped refit, so that curves agree with the slope at β → 0. ``warm_start``: a bare
        ``LogisticRegression`` starts its solver from this model's clean fit (the same convex
        optimum, fewer iterations); other learners and pipelines ignore it."""
        if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta >= 0):
            raise ValidationError(f"beta must be a finite number >= 0, got {beta!r}")
        Xc = as_finite_2d("X_clean", X_clean)
        Xp = as_finite_2d("X_poison", X_poison)
        yc, yp = np.asarray(y_clean), np.asarray(y_poison)
        sw = check_sample_weight(sample_weight, Xc.shape[0])
        X, y = (Xc, yc) if beta == 0 else (np.vstack([Xc, Xp]), np.concatenate([yc, yp]))
        base = np.ones(Xc.shape[0]) if sw is None else sw
        w = base if beta == 0 else np.concatenate([base, np.full(Xp.shape[0], float(beta))])
        if self.refits_at_the_optimum:
            return self._optimum_refit(X, y, w, Xc.shape[0])
        spec = getattr(self.estimator, "class_weight", None)
        if spec is not None:  # class weights from the β-weighted class sizes (see _weights)
            classes = np.unique(yc)
            weights = ClassWeights(spec, classes, np.searchsorted(classes, yc), sw)
            effective = weights.at(float(beta), np.searchsorted(classes, yp)) if beta else weights.clean()
        else:
            effective = w
        if self.preprocessing is not None:  # the whole pipeline, its scaler weighted too
            pipe = clone(self.pipeline)
            pipe.steps[-1][1].set_params(**({"class_weight": None} if spec is not None else {}))
            params = self.preprocessing.fit_params(pipe.steps, w)
            params[f"{pipe.steps[-1][0]}__sample_weight"] = effective
            with self._fit_threads():
                return pipe.fit(X, y, **params)
        est = self._estimator_for_fit(Xc)
        if spec is not None:
            est.set_params(class_weight=None)
        clean = getattr(self, "estimator_", None)
        if warm_start and isinstance(est, LogisticRegression) and isinstance(clean, LogisticRegression):
            est.set_params(warm_start=True)
            est.coef_, est.intercept_ = clean.coef_.copy(), clean.intercept_.copy()
        with self._fit_threads():
            if beta == 0 and sw is None and spec is None:
                return est.fit(X, y)
            return est.fit(X, y, sample_weight=effective)

    def _fit_threads(self) -> contextlib.AbstractContextManager[Any]:
        """The BLAS threads scikit-learn's fits of this learner run on (the start and :meth:`fit_weighted`):
        as configured, unless a learner's solver is matrix–vector bound (:class:`~._linear.LogisticSlope`)."""
        return contextlib.nullcontext()

    refits_at_the_optimum: bool = False
    """True where scikit-learn's own fit stops short of the optimum the slope differentiates
    (``SGDClassifier``): :meth:`fit_weighted` then returns that optimum (:meth:`_optimum_refit`)."""

    def _optimum_refit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, n_clean: int) -> Any:
        """The exact optimum of the learner's β-weighted objective, fitted and polished as the slope's
        clean fit is (a fresh adapter on clean ∪ poison): the estimator (or pipeline) carrying it.
        The weights are scaled by N / n_clean so that the data term keeps the clean-row normalisation
        (SGD's 1/n with n the clean rows, fixed along β); balanced class weights and a scaler's
        statistics are invariant to that scale."""
        preprocessing = None if self.preprocessing is None else copy.copy(self.preprocessing)  # refitted below
        model = type(self)(self.estimator, damping=self.damping, preprocessing=preprocessing, pipeline=self.pipeline)
        model.estimate = "linear"
        clean = getattr(self, "estimator_", None)
        if clean is not None and type(clean) is type(self.estimator) and self.preprocessing is None:
            model._start = clean  # Newton from the clean optimum (SGD itself may stop anywhere); hinge: libsvm
        model.fit(X, y, sample_weight=w * (X.shape[0] / n_clean))
        return model.pipeline_ if self.preprocessing is not None else model.estimator_

    # -- derivatives -------------------------------------------------------------------------------
    def derivative(self, X_poison: Any, y_poison: Any, X_trigger: Any, y_trigger: Any, *,
                   X_test: Any = None, y_test: Any = None) -> SlopeResult:
        """The backdoor learning slope at β = 0 for this poison set and triggered test set.

        ``SlopeResult.margins`` holds the triggered points' target margins and their β-derivative
        from the same solve; pass the clean test set (``X_test``, ``y_test``) to set their
        ``scale`` (mean |f| on clean test points), hence ``normalised_margin``.
        """
        return self.derivatives([(X_poison, y_poison, X_trigger, y_trigger)],
                                X_test=X_test, y_test=y_test)[0]

    def derivatives(self, attacks: Sequence[Sequence[Any]], *, X_test: Any = None,
                    y_test: Any = None) -> list[SlopeResult]:
        """One :class:`SlopeResult` (with margins) per attack ``(X_poison, y_poison, X_trigger,
        y_trigger)``, all from this one clean fit; the solves of all attacks are batched.

        Each result's ``slope_seconds`` is the fit's preparation (polish and factorisation) plus an
        equal share of this call; ``details["margins_seconds"]`` is the equal share of the part spent
        on the margins (target margins, their derivatives and the clean-test scale), so it never
        exceeds the attack's share of the call.
        """
        if not hasattr(self, "estimator_"):
            raise NotFittedError("call fit(X_clean, y_clean) before derivative(...)")
        if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence) or len(attacks) == 0:
            raise ValidationError("attacks must be a non-empty sequence of (X_poison, y_poison, X_trigger, "
                             "y_trigger) tuples")
        checked = [self._attack(i, a, len(attacks)) for i, a in enumerate(attacks)]
        test = self._test_set(X_test, y_test)
        start = time.perf_counter()
        solutions = self._multi.solve(checked) if self._multi is not None else self._solve_attacks(checked)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        scale = None if test is None else self._test_scale(X_test, *test)
        margins = [TriggerMargins(margin=s.f_trigger if s.oriented else a.t_trigger * s.f_trigger,
                                  derivative=s.df_trigger if s.oriented else a.t_trigger * s.df_trigger,
                                  scale=scale) for a, s in zip(checked, solutions)]
        margin_seconds = time.perf_counter() - start
        refits: list[dict[str, Any]] = [{} for _ in checked]
        if self.estimate == "refit":
            pairs = with_refits(self, checked, margins)
            margins, refits = [m for m, _ in pairs], [d for _, d in pairs]
        share = (elapsed + margin_seconds) / len(checked)
        margin_share = (sum(s.details.get("margins_seconds", 0.0) for s in solutions) + margin_seconds) / len(checked)
        return [
            SlopeResult.from_derivative(
                s.derivative, n_poison=a.X_poison.shape[0], n_clean=self.n_clean_,
                n_trigger=a.X_trigger.shape[0], method=self.details_["method"],
                loss=self.loss_name if self._multi is None else self._multi.loss_name,
                damping=self.damping, fit_seconds=self.fit_seconds_,
                slope_seconds=self.prepare_seconds_ + share,
                details={**self.details_, **s.details, **self._preprocessing_details(a),
                         "margins_seconds": margin_share, **r},
                exact=s.exact and self._preprocessing_exact(a), margins=m,
            )
            for a, s, m, r in zip(checked, solutions, margins, refits)
        ]

    def _preprocessing_details(self, a: Attack) -> dict[str, Any]:
        if self.preprocessing is None:
            return {}
        out: dict[str, Any] = {"preprocessing": [type(s).__name__ for _, s in self.preprocessing.fitted_]}
        if a.motion is not None and a.motion.jumps:
            out["scaler_jump_features"] = a.motion.jumps
        if self.preprocessing.has_pca:
            out["approximation"] = "preprocessing (scaler and PCA) held at its clean fit"
        return out

    def _preprocessing_exact(self, a: Attack) -> bool:
        if self.preprocessing is None:
            return True
        return not self.preprocessing.has_pca and not (a.motion is not None and a.motion.jumps)

    def _attack(self, index: int, attack: Any, count: int) -> Attack:
        where = "" if count == 1 else f"attacks[{index}]: "
        if isinstance(attack, (str, bytes)) or not isinstance(attack, Sequence) or len(attack) != 4:
            raise ValidationError(f"{where}expected a (X_poison, y_poison, X_trigger, y_trigger) tuple, "
                             f"got {type(attack).__name__}")
        X_poison, y_poison, X_trigger, y_trigger = attack
        Xp = _rows(where, "X_poison", X_poison, self.n_features_)
        Xt = _rows(where, "X_trigger", X_trigger, self.n_features_)
        tp = self.encode(f"{where}y_poison", as_labels(f"{where}y_poison", y_poison, Xp.shape[0],
                                                       "X_poison"))
        tt = self.encode(f"{where}y_trigger", as_labels(f"{where}y_trigger", y_trigger, Xt.shape[0],
                                                        "X_trigger"))
        codes = tp.astype(np.intp) if self._multi is not None else (tp > 0).astype(np.intp)
        weight = None if self.weights_.spec is None else self.weights_.poison(codes)
        class_motion = self.weights_.motion(codes)
        if self.preprocessing is None:
            return Attack(Xp, tp, Xt, tt, None, weight, class_motion, raw=(Xp, Xt))
        return Attack(self._pre(Xp), tp, self._pre(Xt), tt, self.preprocessing.motion(Xp), weight, class_motion,
                      raw=(Xp, Xt))

    def _test_set(self, X_test: Any, y_test: Any) -> tuple[np.ndarray, np.ndarray] | None:
        if X_test is None and y_test is None:
            return None
        if X_test is None or y_test is None:
            raise ValidationError("pass both X_test and y_test (the clean test set), or neither")
        Xs = _rows("", "X_test", X_test, self.n_features_)
        ts = self.encode("y_test", as_labels("y_test", y_test, Xs.shape[0], "X_test"))
        return Xs, ts

    def _test_scale(self, X_test: Any, rows: np.ndarray, t: np.ndarray) -> float:
        """Mean |margin| of the clean test points toward their true labels (binary: mean |f|)."""
        F = self._decision_memo(X_test, rows)
        if self._multi is None:
            return float(np.mean(np.abs(F)))
        return float(np.mean(np.abs(self._multi.margins_from(F, t))))


class MulticlassPart(ABC):
    """The K ≥ 3 computation of a learner (see :mod:`._multiclass`): fed the fitted estimator and
    class indices; scores are whatever its prediction rule reads (a score per class, or per
    one-vs-one duel)."""

    loss_name: str = ""

    @abstractmethod
    def prepare(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any]: ...

    @abstractmethod
    def scores(self, X: np.ndarray) -> np.ndarray: ...

    def scores_of(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        """Scores of another fitted estimator of the same kind (a β-weighted refit)."""
        return np.asarray(estimator.decision_function(X), dtype=np.float64)

    @abstractmethod
    def predict_from(self, F: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def margins_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def loss_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def solve(self, attacks: Sequence[Attack]) -> list[AttackSolution]: ...

    def point_influences(self, X: np.ndarray, codes: np.ndarray, X_test: np.ndarray, test_codes: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """``dL/ds_j`` for each row j of ``X`` (class indices ``codes``), as
        :meth:`ConvexSlopeModel.point_influences` with this part's curve loss (``loss_from``) — or, for
        ``quantity="margin"``, the negative target margin (``margins_from``; the derivative of its
        active max / min) — averaged over the test rows labelled ``test_codes``."""
        raise ValidationError(f"per-point influences are not available for {type(self).__name__}")


def best_other(F: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target score minus the best other score, the index of that other class) per row."""
    rows = np.arange(F.shape[0])
    other = F.copy()
    other[rows, codes] = -np.inf
    k = np.argmax(other, axis=1)
    return F[rows, codes] - F[rows, k], k


KINK_TOL = 1e-9
"""A triggered point with ``|t f − 1| ≤ KINK_TOL`` sits on the hinge's kink (e.g. all clean rows identical: w = 0
and every f = ±1): its hinge is active on the right of β = 0 only if ``t df/dβ < 0`` (SVC, one-vs-one)."""


def on_the_kink(margins: np.ndarray) -> np.ndarray:
    """Rows whose target margin ``t f`` is 1 to within :data:`KINK_TOL` (relative)."""
    return np.abs(margins - 1.0) <= KINK_TOL * np.maximum(1.0, np.abs(margins))


def hinge_active(margins: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Rows whose hinge ``max(0, 1 − t f)`` moves with β at 0⁺: inside the margin (``t f < 1``), or on
    its kink (:func:`on_the_kink`) and moved inside (``motion = t df/dβ < 0``; read on the kink rows only)."""
    kinks = on_the_kink(margins)
    return (margins < 1.0) & ~kinks | kinks & (motion < 0)


def fit_layout(est: Any, X: np.ndarray, y: np.ndarray, **settings: Any) -> Any:
    """``est`` fitted by scikit-learn on one row per class, ``settings`` overridden for that fit only: the
    fitted structure (classes, coefficient shapes, the installed version's attributes) of an estimator
    whose coefficients are computed elsewhere. A solver's convergence warning about K rows means nothing."""
    first = np.unique(y, return_index=True)[1]
    kept = {name: est.get_params()[name] for name in settings}
    est.set_params(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[first], y[first])
    return est.set_params(**kept)


MAX_ABS_VALUE = 1e50
"""Rows with a larger entry are refused (``as_finite_2d(..., max_abs=MAX_ABS_VALUE)``): their products
overflow float64 or lose all precision next to the regulariser (scikit-learn's liblinear never returns on
|x| ≈ 1e100)."""


def _rows(where: str, name: str, X: Any, n_features: int) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim > 2:  # images: flattened as the learners see them
        arr = arr.reshape(arr.shape[0], -1)
    out = as_finite_2d(f"{where}{name}", arr, max_abs=MAX_ABS_VALUE)
    if out.shape[1] != n_features:
        raise ValidationError(f"{where}{name} has {out.shape[1]} features but X_clean has {n_features}")
    return out


def check_positive(name: str, value: Any, cls: type) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise ValidationError(f"{cls.__name__} {name} must be a finite number > 0, got {value!r}")


def check_no_class_weight(est: Any) -> None:
    """``class_weight`` must be None, "balanced" or a dict of positive weights (see ``_weights``)."""
    check_class_weight(est.class_weight, est)


def estimator_settings(est: Any) -> str:
    """``Name(tol=…, max_iter=…)``: the settings a NotConvergedError names."""
    return f"{type(est).__name__}(tol={est.tol!r}, max_iter={est.max_iter!r})"
