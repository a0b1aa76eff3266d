"""Sample weights and class weights of the clean fit, and how class weights move with β.

Every learner's data term is ``Σ_i s_i κ_{c_i} ℓ_i`` over clean ∪ poison: ``s_i`` the sample weight
(given for clean rows, β for poison rows) and ``κ_k`` the weight of class k (``class_weight``). The
estimator is fitted with ``class_weight=None`` and ``sample_weight = s κ`` — what scikit-learn
does for LogisticRegression, RidgeClassifier, SVC (a per-sample C), LinearSVC and SGDClassifier.

``class_weight="balanced"`` is ``κ_k = N / (K n_k)`` with ``N`` and ``n_k`` the **β-weighted**
total and class sizes (clean rows count their sample weight, poison rows β): β = 0 is the clean
model, and κ moves with β — ``κ'_k = (M n_k − N m_k) / (K n_k²)`` at β = 0 (M, m_k: the poison's
total and per-class counts). That motion adds ``Σ_clean s_i κ'_{c_i} ∇θ ℓ_i`` to the derivative of
the optimality conditions (a moving C per class for SVC). (scikit-learn's RidgeClassifier and SVC
count rows without their sample weights for "balanced"; the slope uses the β-weighted sizes for every
learner, and ``fit_weighted`` refits with exactly these weights.)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from robust_hpo.errors import ValidationError


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """Finite, non-negative clean sample weights of length n, not all zero (None stays None)."""
    if sample_weight is None:
        return None
    try:
        s = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"sample_weight must be numbers, got {type(sample_weight).__name__}") from None
    if s.ndim != 1 or s.size != n:
        raise ValidationError(f"sample_weight must be 1-D with one weight per row of X_clean ({n}), got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0) or not s.sum() > 0:
        raise ValidationError("sample_weight must be finite and >= 0, not all 0")
    return s


def check_class_weight(class_weight: Any, estimator: Any) -> None:
    """None, "balanced" or a {class: positive weight} mapping."""
    if class_weight is None or class_weight == "balanced":
        return
    if not isinstance(class_weight, dict) or not all(
            isinstance(v, numbers.Real) and math.isfinite(v) and v > 0 for v in class_weight.values()):
        raise ValidationError(f"{type(estimator).__name__}(class_weight=...) must be None, 'balanced' or a dict of "
                              f"positive weights, got {class_weight!r}")


class ClassWeights:
    """The clean fit's weights (see the module docstring) for classes ``classes`` and clean class
    indices ``codes``."""

    def __init__(self, spec: Any, classes: np.ndarray, codes: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.spec = spec
        self.classes = classes
        self.K = classes.size
        self.codes = codes
        self.sample = np.ones(codes.size) if sample_weight is None else sample_weight
        self.sizes = np.bincount(codes, weights=self.sample, minlength=self.K)
        self.per_class = self._per_class(self.sizes)
        self.trivial = sample_weight is None and spec is None

    def _per_class(self, sizes: np.ndarray) -> np.ndarray:
        if self.spec is None:
            return np.ones(self.K)
        if self.spec == "balanced":
            if np.any(sizes <= 0):
                raise ValidationError("class_weight='balanced' needs every class with a positive weight in y_clean")
            return sizes.sum() / (self.K * sizes)
        unknown = [k for k in self.spec if k not in set(self.classes.tolist())]
        if unknown:
            raise ValidationError(f"class_weight names classes {unknown} that are not in y_clean "
                                  f"{self.classes.tolist()}")
        return np.array([float(self.spec.get(c, 1.0)) for c in self.classes.tolist()])

    def subset(self, rows: np.ndarray) -> "ClassWeights":
        """The same class weights for a subset of the clean rows (a one-vs-one machine's)."""
        out = ClassWeights.__new__(ClassWeights)
        out.__dict__.update(self.__dict__)
        out.sample, out.codes = self.sample[rows], self.codes[rows]
        return out

    def clean(self) -> np.ndarray:
        """Effective weights of the clean rows at β = 0: ``s_i κ_{c_i}``."""
        return self.sample * self.per_class[self.codes]

    def poison(self, codes: np.ndarray) -> np.ndarray:
        """Weight per unit β of each poison row: ``κ_{c_p}``."""
        return self.per_class[codes]

    def motion(self, poison_codes: np.ndarray) -> np.ndarray | None:
        """κ'_k at β = 0 ("balanced" only; None when the class weights do not move)."""
        if self.spec != "balanced":
            return None
        m = np.bincount(poison_codes, minlength=self.K).astype(np.float64)
        N, n = self.sizes.sum(), self.sizes
        return (m.sum() * n - N * m) / (self.K * n * n)

    def at(self, beta: float, poison_codes: np.ndarray) -> np.ndarray:
        """Effective weights of clean ∪ poison rows at β (for a weighted refit)."""
        poison = np.full(poison_codes.size, float(beta))
        sizes = self.sizes + np.bincount(poison_codes, weights=poison, minlength=self.K)
        kappa = self._per_class(sizes) if self.spec == "balanced" else self.per_class
        return np.concatenate([self.sample * kappa[self.codes], poison * kappa[poison_codes]])
