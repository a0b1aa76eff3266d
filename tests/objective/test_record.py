"""The trial-record reader: what robust_hpo 0.2 writes, what 0.1 wrote, and trials in other states."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from robust_hpo.objective import RECORD_ATTR, trial_record
from robust_hpo.objective._record import jsonable

DISTRIBUTIONS = {"learner": CategoricalDistribution(["logistic"]),
                 "logistic.C": FloatDistribution(1e-3, 10.0, log=True)}


def _trial(**kwargs: object) -> optuna.trial.FrozenTrial:
    kwargs.setdefault("params", {"learner": "logistic", "logistic.C": 0.5})
    kwargs.setdefault("distributions", DISTRIBUTIONS)
    return create_trial(**kwargs)  # type: ignore[arg-type]


def test_version_0_1_single_attack_attributes() -> None:
    influence = -0.4
    slope = -2 / math.pi * math.atan(influence)
    trial = _trial(values=[0.93, slope], system_attrs={"constraints:clean_accuracy": -0.03, "constraints": [-0.03]},
                   user_attrs={"derivative": -6.0, "influence": influence, "n_poison": 15, "fit_seconds": 0.1,
                               "slope_seconds": 0.02, "attack": {"trigger": "badnets"},
                               "details": {"slope_method": "primal-cholesky", "loss": "log", "damping": 0.0,
                                           "n_clean": 135, "n_trigger": 50, "predict_seconds": 0.001}})
    record = trial_record(trial, ["clean_accuracy", "slope"])
    assert record.legacy and record.complete and record.feasible is True
    assert record.constraint == pytest.approx(-0.03)
    assert (record.learner, record.learner_params) == ("logistic", {"C": 0.5})
    assert record.clean_accuracy == 0.93 and record.slope == pytest.approx(slope)
    assert record.derivative == -6.0 and record.influence == influence and record.n_poison == 15
    assert record.method == "primal-cholesky" and record.predict_seconds == 0.001
    assert record.attack == {"trigger": "badnets"}
    assert record.predicted_backdoor_accuracy is None and record.exact


def test_version_0_1_several_attacks() -> None:
    trial = _trial(values=[0.9, 0.7], user_attrs={
        "derivative": -3.0, "influence": -0.2, "n_poison": 15, "worst_attack": "b", "aggregate": "max",
        "slope:a": 0.1, "slope:b": 0.7,
        "attacks": {"a": {"slope": 0.1, "derivative": -0.3, "influence": -0.02, "n_poison": 15},
                    "b": {"slope": 0.7, "derivative": -3.0, "influence": -0.2, "n_poison": 15}}})
    record = trial_record(trial)
    assert record.worst_attack == "b" and record.slope == pytest.approx(0.7)
    assert record.attack_slope("a") == pytest.approx(0.1) and record.derivative == -3.0


def test_failed_and_running_trials() -> None:
    failed = _trial(state=TrialState.FAIL, user_attrs={RECORD_ATTR: {"format": 1, "fail_reason": "ValueError: x"}})
    record = trial_record(failed)
    assert record.state == "FAIL" and record.fail_reason == "ValueError: x"
    assert record.clean_accuracy is None and record.feasible is None and record.slope is None
    old = _trial(state=TrialState.FAIL, user_attrs={"fail_reason": "ValueError: y"})
    assert trial_record(old).fail_reason == "ValueError: y"
    running = _trial(state=TrialState.RUNNING, params={}, distributions={})
    record = trial_record(running)
    assert record.state == "RUNNING" and record.learner is None and record.attacks == {}


def test_metric_names_choose_the_values() -> None:
    trial = _trial(values=[0.2, 0.95], user_attrs={RECORD_ATTR: {"format": 1, "slope": 0.4,
                                                                  "objective": "predicted_backdoor_accuracy"}})
    record = trial_record(trial, ["predicted_backdoor_accuracy", "clean_accuracy"])
    assert record.clean_accuracy == 0.95 and record.objective_value == 0.2 and record.slope == 0.4


def test_records_are_json() -> None:
    assert jsonable({"a": np.float32(1.5), "b": (1, np.int64(2)), "c": float("nan"), "d": np.arange(2)}) == \
        {"a": 1.5, "b": [1, 2], "c": None, "d": [0, 1]}
    trial = _trial(values=[0.9, 0.1], user_attrs={RECORD_ATTR: {"format": 1, "slope": 0.1, "attacks": {
        "x": {"slope": 0.1, "derivative": -1.0, "details": {"interval": [0.0, 1.0]}}}}})
    out = trial_record(trial).to_dict()
    assert json.loads(json.dumps(out))["attacks"]["x"]["details"] == {"interval": [0.0, 1.0]}
    assert out["derivative"] == -1.0 and out["local_only"] is False
