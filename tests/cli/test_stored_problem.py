"""``--storage`` alone: the analysis commands rebuild exactly the stored attacks (two invisible grids here,
not the default BadNets) and analyse each trial on the attack that decided its objective; report, explain
and verify use the study's one tolerance."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from sklearn.linear_model import RidgeClassifier

from robust_hpo.analysis import stored_verification, verify_key
from robust_hpo.attacks import InvisibleGrid, ThreatModel, poison_many
from robust_hpo.cli import main
from robust_hpo.datasets import load_dataset
from robust_hpo.study import StorageSpec, load_study_config, pareto_trials, recommend, run_study
from robust_hpo.objective import trial_record

STUDY = """
[study]
name = "grids"
n_trials = 8
seed = 0
sampler = "random"

[data]
dataset = "digits"
classes = [3, 8]
n_train = 120
n_test = 50

[[attacks]]
name = "grid-5"
trigger = "invisible_grid"
epsilon = 0.1
spacing = 2
fraction = 0.05

[[attacks]]
name = "grid-10"
trigger = "invisible_grid"
epsilon = 0.1
spacing = 2
fraction = 0.1

[search]
learners = ["ridge"]

[report]
tolerance = 0.05
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, optuna.Study]:
    folder = tmp_path_factory.mktemp("grids")
    path = folder / "grids.toml"
    path.write_text(STUDY)
    journal = folder / "out" / "study.log"
    run_study(load_study_config(path), storage=str(journal), output=folder / "out", progress=False)
    study = optuna.load_study(study_name="grids", storage=StorageSpec(journal=journal).open())
    return journal, study


def _independent_splits():
    """The study's splits, built here from the library's parts (not from the stored problem)."""
    dataset = load_dataset("digits", classes=(3, 8), n_train=120, n_test=50, seed=0)
    threats = [ThreatModel(trigger=InvisibleGrid(epsilon=0.1, spacing=2), fraction=f, name=n)
               for n, f in (("grid-5", 0.05), ("grid-10", 0.1))]
    return poison_many(dataset, threats, seed=0).splits


def test_curves_from_the_storage_print_each_trials_stored_slope(stored, tmp_path, capsys):
    journal, study = stored
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path), "--betas", "0", "0.1"]) == 0
    out = capsys.readouterr().out
    front = pareto_trials(study)
    assert front
    for trial in front:
        worst = trial_record(trial).worst_attack
        assert trial.values[1] == trial_record(trial).attack_slope(worst)
        line = next(l for l in out.splitlines()  # the recommended trial is labelled so
                    if re.match(rf"trial {trial.number}( \(recommended\))?:", l) and "slope " in l)
        assert f"on attack '{worst}'" in line
        printed = float(re.search(r": slope (-?\d+\.\d+)", line).group(1))
        assert printed == pytest.approx(trial.values[1], abs=5e-5)
    # another attack on demand: its own stored slope
    trial = front[0]
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path), "--betas", "0", "0.1",
                 "--trial", str(trial.number), "--attack", "grid-5"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "slope " in l and "on attack 'grid-5'" in l)
    printed = float(re.search(r": slope (-?\d+\.\d+)", line).group(1))
    assert printed == pytest.approx(trial_record(trial).attack_slope("grid-5"), abs=5e-5)


def test_explain_from_the_storage_uses_the_stored_attack_and_tolerance(stored, tmp_path, capsys):
    journal, study = stored
    assert main(["explain", "--storage", str(journal), "--output", str(tmp_path), "-k", "3"]) == 0
    out = capsys.readouterr().out
    chosen = recommend(study, 0.05).trial  # the study's [report] tolerance
    assert f"trial {chosen.number}:" in out
    assert f"explained on attack '{trial_record(chosen).worst_attack}'" in out
    assert "inside the trigger patch" not in out  # a grid has no patch window
    assert (tmp_path / "explain_maps.html").is_file()
    assert main(["report", "--storage", str(journal), "--output", str(tmp_path)]) == 0
    assert f"Recommended: trial {chosen.number} " in capsys.readouterr().out


def test_verify_from_the_storage_retrains_on_each_trials_attack(stored, tmp_path, capsys):
    journal, study = stored
    assert main(["verify", "--storage", str(journal), "--output", str(tmp_path), "--trials", "all"]) == 0
    out = capsys.readouterr().out
    assert "within 0.05 of the best" in out
    splits = _independent_splits()
    stored = optuna.load_study(study_name="grids", storage=StorageSpec(journal=journal).open())
    records = {t.number: t for t in stored_verification(stored)}
    assert sorted(records) == [t.number for t in study.trials if t.state.name == "COMPLETE"]
    for trial in study.trials:
        record = records[trial.number]
        worst = trial_record(trial).worst_attack
        assert record.attack == worst and record.slope == trial.values[1]
        split = splits[worst]
        est = RidgeClassifier(alpha=1.0 / (2.0 * trial.params["ridge.C"]))
        est.fit(split.X_train_poisoned.reshape(len(split.y_train_poisoned), -1), split.y_train_poisoned)
        backdoor = float(np.mean(est.predict(split.X_trigger.reshape(len(split.y_trigger), -1)) == split.y_trigger))
        assert record.backdoor_accuracy == pytest.approx(backdoor)


