"""Explanations of backdoor learning: weight / input-gradient maps and the most influential training points.

Maps (the paper's Fig. 12): ``∂f/∂x`` of the decision function, shown in the input's shape (C, H, W),
for the clean model (trained on the clean set, β = 0) and the poisoned model (trained on the in-place
poisoned training set, β = 1). For linear learners (``LogisticRegression``, ``RidgeClassifier``,
``SVC(kernel="linear")``) this is ``coef_`` itself, the same at every input; for ``SVC(kernel="rbf")``
it is the input gradient at the shown point. Maps are *oriented towards the shown point's label*:
positive pixels push the decision towards that label (for a triggered point, the attacker's target).
With K ≥ 3 classes the map is the gradient of the point's *target margin* (the slope's convention:
target score minus the best other score at that point; one-vs-one SVC: the target's weakest duel),
e.g. ``coef_[target] − coef_[best other]`` for a linear learner (:func:`target_gradient`). Pipelines
are differentiated back through their scaler to the raw input.

Influential training points (the paper's Fig. 13-14): the influence of up-weighting each training
point on the loss of one chosen test point (see :class:`robust_hpo.slope.TrainingInfluence` for the sign:
negative = the point supports the test point's label), with which points carry the trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from sklearn.base import clone
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from robust_hpo._validation import as_finite_2d, as_labels, flatten_images
from robust_hpo.analysis._common import check_index, check_positive_int, check_split, ovo_machines
from robust_hpo.attacks import PoisonedSplit, TRIGGERS
from robust_hpo.errors import ValidationError
from robust_hpo.learners import estimator_label
from robust_hpo.slope import Quantity, SVCSlope, TrainingInfluence, slope_model

__all__ = [
    "ExplanationMaps",
    "InfluenceResult",
    "explain_influence",
    "explain_maps",
    "influential_points",
    "input_gradient",
    "target_gradient",
    "trigger_window",
    "window_share",
]

ORDERS = ("helpful", "harmful", "absolute")
Order = Literal["helpful", "harmful", "absolute"]
Points = Literal["trigger", "test"]
ModelKind = Literal["poisoned", "clean"]


def input_gradient(estimator: Any, X: Any) -> np.ndarray:
    """``∂f/∂x`` of a fitted binary estimator's ``decision_function`` at each row of ``X`` (n, d).

    Linear estimators (with ``coef_``): ``coef_`` for every row. ``SVC(kernel="rbf")``:
    ``Σ_i a_i K(x, s_i) (−2γ)(x − s_i)`` over the support vectors ``s_i``, ``a = dual_coef_``.
    """
    X = as_finite_2d("X", X)
    if isinstance(estimator, SVC) and estimator.kernel == "rbf":
        if not hasattr(estimator, "dual_coef_"):
            raise ValidationError("estimator must be fitted")
        if estimator.dual_coef_.shape[0] != 1:
            raise ValidationError("estimator must be a binary SVC")
        if X.shape[1] != estimator.support_vectors_.shape[1]:
            raise ValidationError(f"X has {X.shape[1]} features but the estimator was fitted on "
                             f"{estimator.support_vectors_.shape[1]}")
        gamma = float(estimator._gamma)
        weights = rbf_kernel(X, estimator.support_vectors_, gamma=gamma) * estimator.dual_coef_.ravel()
        return -2.0 * gamma * (weights.sum(axis=1)[:, None] * X - weights @ estimator.support_vectors_)
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        raise ValidationError(f"estimator must be a fitted linear model (with coef_) or an RBF SVC, got "
                         f"{type(estimator).__name__}")
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))  # RidgeClassifier: (d,) for two classes
    if coef.shape[0] != 1:
        raise ValidationError(f"estimator must be binary (one row of coef_), got {coef.shape[0]} rows")
    if X.shape[1] != coef.shape[1]:
        raise ValidationError(f"X has {X.shape[1]} features but the estimator was fitted on {coef.shape[1]}")
    return np.repeat(coef, X.shape[0], axis=0)


def _score_gradients(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, S), their input gradients (n, S, d)) of a fitted multi-class estimator: a score
    per class (``coef_`` rows) or, for ``SVC``, libsvm's one-vs-one pair values (positive: the
    pair's first class)."""
    if isinstance(estimator, SVC):
        F, G = [], []
        for _, _, sv, coef, b in ovo_machines(estimator):
            if estimator.kernel == "rbf":
                gamma = float(estimator._gamma)
                weights = rbf_kernel(X, sv, gamma=gamma) * coef
                F.append(weights.sum(axis=1) + b)
                G.append(-2.0 * gamma * (weights.sum(axis=1)[:, None] * X - weights @ sv))
            else:
                w = coef @ sv
                F.append(X @ w + b)
                G.append(np.repeat(w[None, :], X.shape[0], axis=0))
        return np.column_stack(F), np.stack(G, axis=1)
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        raise ValidationError(f"estimator must be a fitted linear model (with coef_) or an SVC, got "
                              f"{type(estimator).__name__}")
    coef = np.asarray(coef, dtype=np.float64)
    if X.shape[1] != coef.shape[1]:
        raise ValidationError(f"X has {X.shape[1]} features but the estimator was fitted on {coef.shape[1]}")
    F = np.asarray(estimator.decision_function(X), dtype=np.float64)
    return F, np.repeat(coef[None, :, :], X.shape[0], axis=0)


