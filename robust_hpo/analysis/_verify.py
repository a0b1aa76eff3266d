"""Verification by retraining: is the recommendation robust, and does the slope rank configurations
like real poisoning does?

The chosen trials (by default the recommendation's **candidates** — the feasible trials within the
tolerance of the best feasible clean accuracy, exactly those ``robust-hpo report`` chooses from; or the
Pareto front, or every completed trial, each with the candidates added) are retrained on the in-place
*poisoned* training set (clean ∪ poison, every point weight 1, β = 1) and measured on

* ``poisoned_clean_accuracy``: accuracy on the clean test set;
* ``backdoor_accuracy``: the fraction of triggered test points classified as the attacker's target
  (the attack success rate).

Networks are retrained with several seeds (``seeds``, default :data:`NETWORK_SEEDS`: a single
seed's backdoor accuracy moves by up to 0.2 for short trainings): both numbers are the mean over
the seeds, and ``backdoor_spread`` (max − min) says how much they moved. Convex learners have one
optimum and are retrained once.

The report checks the recommendation (:func:`robust_hpo.objective.recommend`, the same rule and
tolerance as ``report``): the recommended trial's predicted and true backdoor accuracy, the best
candidate's, and the **regret** (recommended − best). It also gives Spearman's rank correlation between
slope and backdoor accuracy (``scipy.stats.spearmanr``) and the *robust region*: the candidates whose
backdoor accuracy after retraining is at most ``max_backdoor``.

Results are stored on the study as ONE compact study user attribute :data:`VERIFY_ATTR`
(``{"format": 1, "trials": {"<number>[:<attack>]": [poisoned clean accuracy, backdoor accuracy, attack or
null, backdoor spread over the seeds (networks; absent for one retraining)]},
"tolerance", "recommended", "best", "regret"}``; Optuna refuses to modify finished trials, and one
attribute per trial made ``optuna studies`` print a 15,000-character row). Later runs merge into it.
:func:`stored_verification` reads it back (and the per-trial attributes ``robust_hpo:verify:<n>`` of
earlier versions).

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
from robust_hpo.objective import (
    DEFAULT_ATTACK,
    DEFAULT_TOLERANCE,
    Recommendation,
    TrialRecord,
    candidates,
    recommend,
    trial_record,
)
from robust_hpo.search_space import format_config, format_values, learner_config

WORST = "worst"
"""``attack`` value naming, per trial, the attack that decided its objective."""

__all__ = [
    "VERIFY_ATTR",
    "VERIFY_ATTR_PREFIX",
    "RecommendationCheck",
    "WORST",
    "VerificationReport",
    "VerifiedTrial",
    "attack_slope",
    "NETWORK_SEEDS",
    "is_deterministic",
    "retrain_poisoned",
    "retrain_poisoned_seeds",
    "robust_region",
    "slope_backdoor_spearman",
    "stored_verification",
    "trial_attack",
    "trial_slope",
    "verify_key",
    "verify_study",
]

VERIFY_ATTR = "robust_hpo:verify"
"""The study user attribute holding every verified trial (see the module docstring)."""

VERIFY_FORMAT = 1

NETWORK_SEEDS = 3
"""Retrainings per network configuration (seeds ``seed, seed + 1, ...``) unless ``seeds`` says otherwise."""

VERIFY_ATTR_PREFIX = "robust_hpo:verify:"
"""Per-trial study attributes ``<prefix><trial number>`` written by earlier versions (read, not written)."""


def verify_key(number: int, attack: str | None) -> str:
    """The key of trial ``number``'s verification on ``attack`` in :data:`VERIFY_ATTR`'s ``"trials"``:
    ``"<number>"`` in a single-attack study (``attack`` None), ``"<number>:<attack>"`` otherwise, so
    verifying on several attacks keeps one record per attack."""
    return str(number) if attack is None else f"{number}:{attack}"

WHICH = ("candidates", "pareto", "all")
"""``verify_study(trials=...)``: the recommendation's candidates (default), the Pareto front or every
completed trial; the candidates are always included."""

def is_deterministic(learner: str, family_lookup: FamilyLookup | None = None) -> bool:
    """Whether retraining ``learner`` gives one answer (a convex scikit-learn family: one optimum)."""
    return hasattr(lookup(family_lookup)(learner), "estimator")


def retrain_poisoned_seeds(learner: str, params: Mapping[str, Any], split: PoisonedSplit, *,
                           family_lookup: FamilyLookup | None = None, seed: int = 0,
                           seeds: int | None = None) -> list[tuple[float, float]]:
    """:func:`retrain_poisoned` under seeds ``seed, seed + 1, …``: ``seeds`` of them (default
    :data:`NETWORK_SEEDS`) for networks, once for the deterministic convex families."""
    if seeds is not None and not (isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1):
        raise ValidationError(f"seeds must be an integer >= 1, got {seeds!r}")
    if is_deterministic(learner, family_lookup):
        seeds = 1
    elif seeds is None:
        seeds = NETWORK_SEEDS
    return [retrain_poisoned(learner, params, split, family_lookup=family_lookup, seed=seed + i)
            for i in range(seeds)]


def retrain_poisoned(learner: str, params: Mapping[str, Any], split: PoisonedSplit, *,
                     family_lookup: FamilyLookup | None = None, seed: int = 0) -> tuple[float, float]:
    """(clean accuracy, backdoor accuracy) of ``learner(params)`` trained on the poisoned training set.

    Convex families are fitted with scikit-learn directly (``family.estimator(params)``) — except where
    scikit-learn stops short of the optimum the study differentiates and predicts with (``SGDClassifier``:
    the exact optimum of its objective on the poisoned set, as every SGD fit of a study is; docs/slope.md);
    other families through ``family.fit(params, X_train_poisoned, y_train_poisoned, seed=seed)``.
    """
    split = check_split(split)
    family = lookup(family_lookup)(learner)
    if hasattr(family, "estimator"):
        est = clone(family.estimator(dict(params)))
        X_poisoned = flatten_images(split.X_train_poisoned)
        optimum = _optimum_model(est)
        if optimum is not None:
            est = optimum.fit(X_poisoned, split.y_train_poisoned)
        else:
            est.fit(X_poisoned, split.y_train_poisoned)

        def predict(X: np.ndarray) -> np.ndarray:
            return est.predict(flatten_images(X))
    else:
        fitted = family.fit(dict(params), split.X_train_poisoned, split.y_train_poisoned, seed=seed)
        predict = fitted.predict
    clean = float(np.mean(np.asarray(predict(split.X_test)) == split.y_test))
    backdoor = float(np.mean(np.asarray(predict(split.X_trigger)) == split.y_trigger))
    return clean, backdoor


def _optimum_model(est: Any) -> Any:
    """The exact-slope adapter of ``est`` where scikit-learn's own fit is not the optimum the study uses
    (``refits_at_the_optimum``: SGD), without its β = 1 estimate; None otherwise."""
    from robust_hpo.slope import slope_model

    try:
        model = slope_model(est)
    except ValidationError:  # a family of your own: its estimator's own fit
        return None
    if not model.refits_at_the_optimum:
        return None
    model.estimate = "linear"
    return model


@dataclass(frozen=True)
class VerifiedTrial:
    """One trial's configuration, its slope and estimated backdoor accuracy (as the study recorded them)
    and its accuracies after poisoned retraining (the mean over ``seeds`` retrainings; ``backdoor_spread``:
    max − min of their backdoor accuracies, None for one). ``candidate``: one of the recommendation's
    candidates."""

    number: int
    learner: str
    params: dict[str, Any]
    slope: float
    clean_accuracy: float | None
    poisoned_clean_accuracy: float
    backdoor_accuracy: float
    attack: str | None = None
    predicted_backdoor_accuracy: float | None = None
    candidate: bool = False
    backdoor_spread: float | None = None
    seeds: int = 1

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


def slope_backdoor_spearman(slopes: Sequence[float], backdoor: Sequence[float], *,
                            unit: str = "configurations") -> tuple[float | None, float | None, str]:
    """Spearman's ρ (and p-value) of slope against backdoor accuracy; ``None`` with the reason if undefined.

    The note says over how many values (``"over 38 configurations"``; ``unit`` names what they are)."""
    x = np.asarray(slopes, dtype=np.float64)
    y = np.asarray(backdoor, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValidationError(f"slopes and backdoor must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValidationError("slopes and backdoor must be finite numbers")
    if x.size < 3:
        return None, None, f"undefined: {x.size} {unit} (at least 3 needed)"
    for name, arr in (("slope", x), ("backdoor accuracy", y)):
        if np.all(arr == arr[0]):
            return None, None, f"undefined: the {name} is the same ({arr[0]:.4g}) everywhere"
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue), f"over {x.size} {unit}"


def robust_region(trials: Sequence[VerifiedTrial], *, max_backdoor: float = 0.2) -> list[VerifiedTrial]:
    """The candidates (``candidate``: feasible, clean accuracy within the report's tolerance of the best)
    whose backdoor accuracy after poisoned retraining is ≤ ``max_backdoor``."""
    max_backdoor = check_fraction("max_backdoor", max_backdoor)
    return [t for t in trials if t.candidate and t.backdoor_accuracy <= max_backdoor + 1e-12]


@dataclass(frozen=True)
class RecommendationCheck:
    """The recommendation against retraining: its predicted and true backdoor accuracy, the best
    candidate's true backdoor accuracy, and the regret (recommended − best; 0 = the best choice)."""

    recommendation: Recommendation
    recommended: VerifiedTrial
    best: VerifiedTrial

    @property
    def regret(self) -> float:
        return self.recommended.backdoor_accuracy - self.best.backdoor_accuracy

    def render(self) -> str:
        r, b = self.recommended, self.best
        predicted = "-" if r.predicted_backdoor_accuracy is None else f"{r.predicted_backdoor_accuracy:.3f}"
        lines = [f"Recommendation check (the candidates and tolerance of `robust-hpo report`: "
                 f"{len(self.recommendation.candidates.records)} trials within {self.recommendation.tolerance:g} "
                 f"of the best clean accuracy {self.recommendation.best_accuracy:.4f}):",
                 f"  recommended trial {r.number} ({format_config(r.learner, r.params)}): predicted backdoor "
                 f"accuracy {predicted}, after retraining on the poisoned set {r.backdoor_accuracy:.3f}",
                 f"  best candidate trial {b.number} ({format_config(b.learner, b.params)}): backdoor accuracy "
                 f"after retraining {b.backdoor_accuracy:.3f}",
                 f"  regret {self.regret:.3f} (recommended − best)",
                 f"  {self.recommendation.rule_sentence()}"]
        return "\n".join(lines + [f"  warning: {w}" for w in self.recommendation.warnings()])

    def to_dict(self) -> dict[str, Any]:
        return {"recommended": self.recommended.number, "best": self.best.number, "regret": self.regret,
                "predicted_backdoor_accuracy": self.recommended.predicted_backdoor_accuracy,
                "backdoor_accuracy": self.recommended.backdoor_accuracy,
                "best_backdoor_accuracy": self.best.backdoor_accuracy, "rule": self.recommendation.rule}


@dataclass(frozen=True)
class VerificationReport:
    """The verified trials, the recommendation check, Spearman(slope, backdoor accuracy) and the robust
    region.

    ``spearman`` is over every verified trial; ``per_learner`` gives it per learner family (slopes of
    different learners use different losses, so the per-learner values are the cleaner comparison).
    ``check`` is None when the study has no recommendation (no feasible trial with an exact slope).
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
    check: RecommendationCheck | None = None

    def render(self) -> str:
        lines = [f"verified {len(self.trials)} trials ({self.which}) by retraining on the poisoned training set"]
        attacks = any(t.attack is not None for t in self.trials)
        recommended = self.check.recommended.number if self.check is not None else None
        spread = any(t.backdoor_spread is not None for t in self.trials)
        header = ("trial", "learner", "params", *(("attack",) if attacks else ()), "slope", "clean acc.",
                  "clean acc. retrained", "backdoor est.", "backdoor retrained",
                  *(("spread (seeds)",) if spread else ()), "note")
        rows = []
        for t in self.trials:
            note = "recommended" if t.number == recommended else ("candidate" if t.candidate else "")
            rows.append((str(t.number), t.learner, format_values(t.params), *((str(t.attack),) if attacks else ()),
                         f"{t.slope:.4f}", "-" if t.clean_accuracy is None else f"{t.clean_accuracy:.4f}",
                         f"{t.poisoned_clean_accuracy:.4f}",
                         "-" if t.predicted_backdoor_accuracy is None else f"{t.predicted_backdoor_accuracy:.3f}",
                         f"{t.backdoor_accuracy:.4f}",
                         *((("-" if t.backdoor_spread is None else f"{t.backdoor_spread:.3f} ({t.seeds})"),)
                           if spread else ()), note))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        left = (1, 2, 3, len(header) - 1) if attacks else (1, 2, len(header) - 1)
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        lines.append("  (slope, clean acc.: the clean model's, as the study recorded them; backdoor est.: the "
                     "study's estimate of the backdoor accuracy after poisoning; retrained: measured after "
                     "retraining on the poisoned training set)")
        if spread:
            lines.append("backdoor retrained and clean acc. retrained of a network: the mean over its retrainings with "
                         "different seeds; spread = max − min of their backdoor accuracies")
        lines.append(self.check.render() if self.check is not None else
                     "Recommendation check: no recommendation (no feasible trial with an exact slope)")
        lines.append("Spearman(slope, backdoor accuracy after retraining):")
        for name, (rho, p, note) in [("all learners", (self.spearman, self.pvalue, self.spearman_note)),
                                     *sorted(self.per_learner.items())]:
            value = note if rho is None else f"{rho:.3f} (p = {p:.2g}, {note})"
            lines.append(f"  {name}: {value}")
        lines.append(f"robust region (the recommendation's candidates: clean accuracy within {self.tolerance:g} of "
                     f"the best feasible, and backdoor accuracy after retraining <= {self.max_backdoor:g}): "
                     + (", ".join(f"trial {t.number}" for t in self.robust) if self.robust else "empty"))
        for t in self.robust:
            lines.append(f"  trial {t.number}: {format_config(t.learner, t.params)}  clean accuracy after retraining "
                         f"{t.poisoned_clean_accuracy:.4f}, backdoor accuracy after retraining "
                         f"{t.backdoor_accuracy:.4f}, slope of the clean model {t.slope:.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"trials": [t.to_dict() for t in self.trials], "spearman": self.spearman, "pvalue": self.pvalue,
                "spearman_note": self.spearman_note,
                "per_learner": {k: {"spearman": r, "pvalue": p, "note": n}
                                for k, (r, p, n) in self.per_learner.items()},
                "robust": [t.number for t in self.robust],
                "tolerance": self.tolerance, "max_backdoor": self.max_backdoor, "which": self.which,
                "check": self.check.to_dict() if self.check is not None else None}


def _chosen_trials(study: optuna.Study, which: str, candidate_numbers: set[int]) -> list[FrozenTrial]:
    """The trials ``which`` names, the candidates always among them, by trial number."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if which == "candidates":
        chosen = set(candidate_numbers)
    elif which == "pareto":
        front = [study.best_trial] if len(study.directions) == 1 else study.best_trials
        chosen = {t.number for t in front} | candidate_numbers
    elif which == "all":
        chosen = {t.number for t in complete}
    else:
        raise ValidationError(f"trials must be one of {list(WHICH)} ('candidates': the recommendation's, 'pareto': "
                              f"the Pareto front, 'all': every completed trial), got {which!r}")
    return [t for t in complete if t.number in chosen]


def verify_study(study: optuna.Study, split: PoisonedSplit | Mapping[str, PoisonedSplit], *,
                 trials: str = "candidates", attack: str = WORST, family_lookup: FamilyLookup | None = None,
                 seed: int = 0, tolerance: float = DEFAULT_TOLERANCE, max_backdoor: float = 0.2,
                 store: bool = True, progress: Callable[[int, int], None] | None = None,
                 seeds: int | None = None) -> VerificationReport:
    """Retrain the chosen trials on the poisoned training set of their attack; check the recommendation;
    store and report.

    ``split`` is the study's own poisoned split, or its ``{attack name: split}`` (rebuild them from the
    study: ``robust_hpo.study.build_splits``); each trial is retrained on the split of ``attack``
    (:func:`trial_attack`: by default the attack that decided its objective) and compared with its
    slope and predicted backdoor accuracy for that attack. ``tolerance`` is the report's (the
    recommendation's candidates). ``progress`` is called as ``progress(done, total)`` after each trial.
    ``seeds``: retrainings per network trial (default :data:`NETWORK_SEEDS`; convex learners: one).
    """
    if not isinstance(study, optuna.Study):
        raise ValidationError(f"study must be an optuna.Study, got {type(study).__name__}")
    splits = {name: check_split(s, f"split[{name!r}]") for name, s in split.items()} \
        if isinstance(split, Mapping) else {DEFAULT_ATTACK: check_split(split)}
    if not splits:
        raise ValidationError("split must be a PoisonedSplit or a non-empty {attack name: PoisonedSplit} mapping")
    tolerance = check_fraction("tolerance", tolerance)
    max_backdoor = check_fraction("max_backdoor", max_backdoor)
    names = study.metric_names
    pool = candidates(study, tolerance) if len(study.directions) == 2 else None
    pool_numbers = set(pool.numbers) if pool is not None else set()
    chosen = _chosen_trials(study, trials, pool_numbers)
    if not chosen:
        raise ValidationError(f"study {study.study_name!r} has no completed trials to verify"
                              + (" (no feasible candidate; try --trials all)" if trials == "candidates" else ""))
    verified: list[VerifiedTrial] = []
    for i, trial in enumerate(chosen):
        record = trial_record(trial, names)
        # score_trial's trials name their learner in the record (your own parameter names)
        learner, params = (record.learner, record.learner_params) if record.learner else learner_config(trial.params)
        used = trial_attack(trial, list(splits), attack)
        runs = retrain_poisoned_seeds(learner, params, splits[used], family_lookup=family_lookup, seed=seed,
                                      seeds=seeds)
        clean = float(np.mean([c for c, _ in runs]))
        backdoor = float(np.mean([b for _, b in runs]))
        spread = float(max(b for _, b in runs) - min(b for _, b in runs)) if len(runs) > 1 else None
        verified.append(VerifiedTrial(number=trial.number, learner=learner, params=params,
                                      backdoor_spread=spread, seeds=len(runs),
                                      slope=attack_slope(trial, used, len(splits), names),
                                      clean_accuracy=record.clean_accuracy,
                                      poisoned_clean_accuracy=clean, backdoor_accuracy=backdoor,
                                      attack=used if len(splits) > 1 else None,
                                      predicted_backdoor_accuracy=_predicted(record, used, len(splits)),
                                      candidate=trial.number in pool_numbers))
        if progress is not None:
            progress(i + 1, len(chosen))
    check = _check(study, tolerance, verified)
    if store:
        _store(study, verified, tolerance, check)
    rho, p, note = slope_backdoor_spearman([t.slope for t in verified], [t.backdoor_accuracy for t in verified])
    per_learner = {}
    for learner in sorted({t.learner for t in verified}):
        mine = [t for t in verified if t.learner == learner]
        per_learner[learner] = slope_backdoor_spearman([t.slope for t in mine], [t.backdoor_accuracy for t in mine])
    return VerificationReport(trials=tuple(verified), spearman=rho, pvalue=p, spearman_note=note,
                              per_learner=per_learner, robust=tuple(robust_region(verified, max_backdoor=max_backdoor)),
                              tolerance=tolerance, max_backdoor=max_backdoor, which=trials, check=check)


def _predicted(record: TrialRecord, attack: str, n_attacks: int) -> float | None:
    if n_attacks > 1 and attack in record.attacks:
        return record.attacks[attack].predicted_backdoor_accuracy
    return record.predicted_backdoor_accuracy


def _check(study: optuna.Study, tolerance: float, verified: Sequence[VerifiedTrial]) -> RecommendationCheck | None:
    if len(study.directions) != 2:
        return None
    recommendation = recommend(study, tolerance)
    if recommendation is None:
        return None
    by_number = {t.number: t for t in verified}
    pool = [by_number[n] for n in recommendation.candidates.numbers]
    best = min(pool, key=lambda t: (t.backdoor_accuracy, t.number))
    return RecommendationCheck(recommendation=recommendation, recommended=by_number[recommendation.trial.number],
                               best=best)


def _store(study: optuna.Study, verified: Sequence[VerifiedTrial], tolerance: float,
           check: RecommendationCheck | None) -> None:
    """Merge ``verified`` into the one compact study attribute (one storage write)."""
    stored = study.user_attrs.get(VERIFY_ATTR)
    entries = dict(stored.get("trials", {})) if isinstance(stored, Mapping) else {}
    for t in verified:
        entry = [round(t.poisoned_clean_accuracy, 6), round(t.backdoor_accuracy, 6), t.attack]
        if t.backdoor_spread is not None:
            entry.append(round(t.backdoor_spread, 6))
        entries[verify_key(t.number, t.attack)] = entry
    value: dict[str, Any] = {"format": VERIFY_FORMAT, "tolerance": tolerance,
                             "trials": dict(sorted(entries.items(), key=lambda kv: _parse_key(kv[0])))}
    if check is not None:
        value.update(recommended=check.recommended.number, best=check.best.number, regret=round(check.regret, 6))
    study.set_user_attr(VERIFY_ATTR, value)


def _parse_key(key: str) -> tuple[int, str]:
    """``"<number>"`` or ``"<number>:<attack>"`` (see :func:`verify_key`) -> (number, attack or "")."""
    number, _, attack = str(key).partition(":")
    return int(number), attack


def stored_verification(study: optuna.Study, attack: str | None = None) -> list[VerifiedTrial]:
    """The verification stored on ``study`` by :func:`verify_study` (and by earlier versions' per-trial
    attributes), by trial number; configuration, slope and predictions come from the trials' records.

    ``attack``: ``None``, every record; an attack name, the records on that attack; ``"worst"``, each
    trial's record on the attack that decided its objective. (Records of a single-attack study name no
    attack and match every choice.)
    """
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    entries: dict[tuple[int, str | None], tuple[float, float, float | None]] = {}
    for key, value in study.user_attrs.items():
        if key.startswith(VERIFY_ATTR_PREFIX) and isinstance(value, Mapping):
            number, _ = _parse_key(key[len(VERIFY_ATTR_PREFIX):])
            entries[(number, value.get("attack"))] = (value["poisoned_clean_accuracy"], value["backdoor_accuracy"],
                                                      None)
    stored = study.user_attrs.get(VERIFY_ATTR)
    if isinstance(stored, Mapping):
        for key, (clean, backdoor, used, *rest) in stored.get("trials", {}).items():
            entries[(_parse_key(key)[0], used)] = (clean, backdoor, float(rest[0]) if rest else None)
    tolerance = stored.get("tolerance") if isinstance(stored, Mapping) else None
    pool = candidates(study, tolerance) if tolerance is not None and len(study.directions) == 2 else None
    pool_numbers = set(pool.numbers) if pool is not None else set()
    names = study.metric_names
    out = []
    for (number, used), (clean, backdoor, spread) in sorted(entries.items(),
                                                            key=lambda kv: (kv[0][0], kv[0][1] or "")):
        trial = by_number.get(number)
        if trial is None:
            continue
        record = trial_record(trial, names)
        if used is not None and attack is not None and used != (record.worst_attack if attack == WORST else attack):
            continue
        learner, params = learner_config(trial.params)
        slope = record.attack_slope(used) if used is not None and used in record.attacks else record.slope
        out.append(VerifiedTrial(number=number, learner=learner, params=params, slope=float(slope),
                                 clean_accuracy=record.clean_accuracy, poisoned_clean_accuracy=float(clean),
                                 backdoor_accuracy=float(backdoor), attack=used,
                                 predicted_backdoor_accuracy=_predicted(record, used or "", 2 if used else 1),
                                 candidate=number in pool_numbers, backdoor_spread=spread))
    return out
