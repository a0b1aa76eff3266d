"""Several threat models per study: ``[[attacks]]``, ``[study] aggregate``, per-attack slopes, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.datasets import load_dataset
from robust_hpo.learners import get_family
from robust_hpo.study import StorageSpec, build_objective, build_splits, load_study_config
from robust_hpo.attacks import ThreatModel, poison_many
from robust_hpo.objective import evaluate_threats, trial_record

MULTI = """
[study]
name = "multi"
n_trials = 4
seed = 0

[data]
dataset = "digits"
classes = [3, 8]
n_train = 80
n_test = 40

[[attacks]]
name = "small"
size = 2

[[attacks]]
name = "big"
size = 4
fraction = 0.05
seed = 3

[[attacks]]
trigger = "invisible_grid"
epsilon = 0.1

[search]
learners = ["logistic", "ridge"]
"""


def _write(tmp_path: Path, text: str = MULTI) -> Path:
    path = tmp_path / "multi.toml"
    path.write_text(text)
    return path


def test_three_attacks_end_to_end_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    assert main(["run", str(path), "--no-progress", "--storage", str(tmp_path / "out" / "study.log")]) == 0
    study = optuna.load_study(study_name="multi", storage=StorageSpec(journal=tmp_path / "out" / "study.log").open())
    names = ["small", "big", "grid-eps0.1-10%"]
    # an independent computation: the same data, poison_many and one refit per trial
    dataset = load_dataset("digits", classes=(3, 8), n_train=80, n_test=40, seed=0)
    threats = [ThreatModel.from_dict({"size": 2, "name": "small", "seed": 0}),
               ThreatModel.from_dict({"size": 4, "fraction": 0.05, "name": "big", "seed": 3}),
               ThreatModel.from_dict({"trigger": "invisible_grid", "epsilon": 0.1, "seed": 0})]
    multi = poison_many(dataset, threats, seed=0)
    space = load_study_config(path).search.space()
    assert len(study.trials) == 4
    for trial in study.trials:
        record = trial_record(trial)
        per_attack = {n: record.attack_slope(n) for n in names}
        assert trial.values[1] == max(per_attack.values())
        assert record.worst_attack == max(per_attack, key=per_attack.__getitem__)
        learner, params = space.split_params(trial.params)
        fitted = get_family(learner).fit(params, multi.first.X_clean, multi.first.y_clean, seed=0)
        expected = evaluate_threats(fitted, multi)
        for n in names:
            np.testing.assert_allclose(per_attack[n], expected[n].slope, rtol=1e-9, atol=1e-12)
        assert record.attack["name"] == record.worst_attack
    stored = study.user_attrs["robust_hpo:problem"]
    assert [a["name"] for a in stored["attacks"]] == names and stored["aggregate"] == "max"


def test_mean_aggregate_and_shared_clean_set(tmp_path: Path) -> None:
    config = load_study_config(_write(tmp_path, MULTI.replace('seed = 0\n', 'seed = 0\naggregate = "mean"\n', 1)))
    splits = build_splits(config)
    assert list(splits) == ["small", "big", "grid-eps0.1-10%"]
    assert splits["small"].X_clean is splits["big"].X_clean
    assert len(splits["small"].y_poison) == 8 and len(splits["big"].y_poison) == 4
    objective = build_objective(config, splits)
    evaluation = objective.evaluate_config("logistic", {"C": 1.0})
    assert evaluation.slope == pytest.approx(np.mean([r.slope for r in evaluation.slopes.values()]), abs=1e-15)
    assert evaluation.slope < max(r.slope for r in evaluation.slopes.values())


@pytest.mark.parametrize(("old", "new", "message"), [
    ("[[attacks]]\nname = \"small\"", "[attack]\nsize = 2\n[[attacks]]\nname = \"small\"",
     r"give either \[attack\] \(one attack\) or \[\[attacks\]\] \(several\), not both"),
    ("size = 4\n", "size = 0\n", r"attacks\[1\].size must be a positive integer \(patch side in pixels\), got 0"),
    ("size = 4\n", "colour = 4\n", r"unknown key 'attacks\[1\].colour'"),
    ("epsilon = 0.1", "epsilon = 0.1\nsize = 3", r"attacks\[2\].size applies to trigger 'badnets'"),
    ("size = 4\n", "size = 4\nposition = 'middle'\n", r"attacks\[1\].position must be one of .*got 'middle'"),
    ('name = "big"', 'name = "small"', r"attacks: names must be distinct, repeated \['small'\]"),
    ('name = "big"', 'name = "big"\ntarget = "0"', r"attacks: every attack must have the same target"),
    ('name = "big"', 'name = "big"\ntarget = 1.5', r"attacks\[1\].target must be 'next', a non-empty string or a "
                                                   r"non-negative integer, got 1.5"),
    ('seed = 0\n', 'seed = 0\naggregate = "min"\n', r"study.aggregate must be one of \['max', 'mean'\]"),
    ("[search]", "[attack]\nname = 'x'\n[search]", r"give either|attack.name applies to \[\[attacks\]\] entries only"),
])
def test_attack_errors_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MULTI
    path = _write(tmp_path, MULTI.replace(old, new, 1))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{message}"):
        load_study_config(path)


def test_single_attack_name_is_refused(tmp_path: Path) -> None:
    text = MULTI[:MULTI.index("[[attacks]]")] + "[attack]\nname = 'x'\n[search]\nlearners = ['ridge']\n"
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=r"attack.name applies to \[\[attacks\]\] entries only"):
        load_study_config(path)


def test_attacks_must_be_an_array_of_tables(tmp_path: Path) -> None:
    top = "attacks = 3\n" + MULTI[:MULTI.index("[[attacks]]")] + "[search]\nlearners = ['ridge']\n"
    path = _write(tmp_path, top)
    with pytest.raises(ValueError, match=r"attacks must be an array of tables \[\[attacks\]\], got 3"):
        load_study_config(path)
