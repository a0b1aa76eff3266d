"""Verification by retraining: does the slope rank configurations like real poisoning does?

For each chosen trial of a study (the Pareto front by default, or all completed trials), the
configuration is retrained on the in-place *poisoned* training set (clean ∪ poison, every point
weight 1, β = 1) and measured on

* ``poisoned_clean_accuracy``: accuracy on the clean test set;
* ``backdoor_accuracy``: the fraction of triggered test points classified as the attacker's target
  (the attack success rate).

Results are stored on the study. Optuna refuses to modify finished trials
(``UpdateFinishedTrialError``), so each trial's record is a *study* user attribute
``"robust_hpo:verify:<trial number>"`` = ``{"poisoned_clean_accuracy", "backdoor_accuracy", ...}``
(:func:`stored_verification` reads them back). The report gives Spearman's rank correlation between
slope and backdoor accuracy (``scipy.stats.spearmanr``) and the *robust region*: trials whose
poisoned-model clean accuracy is within ``tolerance`` of the best and whose backdoor accuracy is at
most ``max_backdoor``.

:func:`paper_grid` evaluates a (C, γ) grid directly, like the paper's Fig. 8; :func:`bin_trials` bins
a study's (log-uniformly sampled) trials into such a grid for heatmaps.

Trials are read as ``params = {"learner": name, "<name>.<hp>": value}`` (the plugin's layout) or
``{"learner": name, "<hp>": value}``; the slope is the objective named ``"slope"`` (else the second
objective, else the user attribute ``"slope"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import spearmanr
from sklearn.base import clone

from robust_hpo._analysis import check_fraction, check_split, convex_estimator, default_family, trial_config
from robust_hpo._arrays import flatten_images
from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.slope._convex import DegenerateSolveError, slope_model
from robust_hpo.slope._hessian import SingularHessianError

__all__ = [
    "VERIFY_ATTR_PREFIX",
    "GridResult",
    "VerificationReport",
    "VerifiedTrial",
    "bin_trials",
    "paper_grid",
    "retrain_poisoned",
    "robust_region",
    "slope_backdoor_spearman",
    "stored_verification",
    "trial_slope",
    "verify_study",
]

VERIFY_ATTR_PREFIX = "robust_hpo:verify:"
"""Study user attribute ``<prefix><trial number>`` holds that trial's verification record."""

FamilyLookup = Callable[[str], Any]


def _lookup(family_lookup: FamilyLookup | None) -> FamilyLookup:
    if family_lookup is None:
        return default_family
    if not callable(family_lookup):
        raise ValueError(f"family_lookup must be callable (name -> learner family), got {family_lookup!r}")
    return family_lookup


def retrain_poisoned(learner: str, params: Mapping[str, Any], split: PoisonedSplit, *,
                     family_lookup: FamilyLookup | None = None, seed: int = 0) -> tuple[float, float]:
    """(clean accuracy, backdoor accuracy) of ``learner(params)`` trained on the poisoned training set.

    Convex families are fitted with scikit-learn directly (``family.estimator(params)``); other
    families through ``family.fit(params, X_train_poisoned, y_train_poisoned, seed=seed)``.
    """
    split = check_split(split)
    family = _lookup(family_lookup)(learner)
    if hasattr(family, "estimator"):
        est = clone(family.estimator(dict(params)))
        est.fit(flatten_images(split.X_train_poisoned), split.y_train_poisoned)

        def predict(X: np.ndarray) -> np.ndarray:
            return est.predict(flatten_images(X))
    else:
        fitted = family.fit(dict(params), split.X_train_poisoned, split.y_train_poisoned, seed=seed)
        predict = fitted.predict
    clean = float(np.mean(np.asarray(predict(split.X_test)) == split.y_test))
    backdoor = float(np.mean(np.asarray(predict(split.X_trigger)) == split.y_trigger))
    return clean, backdoor


@dataclass(frozen=True)
class VerifiedTrial:
    """One trial's configuration, its slope (clean model) and accuracies after poisoned retraining."""

    number: int
    learner: str
    params: dict[str, Any]
    slope: float
    clean_accuracy: float | None
    poisoned_clean_accuracy: float
    backdoor_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_slope(trial: FrozenTrial, metric_names: Sequence[str] | None = None) -> float:
    """The trial's normalised slope: objective ``"slope"``, else the 2nd objective, else user attr ``"slope"``."""
    value = _trial_metric(trial, metric_names, "slope", position=1)
    if value is None:
        raise ValueError(f"trial {trial.number} has no slope: expected an objective named 'slope', two "
                         "objectives (clean accuracy, slope) or a user attribute 'slope'")
    return value


