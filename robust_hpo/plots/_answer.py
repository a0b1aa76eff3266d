"""The study's answer in words: the recommended trial against the most accurate one, the rule in one
short sentence, and whether the recommendation is still vulnerable.

Everything reads plain dicts as ``summary.json`` stores them (``recommended``: the recommendation's
``to_dict()``; ``most_accurate``: a trial record's), so ``report``, ``index.html``, the Pareto figure
and the dashboard say the same thing in the same words. The *estimated backdoor accuracy after
poisoning* is the record's ``predicted_backdoor_accuracy`` (triggered test points classified as the
target by the model trained on the poisoned set: a β = 1 refit for convex learners, a short poisoned
fine-tune of the clean network for networks; ``robust_hpo.slope.TriggerMargins``); "the clean model's"
is ``baseline_backdoor_accuracy`` (the same fraction before any poisoning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robust_hpo.errors import ValidationError
from robust_hpo.search_space import format_values, learner_config

__all__ = ["VULNERABLE_AT", "answer_lines", "configuration", "is_vulnerable", "short_rule", "trial_summary"]

VULNERABLE_AT = 0.5
"""An estimated backdoor accuracy at or above this calls the recommendation vulnerable (when the
summary has no ``vulnerable`` key of its own)."""

ESTIMATE = "estimated backdoor accuracy after poisoning"


def configuration(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(learner, "C=1.576, gamma=0.02208")`` of a record's flat ``params``."""
    params = dict(record.get("params") or {})
    try:
        learner, values = learner_config(params)
        return learner, format_values(values) or "no hyperparameters"
    except ValidationError:
        learner = str(record.get("learner") or params.pop("learner", "?"))
        return learner, ", ".join(f"{k}={v}" for k, v in params.items() if k != "learner") or "no hyperparameters"


def _fraction(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def trial_summary(record: Mapping[str, Any]) -> str:
    """``trial 23 (rbf_svm C=1.576, gamma=0.02208): clean accuracy 0.980, estimated backdoor accuracy
    after poisoning 0.12 (clean model 0.00)``."""
    learner, values = configuration(record)
    text = f"trial {record.get('number')} ({learner} {values}): clean accuracy {_fraction(record.get('clean_accuracy'), 3)}"
    if record.get("predicted_backdoor_accuracy") is not None:
        text += (f", {ESTIMATE} {_fraction(record.get('predicted_backdoor_accuracy'))} "
                 f"(clean model {_fraction(record.get('baseline_backdoor_accuracy'))})")
    elif record.get("slope") is not None:
        text += f", slope {float(record['slope']):.4g} (no backdoor-accuracy estimate)"
    if record.get("checked_backdoor_accuracy") is not None:
        text += (f"; backdoor accuracy after one training on the poisoned set "
                 f"{_fraction(record.get('checked_backdoor_accuracy'))}")
    return text


def short_rule(recommended: Mapping[str, Any]) -> str:
    """The rule in one short sentence, from a recommendation's dict."""
    by = ESTIMATE.replace(" after poisoning", "") if recommended.get("rule") != "slope" else "slope"
    n = len(recommended.get("candidates") or [])
    best = recommended.get("best_accuracy")
    tolerance = recommended.get("tolerance")
    within = (f"within {float(tolerance):g} of the best clean accuracy {float(best):.3f}"
              if best is not None and tolerance is not None else "within the tolerance of the best clean accuracy")
    checked = sorted(int(k) for k in (recommended.get("checked") or {}))
    after = ""
    if checked:
        trials = ", ".join(map(str, checked))
        after = (f" Trial{'s' if len(checked) > 1 else ''} {trials} {'were' if len(checked) > 1 else 'was'} "
                 "trained once on the poisoned set: measured values replace estimates.")
    return f"Rule: the lowest {by} among the {n} feasible trials {within}.{after}"


def is_vulnerable(recommended: Mapping[str, Any]) -> bool:
    """The summary's own ``vulnerable`` flag when it has one, else estimate ≥ :data:`VULNERABLE_AT`."""
    if "vulnerable" in recommended and recommended["vulnerable"] is not None:
        return bool(recommended["vulnerable"])
    estimate = recommended.get("predicted_backdoor_accuracy")
    return estimate is not None and float(estimate) >= VULNERABLE_AT


def answer_lines(recommended: Mapping[str, Any], most_accurate: Mapping[str, Any] | None) -> list[str]:
    """Two lines, ``Recommended: …`` and ``Most accurate: …`` (or ``… is also the most accurate``)."""
    lines = [f"Recommended: {trial_summary(recommended)}"]
    if most_accurate is None or most_accurate.get("number") == recommended.get("number"):
        lines.append("Most accurate: the same trial (no accuracy given up for robustness)")
    else:
        lines.append(f"Most accurate: {trial_summary(most_accurate)}")
    return lines
