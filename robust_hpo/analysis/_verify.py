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

Grids over (C, γ) (the paper's Fig. 8) are in :mod:`robust_hpo.analysis` too (``paper_grid``,
``bin_trials``).

Trials are read as ``params = {"learner": name, "<name>.<hp>": value}`` (the plugin's layout) or
``{"learner": name, "<hp>": value}``; their numbers through :func:`robust_hpo.objective.trial_record`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import spearmanr
from sklearn.base import clone

from robust_hpo._validation import flatten_images
from robust_hpo.analysis._common import FamilyLookup, check_fraction, check_split, lookup
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError
from robust_hpo.objective import DEFAULT_ATTACK, DEFAULT_TOLERANCE, trial_record
from robust_hpo.search_space import format_config, format_values, learner_config

WORST = "worst"
"""``attack`` value naming, per trial, the attack that decided its objective."""

__all__ = [
    "VERIFY_ATTR_PREFIX",
    "WORST",
    "VerificationReport",
    "VerifiedTrial",
    "attack_slope",
    "retrain_poisoned",
    "robust_region",
    "slope_backdoor_spearman",
    "stored_verification",
    "trial_attack",
    "trial_slope",
    "verify_study",
]

VERIFY_ATTR_PREFIX = "robust_hpo:verify:"
"""Study user attribute ``<prefix><trial number>`` holds that trial's verification record."""

def retrain_poisoned(learner: str, params: Mapping[str, Any], split: PoisonedSplit, *,
                     family_lookup: FamilyLookup | None = None, seed: int = 0) -> tuple[float, float]:
    """(clean accuracy, backdoor accuracy) of ``learner(params)`` trained on the poisoned training set.

    Convex families are fitted with scikit-learn directly (``family.estimator(params)``); other
    families through ``family.fit(params, X_train_poisoned, y_train_poisoned, seed=seed)``.
    """
    split = check_split(split)
    family = lookup(family_lookup)(learner)
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
    attack: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_slope(trial: FrozenTrial, metric_names: Sequence[str] | None = None) -> float:
    """The trial's normalised slope (aggregated over its attacks), from its record
    (:func:`robust_hpo.objective.trial_record`; the objective named ``"slope"`` in older studies)."""
    value = trial_record(trial, metric_names).slope
    if value is None:
        raise ValidationError(f"trial {trial.number} has no slope: expected a robust_hpo record, an objective "
                              "named 'slope' or two objectives (clean accuracy, slope)")
    return value


def trial_attack(trial: FrozenTrial, names: Sequence[str], choice: str = WORST) -> str:
    """The attack (one of ``names``, the study's attacks) a trial is analysed on.

    ``choice`` is an attack name, or ``"worst"``: the attack that decided the trial's objective (the
    record's ``worst_attack``; the only attack of a single-attack study).
    """
    names = list(names)
    if not names:
        raise ValidationError("the study has no attacks")
    if choice != WORST:
        if choice not in names:
            raise ValidationError(f"attack must be {WORST!r} or one of {names}, got {choice!r}")
        return choice
    if len(names) == 1:
        return names[0]
    worst = trial_record(trial).worst_attack
    if worst not in names:
        raise ValidationError(f"trial {trial.number} records no worst attack among {names}; name one")
    return str(worst)


def attack_slope(trial: FrozenTrial, attack: str, n_attacks: int,
                 metric_names: Sequence[str] | None = None) -> float:
    """The trial's normalised slope for ``attack`` (its record's per-attack slope) in a study of several
    attacks, the trial's slope (:func:`trial_slope`) otherwise."""
    if n_attacks > 1:
        return trial_record(trial, metric_names).attack_slope(attack)
    return trial_slope(trial, metric_names)


def _clean_accuracy(trial: FrozenTrial, metric_names: Sequence[str] | None) -> float | None:
    return trial_record(trial, metric_names).clean_accuracy


def slope_backdoor_spearman(slopes: Sequence[float],
                            backdoor: Sequence[float]) -> tuple[float | None, float | None, str]:
    """Spearman's ρ (and p-value) of slope against backdoor accuracy; ``None`` with the reason if undefined."""
    x = np.asarray(slopes, dtype=np.float64)
    y = np.asarray(backdoor, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValidationError(f"slopes and backdoor must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValidationError("slopes and backdoor must be finite numbers")
    if x.size < 3:
        return None, None, f"undefined: {x.size} values (at least 3 needed)"
    for name, arr in (("slope", x), ("backdoor accuracy", y)):
        if np.all(arr == arr[0]):
            return None, None, f"undefined: the {name} is the same ({arr[0]:.4g}) everywhere"
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue), f"over {x.size} configurations"


def robust_region(trials: Sequence[VerifiedTrial], *, tolerance: float = DEFAULT_TOLERANCE,
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
        attacks = any(t.attack is not None for t in self.trials)
        header = ("trial", "learner", "params", *(("attack",) if attacks else ()), "slope", "clean acc.",
                  "clean acc. poisoned", "backdoor acc.")
        rows = [(str(t.number), t.learner, format_values(t.params), *((str(t.attack),) if attacks else ()),
                 f"{t.slope:.4f}", "-" if t.clean_accuracy is None else f"{t.clean_accuracy:.4f}",
                 f"{t.poisoned_clean_accuracy:.4f}", f"{t.backdoor_accuracy:.4f}") for t in self.trials]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        left = (1, 2, 3) if attacks else (1, 2)
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w)
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
            lines.append(f"  trial {t.number}: {format_config(t.learner, t.params)}  clean {t.poisoned_clean_accuracy:.4f}  "
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
    raise ValidationError(f"trials must be 'pareto' (the Pareto front) or 'all' (every completed trial), got {which!r}")


def verify_study(study: optuna.Study, split: PoisonedSplit | Mapping[str, PoisonedSplit], *,
                 trials: str = "pareto", attack: str = WORST, family_lookup: FamilyLookup | None = None,
                 seed: int = 0, tolerance: float = DEFAULT_TOLERANCE, max_backdoor: float = 0.2,
                 store: bool = True, progress: Callable[[int, int], None] | None = None) -> VerificationReport:
    """Retrain the chosen trials on the poisoned training set of their attack; store and report.

    ``split`` is the study's own poisoned split, or its ``{attack name: split}`` (rebuild them from the
    study: ``robust_hpo.study.build_splits``); each trial is retrained on the split of ``attack``
    (:func:`trial_attack`: by default the attack that decided its objective) and compared with its
    slope for that attack. ``progress`` is called as ``progress(done, total)`` after each trial.
    """
    if not isinstance(study, optuna.Study):
        raise ValidationError(f"study must be an optuna.Study, got {type(study).__name__}")
    splits = {name: check_split(s, f"split[{name!r}]") for name, s in split.items()} \
        if isinstance(split, Mapping) else {DEFAULT_ATTACK: check_split(split)}
    if not splits:
        raise ValidationError("split must be a PoisonedSplit or a non-empty {attack name: PoisonedSplit} mapping")
    tolerance = check_fraction("tolerance", tolerance)
    max_backdoor = check_fraction("max_backdoor", max_backdoor)
    chosen = _chosen_trials(study, trials)
    if not chosen:
        raise ValidationError(f"study {study.study_name!r} has no completed trials to verify")
    names = study.metric_names
    verified: list[VerifiedTrial] = []
    for i, trial in enumerate(chosen):
        learner, params = learner_config(trial.params)
        used = trial_attack(trial, list(splits), attack)
        clean, backdoor = retrain_poisoned(learner, params, splits[used], family_lookup=family_lookup, seed=seed)
        record = VerifiedTrial(number=trial.number, learner=learner, params=params,
                               slope=attack_slope(trial, used, len(splits), names),
                               clean_accuracy=_clean_accuracy(trial, names),
                               poisoned_clean_accuracy=clean, backdoor_accuracy=backdoor,
                               attack=used if len(splits) > 1 else None)
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