def _clean_accuracy(trial: FrozenTrial, metric_names: Sequence[str] | None) -> float | None:
    return _trial_metric(trial, metric_names, "clean_accuracy", position=0)


def _trial_metric(trial: FrozenTrial, metric_names: Sequence[str] | None, name: str,
                  position: int) -> float | None:
    """Objective ``name`` (by metric name), else objective ``position`` of two, else user attr ``name``."""
    values = trial.values or []
    names = list(metric_names) if metric_names else []
    if name in names and len(values) == len(names):
        return float(values[names.index(name)])
    if len(values) == 2:
        return float(values[position])
    value = trial.user_attrs.get(name)
    return float(value) if value is not None else None


def slope_backdoor_spearman(slopes: Sequence[float],
                            backdoor: Sequence[float]) -> tuple[float | None, float | None, str]:
    """Spearman's ρ (and p-value) of slope against backdoor accuracy; ``None`` with the reason if undefined."""
    x = np.asarray(slopes, dtype=np.float64)
    y = np.asarray(backdoor, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"slopes and backdoor must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("slopes and backdoor must be finite numbers")
    if x.size < 3:
        return None, None, f"undefined: {x.size} values (at least 3 needed)"
    for name, arr in (("slope", x), ("backdoor accuracy", y)):
        if np.all(arr == arr[0]):
            return None, None, f"undefined: the {name} is the same ({arr[0]:.4g}) everywhere"
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue), f"over {x.size} configurations"


def robust_region(trials: Sequence[VerifiedTrial], *, tolerance: float = 0.02,
                  max_backdoor: float = 0.2) -> list[VerifiedTrial]:
    """Trials with poisoned clean accuracy ≥ best − ``tolerance`` and backdoor accuracy ≤ ``max_backdoor``."""
    tolerance = check_fraction("tolerance", tolerance)
    max_backdoor = check_fraction("max_backdoor", max_backdoor)
    if not trials:
        return []
    best = max(t.poisoned_clean_accuracy for t in trials)
    return [t for t in trials if t.poisoned_clean_accuracy >= best - tolerance - 1e-12
            and t.backdoor_accuracy <= max_backdoor + 1e-12]


@dataclass(frozen=True)
class VerificationReport:
    """The verified trials, Spearman(slope, backdoor accuracy) and the robust region.

    ``spearman`` is over every verified trial; ``per_learner`` gives it per learner family (slopes of
    different learners use different losses, so the per-learner values are the cleaner comparison).
    """

    trials: tuple[VerifiedTrial, ...]
    spearman: float | None
    pvalue: float | None
    spearman_note: str
    robust: tuple[VerifiedTrial, ...]
    tolerance: float
    max_backdoor: float
    which: str
    per_learner: dict[str, tuple[float | None, float | None, str]] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"verified {len(self.trials)} trials ({self.which}) by retraining on the poisoned training set"]
        header = ("trial", "learner", "params", "slope", "clean acc.", "clean acc. poisoned", "backdoor acc.")
        rows = [(str(t.number), t.learner, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in t.params.items()),
                 f"{t.slope:.4f}", "-" if t.clean_accuracy is None else f"{t.clean_accuracy:.4f}",
                 f"{t.poisoned_clean_accuracy:.4f}", f"{t.backdoor_accuracy:.4f}") for t in self.trials]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) if i in (1, 2) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))))
        lines.append("Spearman(slope, backdoor accuracy after retraining):")
        for name, (rho, p, note) in [("all learners", (self.spearman, self.pvalue, self.spearman_note)),
                                     *sorted(self.per_learner.items())]:
            value = note if rho is None else f"{rho:.3f} (p = {p:.2g}, {note})"
            lines.append(f"  {name}: {value}")
        lines.append(f"robust region (clean accuracy after poisoning within {self.tolerance:g} of the best, "
                     f"backdoor accuracy <= {self.max_backdoor:g}): "
                     + (", ".join(f"trial {t.number}" for t in self.robust) if self.robust else "empty"))
        for t in self.robust:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
            lines.append(f"  trial {t.number}: {t.learner} {params}  clean {t.poisoned_clean_accuracy:.4f}  "
                         f"backdoor {t.backdoor_accuracy:.4f}  slope {t.slope:.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"trials": [t.to_dict() for t in self.trials], "spearman": self.spearman, "pvalue": self.pvalue,
                "spearman_note": self.spearman_note,
                "per_learner": {k: {"spearman": r, "pvalue": p, "note": n}
                                for k, (r, p, n) in self.per_learner.items()},
                "robust": [t.number for t in self.robust],
                "tolerance": self.tolerance, "max_backdoor": self.max_backdoor, "which": self.which}