def _through_preprocessing(steps: list[Any], G: np.ndarray) -> np.ndarray:
    """Input gradients w.r.t. a pipeline's transformed rows carried back to its raw rows (chain rule
    through fitted StandardScaler / MinMaxScaler / PCA steps, last step first)."""
    for step in reversed(steps):
        if isinstance(step, StandardScaler):
            G = G / step.scale_ if step.scale_ is not None else G
        elif isinstance(step, MinMaxScaler):
            G = G * step.scale_
        elif isinstance(step, PCA):
            components = step.components_
            if step.whiten:
                components = components / np.sqrt(step.explained_variance_)[:, None]
            G = G @ components
        else:
            raise ValidationError(f"cannot differentiate through the pipeline step {type(step).__name__}")
    return G


def target_gradient(estimator: Any, X: Any, labels: Any) -> np.ndarray:
    """``∂m/∂x`` (n, d) of each row's margin toward its label, for any number of classes.

    Two classes: ``±∂f/∂x`` (+ when the label is ``classes_[1]``), i.e. :func:`input_gradient`
    oriented. K ≥ 3 (the slope's margin convention): a score per class — the target's score minus
    the best other score at that row, so ``∂f_target/∂x − ∂f_other/∂x``; one-vs-one ``SVC`` — the
    target's weakest duel (its pair value, target positive). A ``Pipeline`` of scalers (and PCA) is
    differentiated back to its raw inputs.
    """
    X = as_finite_2d("X", X)
    labels = np.asarray(labels)
    if isinstance(estimator, Pipeline):
        steps = [s for _, s in estimator.steps[:-1] if s is not None and s != "passthrough"]
        Z = np.asarray(estimator[:-1].transform(X), dtype=np.float64)
        return _through_preprocessing(steps, target_gradient(estimator.steps[-1][1], Z, labels))
    classes = np.asarray(estimator.classes_)
    if classes.size == 2:
        return np.where(labels == classes[1], 1.0, -1.0)[:, None] * input_gradient(estimator, X)
    codes = np.searchsorted(classes, labels)
    rows = np.arange(X.shape[0])
    F, G = _score_gradients(estimator, X)
    if isinstance(estimator, SVC):
        pairs = [(i, j) for i, j, *_ in ovo_machines(estimator)]
        sign = np.zeros((classes.size, len(pairs)))
        for p, (i, j) in enumerate(pairs):
            sign[i, p], sign[j, p] = 1.0, -1.0
        oriented = np.where(sign[codes] != 0, F * sign[codes], np.inf)
        k = np.argmin(oriented, axis=1)
        return sign[codes, k][:, None] * G[rows, k]
    others = F.copy()
    others[rows, codes] = -np.inf
    k = np.argmax(others, axis=1)
    return G[rows, codes] - G[rows, k]


