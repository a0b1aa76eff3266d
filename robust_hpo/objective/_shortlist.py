"""The shortlist check: the few network candidates the recommendation would choose, trained once on poison.

A network trial's β = 1 estimate (a short poisoned fine-tune, :mod:`robust_hpo.learners._torch_estimate`)
ranks configurations but can miss where the backdoor is learned in a late jump (measured on a binary
digits pair: the quarter-length fine-tune gave 0.10–0.27 where training on poison gave 0.46–0.52).
So after a study, :func:`check_shortlist` trains a few network candidates from scratch on the
in-place poisoned training set (the study's seed; each attack's split): the one with the smallest
slope (the slope ranked the candidates of every benchmark study well, and catches where the
fine-tune misses: a CNN study whose estimates put its most robust candidate 0.2 too high), then the
recommendation's first ones; it stores their backdoor accuracy in ONE study attribute
:data:`SHORTLIST_ATTR`::

    {"format": 1, "trials": {"<number>": backdoor accuracy (aggregated over the attacks)},
     "seconds": s, "method": "poisoned-training"}

:func:`robust_hpo.objective.recommend` then ranks a checked candidate by that measurement instead of
its estimate. Checking continues down the ranking until the recommended trial is a checked one or
``limit`` trainings were made (default :data:`SHORTLIST_LIMIT`). Convex candidates are never checked:
their estimate is already the retrained model's (a refit on clean ∪ poison). Cost: one training on
the poisoned set (≈ 1.1 clean trainings) per checked candidate and attack — a few per study, not
one per trial.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from robust_hpo.objective._record import jsonable
from robust_hpo.objective._recommend import SHORTLIST_ATTR, checked_backdoor, recommend

__all__ = ["SHORTLIST_ATTR", "SHORTLIST_LIMIT", "check_shortlist", "checked_backdoor"]

SHORTLIST_LIMIT = 3
"""At most this many poisoned trainings per :func:`check_shortlist` call."""


def check_shortlist(study: optuna.Study, objective: Any, tolerance: float, *,
                    limit: int = SHORTLIST_LIMIT) -> dict[int, float]:
    """Train the recommendation's first unchecked network candidates on poison (see the module
    docstring) until the recommended trial is checked or ``limit`` trainings were made; store and
    return every measurement. ``objective`` is the study's :class:`BackdoorSlopeObjective` (its
    splits, families, seed and aggregate)."""
    checked = checked_backdoor(study)
    seconds = 0.0
    made = 0
    first = recommend(study, tolerance, checked=checked)
    if first is not None:  # the smallest slope among the network candidates: the estimate's blind spot
        networks = [r for r in first.ranked if not _deterministic(objective.families.get(r.learner))]
        smallest = min(networks, key=lambda r: (r.local_only, r.slope, -r.clean_accuracy, r.number), default=None)
        if smallest is not None and smallest.number not in checked and limit > 0:
            start = time.perf_counter()
            checked[smallest.number] = _poisoned_backdoor(objective, smallest.learner, smallest.learner_params)
            seconds += time.perf_counter() - start
            made += 1
    while made < limit:
        chosen = recommend(study, tolerance, checked=checked)
        if chosen is None or chosen.record.number in checked or \
                _deterministic(objective.families.get(chosen.record.learner)):
            break
        todo = chosen.record
        start = time.perf_counter()
        checked[todo.number] = _poisoned_backdoor(objective, todo.learner, todo.learner_params)
        seconds += time.perf_counter() - start
        made += 1
    if made:
        stored = study.user_attrs.get(SHORTLIST_ATTR)
        before = float(stored.get("seconds", 0.0)) if isinstance(stored, Mapping) else 0.0
        study.set_user_attr(SHORTLIST_ATTR, jsonable({
            "format": 1, "trials": {str(k): round(v, 6) for k, v in sorted(checked.items())},
            "seconds": before + seconds, "method": "poisoned-training"}))
    return checked


def _deterministic(family: Any) -> bool:
    """A convex scikit-learn family (its estimate is the retrained model's); unknown families are not."""
    return family is None or hasattr(family, "estimator")


def _poisoned_backdoor(objective: Any, learner: str, params: Mapping[str, Any]) -> float:
    """Backdoor accuracy of ``learner(params)`` trained from scratch on each attack's poisoned set,
    aggregated over the attacks as the objective aggregates (max or mean)."""
    values = []
    family = objective.families[learner]
    for split in objective.splits.values():
        fitted = family.fit(dict(params), split.X_train_poisoned, split.y_train_poisoned, seed=objective.seed)
        values.append(float(np.mean(np.asarray(fitted.predict(split.X_trigger)) == split.y_trigger)))
    return max(values) if objective.aggregate == "max" else float(np.mean(values))