def _chosen_trials(study: optuna.Study, which: str) -> list[FrozenTrial]:
    if which == "pareto":
        if len(study.directions) == 1:
            return [study.best_trial]
        return sorted(study.best_trials, key=lambda t: t.number)
    if which == "all":
        return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    raise ValueError(f"trials must be 'pareto' (the Pareto front) or 'all' (every completed trial), got {which!r}")


def verify_study(study: optuna.Study, split: PoisonedSplit, *, trials: str = "pareto",
                 family_lookup: FamilyLookup | None = None, seed: int = 0, tolerance: float = 0.02,
                 max_backdoor: float = 0.2, store: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> VerificationReport:
    """Retrain the chosen trials on ``split``'s poisoned training set; store and report (module docstring).

    ``split`` must be the study's own poisoned split (rebuild it from the study file). ``progress`` is
    called as ``progress(done, total)`` after each trial.
    """
    if not isinstance(study, optuna.Study):
        raise ValueError(f"study must be an optuna.Study, got {type(study).__name__}")
    split = check_split(split)
    tolerance = check_fraction("tolerance", tolerance)
    max_backdoor = check_fraction("max_backdoor", max_backdoor)
    chosen = _chosen_trials(study, trials)
    if not chosen:
        raise ValueError(f"study {study.study_name!r} has no completed trials to verify")
    names = study.metric_names
    verified: list[VerifiedTrial] = []
    for i, trial in enumerate(chosen):
        learner, params = trial_config(trial.params)
        clean, backdoor = retrain_poisoned(learner, params, split, family_lookup=family_lookup, seed=seed)
        record = VerifiedTrial(number=trial.number, learner=learner, params=params,
                               slope=trial_slope(trial, names), clean_accuracy=_clean_accuracy(trial, names),
                               poisoned_clean_accuracy=clean, backdoor_accuracy=backdoor)
        if store:
            study.set_user_attr(f"{VERIFY_ATTR_PREFIX}{trial.number}", record.to_dict())
        verified.append(record)
        if progress is not None:
            progress(i + 1, len(chosen))
    rho, p, note = slope_backdoor_spearman([t.slope for t in verified], [t.backdoor_accuracy for t in verified])
    per_learner = {}
    for learner in sorted({t.learner for t in verified}):
        mine = [t for t in verified if t.learner == learner]
        per_learner[learner] = slope_backdoor_spearman([t.slope for t in mine], [t.backdoor_accuracy for t in mine])
    return VerificationReport(trials=tuple(verified), spearman=rho, pvalue=p, spearman_note=note,
                              per_learner=per_learner,
                              robust=tuple(robust_region(verified, tolerance=tolerance, max_backdoor=max_backdoor)),
                              tolerance=tolerance, max_backdoor=max_backdoor, which=trials)


def stored_verification(study: optuna.Study) -> list[VerifiedTrial]:
    """The verification records stored on ``study`` by :func:`verify_study`, by trial number."""
    records = []
    for key, value in study.user_attrs.items():
        if key.startswith(VERIFY_ATTR_PREFIX):
            records.append(VerifiedTrial(**value))
    return sorted(records, key=lambda t: t.number)


# ---------------------------------------------------------------------------------------------
# Grids over (C, γ): the paper's Fig. 8, computed directly or binned from a study's trials.
# ---------------------------------------------------------------------------------------------
METRICS: tuple[str, ...] = ("poisoned_clean_accuracy", "backdoor_accuracy", "slope", "clean_accuracy")


@dataclass(frozen=True, eq=False)
class GridResult:
    """Metrics on a grid: rows are ``gamma`` values (a single row when ``gamma`` is None), columns ``C``.

    ``slope`` and ``clean_accuracy`` come from the clean model (no retraining);
    ``poisoned_clean_accuracy`` and ``backdoor_accuracy`` from retraining on the poisoned set.
    A cell without a value is NaN and explained: ``counts == 0`` (no trial fell in that bin) or an
    entry of ``errors`` (e.g. the slope is undefined for an SVM with every support vector at the bound).
    """

    learner: str
    C: np.ndarray
    gamma: np.ndarray | None
    poisoned_clean_accuracy: np.ndarray
    backdoor_accuracy: np.ndarray
    slope: np.ndarray
    clean_accuracy: np.ndarray
    counts: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)
    binned: bool = False

    def __post_init__(self) -> None:
        shape = (1 if self.gamma is None else self.gamma.size, self.C.size)
        for name in (*METRICS, "counts"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}; expected {shape}")

    def spearman(self) -> tuple[float | None, float | None, str]:
        """Spearman(slope, backdoor accuracy) over the cells where both are defined."""
        ok = np.isfinite(self.slope) & np.isfinite(self.backdoor_accuracy)
        return slope_backdoor_spearman(self.slope[ok], self.backdoor_accuracy[ok])