def trigger_window(attack: dict[str, Any], image_shape: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    """``(row_start, row_stop, col_start, col_stop)`` of the patch of the trigger described in ``attack``
    (a registered trigger with a ``window(height, width)``, such as BadNets); else None."""
    trig = attack.get("trigger", {}) if isinstance(attack, dict) else {}
    if not isinstance(trig, dict) or trig.get("kind") not in TRIGGERS:
        return None
    cls = TRIGGERS[trig["kind"]]
    if not callable(getattr(cls, "window", None)):
        return None
    trigger = cls(**{k: trig[k] for k in cls.parameters() if k in trig})
    rows, cols = trigger.window(*image_shape[1:])
    return rows.start, rows.stop, cols.start, cols.stop


def window_share(image_map: np.ndarray, window: tuple[int, int, int, int]) -> float:
    """Share of the map's absolute mass inside ``window`` (over all channels), in [0, 1]."""
    r0, r1, c0, c1 = window
    mass = np.abs(image_map)
    total = float(mass.sum())
    if not total > 0:
        raise ValidationError("image_map is zero everywhere; its share inside the window is undefined")
    return float(mass[..., r0:r1, c0:c1].sum() / total)


@dataclass(frozen=True, eq=False)
class ExplanationMaps:
    """``∂f/∂x`` maps (C, H, W) of the clean and the poisoned model for one shown point.

    ``kind`` is ``"weights"`` (linear learners: the map is ``coef_``) or ``"input-gradient"`` (RBF SVC,
    at ``image``). Both maps are multiplied by ±1 so that positive values push towards ``label``
    (for a triggered point, the attacker's target). ``window`` is the trigger patch, if known.
    """

    label: str
    kind: str
    image: np.ndarray
    point_label: int
    points: str
    index: int
    clean: np.ndarray
    poisoned: np.ndarray
    window: tuple[int, int, int, int] | None = None
    attack: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("clean", "poisoned"):
            if getattr(self, name).shape != self.image.shape:
                raise ValidationError(f"{name} has shape {getattr(self, name).shape}; expected {self.image.shape}")

    @property
    def layout(self) -> str:
        """``"rows"`` (tabular: the maps are per-feature weights (d,)) or ``"images"`` ((C, H, W) maps)."""
        return "rows" if self.image.ndim == 1 else "images"

    def window_shares(self) -> tuple[float, float]:
        """(clean, poisoned) share of |map| inside the trigger window; ``ValueError`` without a window."""
        if self.window is None:
            raise ValidationError("this attack has no patch window (only BadNets triggers have one)")
        return window_share(self.clean, self.window), window_share(self.poisoned, self.window)


def _points(split: PoisonedSplit, points: str) -> tuple[np.ndarray, np.ndarray]:
    if points == "trigger":
        return split.X_trigger, split.y_trigger
    if points == "test":
        return split.X_test, split.y_test
    raise ValidationError(f"points must be 'trigger' (triggered test set) or 'test' (clean test set), got {points!r}")


def explain_maps(estimator: Any, split: PoisonedSplit, *, index: int = 0, points: Points = "trigger",
                 label: str | None = None) -> ExplanationMaps:
    """Fit ``estimator`` on the clean set and on the poisoned training set; their ``∂f/∂x`` maps.

    ``index`` picks the shown point in the triggered test set (``points="trigger"``) or the clean
    test set (``points="test"``).
    """
    split = check_split(split)
    slope_model(estimator)  # the supported convex learners only (ValueError otherwise)
    X_pts, y_pts = _points(split, points)
    index = check_index("index", index, X_pts.shape[0], f"{points} points")
    clean = clone(estimator).fit(flatten_images(split.X_clean), split.y_clean)
    poisoned = clone(estimator).fit(flatten_images(split.X_train_poisoned), split.y_train_poisoned)
    x = flatten_images(X_pts[index:index + 1])
    y = int(y_pts[index])
    shape = X_pts.shape[1:]
    maps = [target_gradient(est, x, [y])[0].reshape(shape) for est in (clean, poisoned)]
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    kind = "input-gradient" if isinstance(final, SVC) and final.kernel == "rbf" else "weights"
    return ExplanationMaps(label=label if label is not None else estimator_label(estimator), kind=kind,
                           image=X_pts[index].astype(np.float64), point_label=y, points=points, index=index,
                           clean=maps[0], poisoned=maps[1], window=trigger_window(split.attack, shape),
                           attack=dict(split.attack))


@dataclass(frozen=True, eq=False)
class InfluenceResult:
    """Influence of every training point on the loss of one test point, and the top ``k``.

    ``influence[j]`` = dL/ds_j (negative: up-weighting j lowers the test point's loss — or its
    negative margin with ``quantity="margin"`` — i.e. j supports its label). Training points are
    ordered clean first, then poison (``is_poison``). ``top`` lists the ``k`` chosen indices by
    ``order``; ``top_images`` are their images (k, C, H, W).
    """

    label: str
    model: str
    points: str
    quantity: str
    index: int
    image: np.ndarray
    point_label: int
    influence: np.ndarray
    is_poison: np.ndarray
    train_labels: np.ndarray
    order: str
    top: np.ndarray
    top_images: np.ndarray
    zero_reason: str | None = None
    notes: tuple[str, ...] = ()
    attack: dict[str, Any] = field(default_factory=dict)

    @property
    def all_zero(self) -> bool:
        """Every training point's influence is 0 (``zero_reason`` says why)."""
        return not bool(np.any(self.influence))

    @property
    def layout(self) -> str:
        """``"rows"`` (tabular points (d,)) or ``"images"`` ((C, H, W) points)."""
        return "rows" if self.image.ndim == 1 else "images"

    @property
    def top_poison_count(self) -> int:
        """How many of the top ``k`` carry the trigger."""
        return int(self.is_poison[self.top].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "model": self.model, "points": self.points, "quantity": self.quantity,
                "index": self.index,
                "point_label": self.point_label, "order": self.order, "top": self.top.tolist(),
                "top_influence": self.influence[self.top].tolist(),
                "top_is_poison": self.is_poison[self.top].tolist(),
                "top_labels": self.train_labels[self.top].tolist(), "zero_reason": self.zero_reason,
                "notes": list(self.notes)}


def rank(influence: np.ndarray, order: str, k: int) -> np.ndarray:
    """The ``k`` indices with the most negative (helpful), most positive (harmful) or largest |influence|."""
    if order == "helpful":
        key = influence
    elif order == "harmful":
        key = -influence
    elif order == "absolute":
        key = -np.abs(influence)
    else:
        raise ValidationError(f"order must be one of {list(ORDERS)}, got {order!r}")
    return np.argsort(key, kind="stable")[:k]


def influential_points(estimator: Any, split: PoisonedSplit, *, index: int = 0, points: Points = "trigger",
                       model: ModelKind = "poisoned", k: int = 7, order: Order = "helpful",
                       quantity: Quantity = "loss", label: str | None = None) -> InfluenceResult:
    """The ``k`` most influential training points for one test point (no refits: implicit differentiation).

    ``model="poisoned"`` (the paper's setting): the estimator trained on the in-place poisoned
    training set; every point, poison included, has weight 1. ``model="clean"``: trained on the
    clean set; poison points have weight 0 and their influence is that of adding them (their sum
    over all poison points is the backdoor derivative for this one test point).
    ``quantity="margin"``: influence on ``−y f(x)`` instead of the loss (for SVMs whose hinge is flat
    at the chosen point; see :class:`robust_hpo.slope.TrainingInfluence`).
    """
    split = check_split(split)
    k = check_positive_int("k", k)
    if model not in ("poisoned", "clean"):
        raise ValidationError(f"model must be 'poisoned' or 'clean', got {model!r}")
    if order not in ORDERS:
        raise ValidationError(f"order must be one of {list(ORDERS)}, got {order!r}")
    X_pts, y_pts = _points(split, points)
    index = check_index("index", index, X_pts.shape[0], f"{points} points")
    Xc, Xp = flatten_images(split.X_clean), flatten_images(split.X_poison)
    xt, yt = flatten_images(X_pts[index:index + 1]), y_pts[index:index + 1]
    if model == "poisoned":
        X_train = np.vstack([Xc, Xp])
        y_train = split.y_train_poisoned
        fitted = slope_model(estimator).fit(X_train, y_train)
        influence = TrainingInfluence(fitted, quantity=quantity).in_fit(X_train, y_train, xt, yt)
    else:
        fitted = slope_model(estimator).fit(Xc, split.y_clean)
        explainer = TrainingInfluence(fitted, quantity=quantity)
        influence = np.concatenate([explainer.in_fit(Xc, split.y_clean, xt, yt),
                                    explainer.out_of_fit(Xp, split.y_poison, xt, yt)])
    n_clean = Xc.shape[0]
    is_poison = np.arange(influence.size) >= n_clean
    top = rank(influence, order, min(k, influence.size))
    images = np.concatenate([split.X_clean, split.X_poison])[top]
    reason = None if np.any(influence) else _zero_reason(fitted, xt, yt, quantity, model)
    return InfluenceResult(label=label if label is not None else estimator_label(estimator), model=model,
                           points=points, quantity=quantity, index=index, image=X_pts[index].astype(np.float64),
                           point_label=int(y_pts[index]), influence=influence, is_poison=is_poison,
                           train_labels=np.concatenate([split.y_clean, split.y_poison]), order=order,
                           top=top, top_images=images, zero_reason=reason, attack=dict(split.attack))


def _zero_reason(fitted: Any, xt: np.ndarray, yt: np.ndarray, quantity: str, model: str) -> str:
    """Why every influence is 0 (only SVMs get there: their hinge is flat, their α can sit inside (0, C))."""
    part = getattr(fitted, "_multi", None)
    if part is not None and quantity == "loss":
        codes = fitted.encode("y_test", as_labels("y_test", yt, 1, "X_test"))
        if part.loss_from(fitted._scores(xt), codes)[0] == 0.0:
            return ("the curve loss is flat at this test point (every hinge of its target is beyond the margin), "
                    "so no training weight changes it")
    if isinstance(fitted, SVCSlope) and part is None:
        t = fitted.encode("y_test", as_labels("y_test", yt, 1, "X_test"))
        margin = float(t[0] * fitted.decision_function(xt)[0])
        if quantity == "loss" and margin >= 1.0:
            return (f"the hinge loss is flat at this test point (y·f(x) = {margin:.3g} ≥ 1, beyond the margin), "
                    "so no training weight changes it")
        enter = ("no support vector is at its bound α = C" if model == "poisoned" else
                 "no clean support vector is at its bound α = C and no poison point violates the clean margin")
        return (f"no training point enters the fit when up-weighted: {enter}, so every right derivative is 0")
    return "the test point's loss does not change with any training weight"


def explain_influence(estimator: Any, split: PoisonedSplit, *, index: int | None = None,
                      points: Points = "trigger", model: ModelKind | None = None, k: int = 7,
                      order: Order = "helpful", quantity: Quantity | None = None, label: str | None = None,
                      scan: int = 100) -> InfluenceResult:
    """:func:`influential_points` with defaults chosen to show something, saying what was chosen.

    The options left ``None`` default to ``index=0``, ``model="poisoned"``, ``quantity="loss"``. When
    every influence is then 0 (an SVM: flat hinge at the point, or no support vector at its bound),
    the free options are changed, in this order, until one is not: ``quantity="margin"``,
    ``model="clean"`` (the poison points enter: their influences sum to the slope's derivative), both,
    then the first of the next ``scan`` test points that has a non-zero influence. ``notes`` say what
    changed and why; when nothing helps, the result keeps its ``zero_reason`` and ``notes`` name the
    options still worth changing (never one already in effect).
    """
    free_model, free_quantity, free_index = model is None, quantity is None, index is None
    model0: ModelKind = "poisoned" if model is None else model
    quantity0: Quantity = "loss" if quantity is None else quantity
    index0 = 0 if index is None else index
    kw = {"points": points, "k": k, "order": order, "label": label}
    first = influential_points(estimator, split, index=index0, model=model0, quantity=quantity0, **kw)
    if not first.all_zero:
        return first
    combos: list[tuple[ModelKind, Quantity]] = []
    for m, q in ((model0, quantity0), (model0, "margin"), ("clean", quantity0), ("clean", "margin")):
        if (m == model0 or free_model) and (q == quantity0 or free_quantity) and (m, q) not in combos:
            combos.append((m, q))
    n_points = _points(check_split(split), points)[0].shape[0]
    indices = [index0] + ([i for i in range(min(n_points, scan)) if i != index0] if free_index else [])
    for i in indices:
        for m, q in combos:
            if (i, m, q) == (index0, model0, quantity0):
                continue
            result = influential_points(estimator, split, index=i, model=m, quantity=q, **kw)
            if result.all_zero:
                continue
            notes = []
            if q != quantity0:
                notes.append(f"quantity '{q}' (the negative margin −y·f(x)) instead of '{quantity0}'")
            if m != model0:
                notes.append(f"the {m} model instead of the {model0} one (poison points weigh 0 and enter when "
                             "up-weighted: their influences sum to the slope's derivative)")
            if i != index0:
                notes.append(f"{points} point #{i} instead of #{index0}")
            why = f"every influence was 0 with {model0} model, quantity '{quantity0}', #{index0}: {first.zero_reason}"
            return replace(result, notes=(why, *(f"shown: {n}" for n in notes)))
    tried = [text for free, text in ((free_quantity, "quantity 'margin'"), (free_model, "the clean model"),
                                     (free_index, f"the first {len(indices)} {points} points")) if free]
    hints = [text for fixed, text in ((not free_quantity and quantity0 != "margin", "--quantity margin"),
                                      (not free_model and model0 != "clean", "--model clean"),
                                      (not free_index, "another --index")) if fixed]
    hints.append("another configuration (--trial)")
    notes = ([f"also 0 with {', '.join(tried)}"] if tried else []) + [f"try {' or '.join(hints)}"]
    return replace(first, notes=tuple(notes))