def test_an_unknown_attack_is_refused(stored, tmp_path, capsys):
    journal, _ = stored
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path), "--attack", "badnets"]) == 2
    assert "--attack must be 'worst', 'all' or one of ['grid-5', 'grid-10']" in capsys.readouterr().err


def test_every_command_says_which_attack_and_takes_all(stored, tmp_path, capsys):
    journal, study = stored
    front = pareto_trials(study)
    # default: each trial's worst attack, said in the output and in the figure's title
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path), "--betas", "0", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("analysed on each trial's worst attack")
    assert "each trial's worst attack" in (tmp_path / "curves.html").read_text()
    # all: every trial on every attack, each with its own stored slope
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path), "--betas", "0", "0.1",
                 "--attack", "all"]) == 0
    out = capsys.readouterr().out
    assert "analysed on every attack of the study ('grid-5', 'grid-10')" in out
    for trial in front:
        for attack in ("grid-5", "grid-10"):
            line = next(l for l in out.splitlines()
                        if re.match(rf"trial {trial.number}( \(recommended\))?:", l) and f"on attack '{attack}'" in l
                        and "slope " in l)
            printed = float(re.search(r": slope (-?\d+\.\d+)", line).group(1))
            assert printed == pytest.approx(trial_record(trial).attack_slope(attack), abs=5e-5)
    assert "every attack" in (tmp_path / "curves_all-attacks.html").read_text()
    # a named attack: in the file name and the title
    assert main(["deviation", "--storage", str(journal), "--output", str(tmp_path), "--betas", "0", "0.1",
                 "--attack", "grid-10"]) == 0
    assert "analysed on attack 'grid-10' (--attack)" in capsys.readouterr().out
    assert "attack 'grid-10'" in (tmp_path / "deviation_grid-10.html").read_text()
    assert main(["explain", "--storage", str(journal), "--output", str(tmp_path), "-k", "2", "--attack", "all"]) == 0
    assert {"explain_maps_grid-5.html", "explain_maps_grid-10.html", "explain_influence_grid-5.html",
            "explain_influence_grid-10.html"} <= {p.name for p in tmp_path.iterdir()}


def test_verify_and_heatmap_on_every_attack(stored, tmp_path, capsys):
    journal, study = stored
    assert main(["verify", "--storage", str(journal), "--output", str(tmp_path), "--trials", "all",
                 "--attack", "all"]) == 0
    out = capsys.readouterr().out
    assert "verifying on attack 'grid-5'" in out and "verifying on attack 'grid-10'" in out
    reloaded = optuna.load_study(study_name="grids", storage=StorageSpec(journal=journal).open())
    assert {verify_key(t.number, a) for t in study.trials for a in ("grid-5", "grid-10")} <= set(
        reloaded.user_attrs["robust_hpo:verify"]["trials"])  # one record per trial and attack
    splits = _independent_splits()
    for attack in ("grid-5", "grid-10"):
        records = {t.number: t for t in stored_verification(reloaded, attack=attack)}
        assert sorted(records) == [t.number for t in study.trials]
        for trial in study.trials:
            record = records[trial.number]
            assert record.attack == attack and record.slope == trial_record(trial).attack_slope(attack)
            split = splits[attack]
            est = RidgeClassifier(alpha=1.0 / (2.0 * trial.params["ridge.C"]))
            est.fit(split.X_train_poisoned.reshape(len(split.y_train_poisoned), -1), split.y_train_poisoned)
            backdoor = float(np.mean(est.predict(split.X_trigger.reshape(len(split.y_trigger), -1))
                                     == split.y_trigger))
            assert record.backdoor_accuracy == pytest.approx(backdoor)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"verification_grid-5.html", "verification_grid-10.html", "verification_grid-5.csv",
            "heatmap_ridge_grid-5.html", "heatmap_ridge_grid-10.html", "index.html"} <= names
    assert main(["heatmap", "--storage", str(journal), "--output", str(tmp_path), "--attack", "grid-10"]) == 0
    assert "heatmaps of 8 verified trials on attack 'grid-10'" in capsys.readouterr().out
    assert "on attack 'grid-10'" in (tmp_path / "heatmap_ridge_grid-10.html").read_text()