def _grid_values(name: str, values: Iterable[float] | None) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {values!r}")
    if not np.all(np.diff(arr) > 0):
        raise ValueError(f"{name} must be strictly increasing, got {arr.tolist()}")
    return arr


def paper_grid(split: PoisonedSplit, *, learner: str = "rbf_svm", C: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
               gamma: Sequence[float] | None = (1e-3, 1e-2, 1e-1), family_lookup: FamilyLookup | None = None,
               ) -> GridResult:
    """Evaluate every (C, γ) of a grid: clean fit (accuracy, slope) and poisoned retraining (Fig. 8).

    Pass ``gamma=None`` for learners with C only (``logistic``, ``ridge``, ``linear_svm``).
    """
    split = check_split(split)
    Cs = _grid_values("C", C)
    gammas = _grid_values("gamma", gamma)
    assert Cs is not None
    lookup = _lookup(family_lookup)
    shape = (1 if gammas is None else gammas.size, Cs.size)
    out = {name: np.full(shape, np.nan) for name in METRICS}
    errors: dict[str, str] = {}
    Xc, yc, Xp, yp, Xt, yt = split.flat()
    X_test = flatten_images(split.X_test)
    for i in range(shape[0]):
        for j, c in enumerate(Cs):
            params: dict[str, Any] = {"C": float(c)}
            if gammas is not None:
                params["gamma"] = float(gammas[i])
            est = convex_estimator(learner, params, lookup)
            model = slope_model(est).fit(Xc, yc)
            out["clean_accuracy"][i, j] = float(np.mean(model.predict(X_test) == split.y_test))
            try:
                out["slope"][i, j] = model.derivative(Xp, yp, Xt, yt).slope
            except (DegenerateSolveError, SingularHessianError, FloatingPointError) as exc:
                errors[", ".join(f"{k}={v:.4g}" for k, v in params.items())] = f"slope undefined: {exc}"
            clean, backdoor = retrain_poisoned(learner, params, split, family_lookup=lookup)
            out["poisoned_clean_accuracy"][i, j] = clean
            out["backdoor_accuracy"][i, j] = backdoor
    return GridResult(learner=learner, C=Cs, gamma=gammas, counts=np.ones(shape, dtype=np.int64),
                      errors=errors, **out)


def bin_trials(trials: Sequence[VerifiedTrial], *, learner: str, n_bins: int = 6) -> GridResult:
    """Average verified trials of ``learner`` in a log-spaced grid of bins over C (and γ if it has one)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    mine = [t for t in trials if t.learner == learner]
    if not mine:
        raise ValueError(f"no verified trial of learner {learner!r}; verified learners: "
                         f"{sorted({t.learner for t in trials})}")
    for t in mine:
        if "C" not in t.params:
            raise ValueError(f"trial {t.number} of {learner!r} has no parameter 'C'; got {sorted(t.params)}")
    has_gamma = all("gamma" in t.params for t in mine)
    logC = np.log10([t.params["C"] for t in mine])
    edges_C = _edges(logC, n_bins)
    if has_gamma:
        logG = np.log10([t.params["gamma"] for t in mine])
        edges_G = _edges(logG, n_bins)
        rows = np.clip(np.searchsorted(edges_G, logG, side="right") - 1, 0, edges_G.size - 2)
    else:
        edges_G = None
        rows = np.zeros(len(mine), dtype=np.int64)
    cols = np.clip(np.searchsorted(edges_C, logC, side="right") - 1, 0, edges_C.size - 2)
    shape = (1 if edges_G is None else edges_G.size - 1, edges_C.size - 1)
    counts = np.zeros(shape, dtype=np.int64)
    sums = {name: np.zeros(shape) for name in METRICS}
    have_clean = all(t.clean_accuracy is not None for t in mine)
    for t, r, c in zip(mine, rows, cols):
        counts[r, c] += 1
        for name in METRICS:
            value = getattr(t, name)
            sums[name][r, c] += value if value is not None else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: np.where(counts > 0, sums[name] / np.maximum(counts, 1), np.nan) for name in METRICS}
    if not have_clean:
        means["clean_accuracy"] = np.full(shape, np.nan)
    centers = lambda e: 10 ** ((e[:-1] + e[1:]) / 2)  # noqa: E731 - geometric bin centres
    return GridResult(learner=learner, C=centers(edges_C), gamma=None if edges_G is None else centers(edges_G),
                      counts=counts, binned=True, **means)


def _edges(log_values: np.ndarray, n_bins: int) -> np.ndarray:
    lo, hi = float(np.min(log_values)), float(np.max(log_values))
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)
