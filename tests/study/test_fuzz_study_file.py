"""A seeded fuzz of study-file keys: one key at a time gets a hostile TOML value.

Each file is either refused with a RobustHPOError naming the file and the key, or accepted; an
accepted file must build its problem and run a trial that does not fail on its settings (a value
that would fail every trial must be refused up front, issue 12 item 5).
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import optuna
import pytest

from robust_hpo.errors import RobustHPOError
from robust_hpo.objective import trial_record
from robust_hpo.study import build_objective, build_splits, load_data, load_study_config

N_CASES = 150

BASE = """
[study]
name = "fuzz"
n_trials = 2
seed = 0
sampler = "random"

[data]
dataset = "digits"
classes = [3, 8]
n_train = 60
n_test = 30
seed = 0

[attack]
trigger = "badnets"
size = 2
position = "bottom-right"
fraction = 0.1
target = "next"
seed = 0

[search]
learners = ["logistic", "ridge"]

[search.logistic]
C = { low = 0.01, high = 10.0, log = true }

[search.ridge]
C = { low = 0.01, high = 10.0, log = true }

[constraint]
min_accuracy = 0.5

[report]
tolerance = 0.02
"""

KEYS = [
    "study.name", "study.n_trials", "study.timeout", "study.seed", "study.sampler", "study.n_jobs",
    "study.aggregate", "study.threads", "study.heartbeat_interval", "study.grace_period", "study.max_retry",
    "data.dataset", "data.classes", "data.n_train", "data.n_test", "data.seed", "data.image_size",
    "attack.trigger", "attack.size", "attack.position", "attack.fraction", "attack.target", "attack.seed",
    "attack.epsilon", "attack.spacing", "search.learners", "search.logistic.C", "search.ridge.C",
    "constraint.min_accuracy", "constraint.within_best", "report.tolerance", "study.colour",
]

VALUES = ['"a"', '""', "-1", "0", "1", "2.5", "1e308", "nan", "inf", "true", "[]", '[1, "a"]', '["a", "b"]',
          "[3, 8, 5]", "{ x = 1 }", "{ low = 10.0, high = 1.0 }", "4294967296", "9223372036854775807",
          "1979-05-27", '"../../x"', "[[1]]", "[0.5, 2.0]", '"imagefolder"', '"cifar10"', '"tpe"']


def _cases() -> list[tuple[str, str]]:
    everything = [(key, value) for key in KEYS for value in VALUES]
    return random.Random(0).sample(everything, N_CASES)


def _with(key: str, value: str) -> str:
    """BASE with ``key`` set to ``value`` (replaced where the key is, else added to its table)."""
    *table, name = key.split(".")
    header = f"[{'.'.join(table)}]\n"
    lines = BASE.split(header, 1)
    if len(lines) == 1:
        return BASE + f"\n{header}{name} = {value}\n"
    head, rest = lines
    body, sep, tail = rest.partition("\n[")
    body = re.sub(rf"(?m)^{re.escape(name)} = .*$\n?", "", body)
    return f"{head}{header}{name} = {value}\n{body}{sep}{tail}"


def test_the_base_file_runs(tmp_path: Path) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(BASE, encoding="utf-8")
    config = load_study_config(path)
    objective = build_objective(config, build_splits(config))
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert _with("data.seed", "7").count("seed = 7") == 1 and "[report]\ncolour = 1\n" in _with("report.colour", "1")


@pytest.mark.parametrize(("key", "value"), _cases())
def test_hostile_value_is_refused_by_key_or_runs(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(_with(key, value), encoding="utf-8")
    section, last = key.split(".", 1)[0], key.rsplit(".", 1)[1]
    try:
        config = load_study_config(path)
        dataset = load_data(config)
        objective = build_objective(config, build_splits(config, dataset=dataset))
    except RobustHPOError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        assert last in message or f"[{section}]" in message, f"{key} = {value}: the message names neither: {message}"
        return
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{key} = {value}: {type(exc).__name__}: {exc}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(directions=objective.directions,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(objective, n_trials=1, catch=(Exception,))
    trial = study.trials[0]
    reason = trial_record(trial).fail_reason or ""
    assert not reason.startswith("ValidationError"), f"{key} = {value} was accepted but the trial failed: {reason}"
