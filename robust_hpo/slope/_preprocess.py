"""Pipelines: a scaler fitted on the β-weighted training set in front of a convex learner, exactly.

``Pipeline`` / ``make_pipeline`` of one ``StandardScaler`` or ``MinMaxScaler`` (optionally a ``PCA``
after it, see below) and a supported final estimator. The scaler is fitted, like the learner, on
clean ∪ poison with sample weights 1 and β, so its statistics move with β.

**Why the scaler is a moving penalty.** Write θ = [w, b] in the coordinates of the clean scaler
(x' = (x − μ₀)/σ₀, fixed). The pipeline at β scores ``f = w_βᵀ (x − μ_β)/σ_β + b_β``; in the fixed
coordinates this is ``wᵀx' + b`` with ``w = w_β ⊙ σ₀/σ_β`` and ``b = b_β + w_βᵀ(μ₀ − μ_β)/σ_β``, and
the learner's penalty ``½ r_w ‖w_β‖² + ½ r_b b_β²`` becomes ``½ r_w Σ_j ρ_j(β) w_j² + ½ r_b b_β(w, b)²``
with ``ρ_j = (σ_β,j/σ₀,j)²``. The data term does not change (the scores are the same), so the
scaler contributes one more term to the derivative of the optimality conditions:

    E = [ r_w ρ' ⊙ w + r_b b a ;  r_b aᵀw ],   ρ'_j = v'_j / v_j,   a_j = μ'_j / σ_j,

(v the weighted variance; μ' = (m/n)(x̄_poison − μ₀), v' = (Σ_poison (x − μ₀)² − m v)/n at β = 0), and
``dθ/dβ = −H⁻¹ (g_poison + E)``. An unpenalised intercept (r_b = 0: lbfgs logistic, ridge, SGD)
makes the mean irrelevant. For SVC the moving penalty is a moving kernel (see :mod:`._svc`).

**Where the statistics jump.** A feature constant on the clean set (scikit-learn then uses scale 1)
that the poison moves gets variance ∝ β: its scale is not differentiable at 0 and the pipeline jumps
at β = 0⁺. ``MinMaxScaler`` (no sample weights: any point with β > 0 counts) has piecewise-constant
statistics that jump when the poison leaves the clean range. In both cases the result is marked
``exact = False`` (``details["scaler_jump_features"]``: how many features jump) and the value is the
derivative with those features' statistics held at their clean values. Otherwise MinMaxScaler's
statistics do not move (E = 0) and the slope is exact.

**PCA** is not differentiated: pass ``exact=False`` to hold the whole preprocessing (the scaler
and the PCA) at its clean fit — the poison's effect on the statistics and the components is
ignored and every result is marked ``exact = False``; otherwise a ``PCA`` step is refused. Any
other step is refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from robust_hpo.errors import ValidationError

SCALERS = (StandardScaler, MinMaxScaler)


@dataclass(frozen=True)
class Motion:
    """How the scaler's statistics move at β = 0 for one poison set, in the clean scaler's
    coordinates: ``rho`` = ρ' (relative variance change per feature), ``a`` = μ'/σ, and the number
    of features whose statistics jump at 0⁺ (held at their clean values)."""

    rho: np.ndarray
    a: np.ndarray
    jumps: int

    def penalty_rhs(self, W: np.ndarray, b: np.ndarray | None, r_w: float, r_b: float) -> np.ndarray:
        """E (see the module docstring) for coefficient columns ``W`` (d × k) and intercepts ``b``
        (k,) or None; laid out like the parameters ([w; b] per column)."""
        top = r_w * self.rho[:, None] * W
        if b is None:
            return top
        top = top + r_b * self.a[:, None] * b[None, :]
        return np.vstack([top, r_b * (self.a @ W)[None, :]])


def _transform(step: Any, X: np.ndarray) -> np.ndarray:
    """``step.transform(X)`` for validated float64 rows: a fitted StandardScaler or MinMaxScaler as
    scikit-learn's own arithmetic (``(X − mean_) / scale_``; ``X · scale_ + min_``, the same
    operations in the same order, so the same numbers) without its input checks, which cost more
    than the arithmetic on small sets; other steps (PCA) through their own ``transform``."""
    if type(step) is StandardScaler and X.dtype == np.float64 and X.ndim == 2:
        out = X - step.mean_ if step.with_mean else X.copy()
        if step.with_std:
            out /= step.scale_
        return out
    if type(step) is MinMaxScaler and X.dtype == np.float64 and X.ndim == 2 and not step.clip:
        out = X * step.scale_
        out += step.min_
        return out
    return step.transform(X)


class Preprocessing:
    """The fitted steps in front of the learner (scaler, optionally PCA held fixed)."""

    def __init__(self, steps: list[tuple[str, Any]], exact: bool) -> None:
        self.steps = steps
        self.exact = exact

    @staticmethod
    def split(pipeline: Pipeline, exact: bool) -> tuple["Preprocessing", Any]:
        """(the preprocessing steps, the final estimator) of a pipeline; ``ValidationError`` naming
        any step that is not supported."""
        steps = list(pipeline.steps)
        if not steps:
            raise ValidationError("the Pipeline has no steps")
        *pre, (_, final) = steps
        if not pre:
            raise ValidationError("a Pipeline of one step: pass its estimator directly")
        scalers = 0
        for position, (name, step) in enumerate(pre):
            if step is None or step == "passthrough":
                continue
            if type(step) in SCALERS:
                if scalers or position != 0:
                    raise ValidationError(f"Pipeline step {name!r} ({type(step).__name__}): the exact slope takes "
                                          "one scaler, as the first step")
                scalers += 1
            elif type(step) is PCA:
                if exact:
                    raise ValidationError(f"Pipeline step {name!r} (PCA) is not differentiated: pass exact=False to "
                                          "hold it at its clean fit (results are then marked exact=False)")
            else:
                raise ValidationError(
                    f"Pipeline step {name!r} ({type(step).__name__}) is not supported by the exact slope: steps "
                    "before the estimator may be StandardScaler or MinMaxScaler (and PCA with exact=False)")
        return Preprocessing([(n, s) for n, s in pre if s is not None and s != "passthrough"], exact), final

    # -- fitting -----------------------------------------------------------------------------------
    def fit_transform(self, X: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
        self.fitted_: list[tuple[str, Any]] = []
        self.n_ = float(X.shape[0] if sample_weight is None else np.sum(sample_weight))
        self.raw_ = X
        self.weight_ = sample_weight
        for name, step in self.steps:
            step = clone(step)
            if isinstance(step, StandardScaler):
                step.fit(X, sample_weight=sample_weight)
            else:
                step.fit(X)
            self.fitted_.append((name, step))
            X = _transform(step, X)
        return np.asarray(X, dtype=np.float64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        for _, step in self.fitted_:
            X = _transform(step, X)
        return np.asarray(X, dtype=np.float64)

    @property
    def scaler(self) -> Any:
        return next((s for _, s in self.fitted_ if type(s) in SCALERS), None)

    @property
    def has_pca(self) -> bool:
        return any(type(s) is PCA for _, s in self.fitted_)

    def pipeline(self, final: Any) -> Pipeline:
        """The fitted pipeline (the fitted steps and the final estimator)."""
        return Pipeline(self.fitted_ + [("estimator", final)])

    def fit_params(self, pipeline_steps: list[tuple[str, Any]], w: np.ndarray) -> dict[str, np.ndarray]:
        """``Pipeline.fit`` keyword arguments routing the sample weights to the scaler and the estimator."""
        params = {f"{pipeline_steps[-1][0]}__sample_weight": w}
        for name, step in pipeline_steps[:-1]:
            if isinstance(step, StandardScaler):
                params[f"{name}__sample_weight"] = w
        return params

    # -- the derivative ----------------------------------------------------------------------------
    def motion(self, X_poison: np.ndarray, poison_weight: np.ndarray | None = None) -> Motion | None:
        """The scaler's motion at β = 0 for these raw poison rows (None without a scaler or PCA
        only: then nothing moves that is differentiated)."""
        scaler = self.scaler
        if scaler is None or self.has_pca:
            return None
        d = X_poison.shape[1]
        if isinstance(scaler, MinMaxScaler):
            out = (X_poison < scaler.data_min_) | (X_poison > scaler.data_max_)
            return Motion(np.zeros(d), np.zeros(d), int(out.any(axis=0).sum()))
        s = np.ones(X_poison.shape[0]) if poison_weight is None else poison_weight
        m, n = float(s.sum()), self.n_
        mu = scaler.mean_ if scaler.with_mean else np.zeros(d)
        var = scaler.var_ if scaler.with_std else np.zeros(d)  # with_std=False: no variance (var_ is None)
        if mu is None:
            mu = np.zeros(d)
        scale = scaler.scale_ if scaler.with_std else np.ones(d)
        constant = (scale != np.sqrt(var)) if scaler.with_std else np.zeros(d, dtype=bool)  # scale set to 1
        deviation = X_poison - (scaler.mean_ if scaler.mean_ is not None else 0.0)
        dvar = (s @ deviation ** 2 - m * var) / n
        moved = constant & np.any(deviation != 0, axis=0) if scaler.with_std else np.zeros(d, dtype=bool)
        rho = np.where(constant, 0.0, dvar / np.where(constant, 1.0, var)) if scaler.with_std else np.zeros(d)
        a = (s @ X_poison - m * mu) / n / scale if scaler.with_mean else np.zeros(d)
        a = np.where(moved, 0.0, a)
        return Motion(rho, a, int(moved.sum()))
