"""Parameter deviation along β (the paper's Eq. 6): how far θ*(β) moves from the clean θ*(0).

Two numbers per β, for the weight vector ``w`` only (the intercept is left out):

* ``norm``  = ‖w_β‖₂ — the regulariser's view of the model's complexity;
* ``angle`` = arccos(cos∠(w_0, w_β)) / π ∈ [0, 1] — 0: same orientation as the clean model,
  0.5: orthogonal, 1: reversed.

Linear models (``LogisticRegression``, ``RidgeClassifier``, ``SVC(kernel="linear")``) use the Euclidean
inner product of ``coef_`` (K ≥ 3: all rows — one per class, or per one-vs-one pair — stacked;
a pipeline: its final learner's weights). ``SVC(kernel="rbf")`` uses the RKHS one: ``w = Σ_i a_i φ(x_i)`` with
``a = dual_coef_`` (= α_i y_i), so ``⟨w, w'⟩ = aᵀ K(SV, SV') a'`` and ``‖w‖² = aᵀ K a``
(for a linear kernel this equals the Euclidean ``coef_`` inner product).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from robust_hpo.analysis._common import ovo_machines
from robust_hpo.analysis._curves import BetaPath, fit_path
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError

__all__ = ["DeviationResult", "deviation_from_path", "parameter_deviation", "rkhs_inner", "weight_inner"]


def rkhs_inner(a: SVC, b: SVC) -> float:
    """⟨w_a, w_b⟩ in the kernel's RKHS for two fitted ``SVC`` with the same kernel settings. K ≥ 3
    classes: the one-vs-one machines' weight vectors stacked, ``Σ_pairs ⟨w_a,p, w_b,p⟩``."""
    for name, est in (("a", a), ("b", b)):
        if not isinstance(est, SVC) or not hasattr(est, "dual_coef_"):
            raise ValidationError(f"{name} must be a fitted sklearn.svm.SVC, got {type(est).__name__}")
    if a.dual_coef_.shape[0] != b.dual_coef_.shape[0]:
        raise ValidationError(f"a and b must have the same classes, got {a.dual_coef_.shape[0] + 1} and "
                              f"{b.dual_coef_.shape[0] + 1}")
    if a.dual_coef_.shape[0] > 1:
        return float(sum(rkhs_inner(_binary_view(a, pa), _binary_view(b, pb))
                         for pa, pb in zip(ovo_machines(a), ovo_machines(b))))
    if a.kernel != b.kernel:
        raise ValidationError(f"a and b must share a kernel, got {a.kernel!r} and {b.kernel!r}")
    if a.kernel == "linear":
        K = linear_kernel(a.support_vectors_, b.support_vectors_)
    elif a.kernel == "rbf":
        if not np.isclose(a._gamma, b._gamma, rtol=1e-12, atol=0.0):
            raise ValidationError(f"a and b must share gamma for an RKHS inner product, got {a._gamma} and {b._gamma}")
        K = rbf_kernel(a.support_vectors_, b.support_vectors_, gamma=a._gamma)
    else:
        raise ValidationError(f"kernel must be 'linear' or 'rbf', got {a.kernel!r}")
    return float(a.dual_coef_.ravel() @ K @ b.dual_coef_.ravel())


def _binary_view(est: SVC, machine: tuple[int, int, Any, Any, float]) -> SVC:
    """A copy of ``est`` holding one one-vs-one machine as a binary SVC (for :func:`rkhs_inner`)."""
    view = copy.copy(est)
    _, _, sv, coef, _ = machine
    view.support_vectors_, view.dual_coef_ = sv, coef[None, :]
    return view


def _final(est: Any) -> Any:
    return est.steps[-1][1] if isinstance(est, Pipeline) else est


def weight_inner(a: Any, b: Any) -> float:
    """⟨w_a, w_b⟩ of two fitted estimators of one kind: RKHS for RBF SVC, ``coef_`` · ``coef_`` otherwise."""
    a, b = _final(a), _final(b)  # a pipeline: its learner's own weights (in its scaler's coordinates)
    if type(a) is not type(b):
        raise ValidationError(f"a and b must be the same kind of estimator, got {type(a).__name__} and {type(b).__name__}")
    if isinstance(a, SVC) and a.kernel == "rbf":
        return rkhs_inner(a, b)
    coef_a, coef_b = getattr(a, "coef_", None), getattr(b, "coef_", None)
    if coef_a is None or coef_b is None:
        raise ValidationError(f"{type(a).__name__} must be fitted and linear (have coef_), or an RBF SVC")
    return float(np.ravel(coef_a) @ np.ravel(coef_b))


@dataclass(frozen=True, eq=False)
class DeviationResult:
    """Parameter deviation along β (see the module docstring); arrays have the length of ``betas``."""

    label: str
    betas: np.ndarray
    norm: np.ndarray
    angle: np.ndarray
    space: str
    attack: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("norm", "angle"):
            if getattr(self, name).shape != self.betas.shape:
                raise ValidationError(f"{name} has shape {getattr(self, name).shape}; expected {self.betas.shape}")
        if self.space not in ("euclidean", "rkhs"):
            raise ValidationError(f"space must be 'euclidean' or 'rkhs', got {self.space!r}")

    @property
    def relative_norm(self) -> np.ndarray:
        """‖w_β‖ / ‖w_0‖."""
        return self.norm / self.norm[0]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "space": self.space, "betas": self.betas.tolist(),
                "norm": self.norm.tolist(), "angle": self.angle.tolist(), "attack": self.attack}


def deviation_from_path(path: BetaPath) -> DeviationResult:
    """Norm and rescaled angle of every fit of ``path`` against its clean fit (``estimators[0]``)."""
    w0 = path.estimators[0]
    n0 = np.sqrt(max(weight_inner(w0, w0), 0.0))
    if not n0 > 0:
        raise ValidationError(f"{path.label}: the clean model's weight vector is zero; its angle to other fits is undefined")
    norms, angles = [], []
    for est in path.estimators:
        n = np.sqrt(max(weight_inner(est, est), 0.0))
        if not n > 0:
            raise ValidationError(f"{path.label}: a β-fit has a zero weight vector; its angle is undefined")
        cos = np.clip(weight_inner(w0, est) / (n0 * n), -1.0, 1.0)
        norms.append(n)
        angles.append(np.arccos(cos) / np.pi)
    rbf = isinstance(_final(w0), SVC) and _final(w0).kernel == "rbf"
    return DeviationResult(label=path.label, betas=path.betas.copy(), norm=np.asarray(norms),
                           angle=np.asarray(angles), space="rkhs" if rbf else "euclidean",
                           attack=dict(path.split.attack))


def parameter_deviation(estimator: Any, split: PoisonedSplit, *, betas: Any = None,
                        label: str | None = None, tol: float | None = None) -> DeviationResult:
    """Refit ``estimator`` along ``betas`` (default :data:`robust_hpo.analysis.DEFAULT_BETAS`) and measure it.

    ``tol`` optionally tightens every fit's solver tolerance (:func:`robust_hpo.analysis.with_tolerance`).
    """
    return deviation_from_path(fit_path(estimator, split, betas=betas, label=label, tol=tol))
