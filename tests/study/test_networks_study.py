"""Network studies over epochs and width run from the CLI with either slope method."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import numpy as np

from robust_hpo.attacks import BadNets, poison
from robust_hpo.cli import main
from robust_hpo.datasets import load_dataset
from robust_hpo.learners import get_family
from robust_hpo.objective import BackdoorSlopeObjective
from robust_hpo.search_space import SearchSpace
from robust_hpo.study import load_study_config

STUDIES = Path(__file__).resolve().parents[2] / "studies"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_study_files_parse_with_epochs_and_width():
    for name, learner in (("mlp_digits.toml", "mlp"), ("resnet18_imagenette.toml", "resnet18")):
        space = load_study_config(STUDIES / name).search.space().learners[learner]
        assert {"epochs", "width"} <= set(space)
        assert space["width"].log


@pytest.mark.parametrize("learner, method", [("mlp", "influence-cg"), ("mlp_fd", "finite-difference")])
def test_mlp_study_runs_from_the_cli(tmp_path, capsys, learner, method):
    text = (STUDIES / "mlp_digits.toml").read_text()
    text = text.replace('learners = ["mlp"]', f'learners = ["{learner}"]').replace(
        "[search.mlp]", f"[search.{learner}]").replace("high = 40", "high = 6")
    study = tmp_path / "study.toml"
    study.write_text(text)
    assert main(["run", str(study), "--n-trials", "3", "--output", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert "Pareto front" in capsys.readouterr().out
    with (tmp_path / "out" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert all(method in ",".join(r.values()) for r in rows)  # the slope method is recorded per trial
    assert all(0 <= float(r["values_slope"]) < 1 for r in rows)
    assert all(2 <= int(r[f"params_{learner}.epochs"]) <= 6 for r in rows)


def test_a_network_trial_carries_margins_scaled_on_the_clean_test_set():
    """The objective hands the attack's clean test set to a network learner (the margins' scale)."""
    split = poison(load_dataset("digits", classes=[3, 8], seed=0), BadNets(size=2), fraction=0.1, seed=0)
    mlp = get_family("mlp")
    objective = BackdoorSlopeObjective(split, space=SearchSpace.from_families([mlp]))
    params = {"epochs": 3, "width": 8, "lr": 0.05}
    result = next(iter(objective.evaluate_config("mlp", params).slopes.values()))
    fitted = mlp.fit(params, split.X_clean, split.y_clean, seed=0)
    assert result.margins is not None and result.margins.scale > 0
    assert result.baseline_backdoor_accuracy == np.mean(fitted.predict(split.X_trigger) == split.y_trigger)
    assert result.normalised_margin is not None and result.predicted_backdoor_accuracy is not None


def test_run_checks_the_recommended_network_on_poison_and_report_uses_it(tmp_path, capsys):
    """After a network study, `run` trains the recommendation once on the poisoned set (the shortlist
    check); the stored value equals an independent training with the study's seed, the recommended
    trial is a checked one, and `report` (reading the study) recommends the same trial."""
    import optuna

    from robust_hpo.learners import get_family
    from robust_hpo.objective import recommend
    from robust_hpo.objective import SHORTLIST_ATTR, checked_backdoor
    from robust_hpo.study import build_splits, run_study
    from robust_hpo.search_space import learner_config

    text = (STUDIES / "mlp_digits.toml").read_text().replace("high = 40", "high = 8")
    path = tmp_path / "study.toml"
    path.write_text(text)
    config = load_study_config(path)
    outcome = run_study(config, n_trials=4, output=tmp_path / "out", storage=str(tmp_path / "out" / "s.log"),
                        progress=False)
    checked = checked_backdoor(outcome.study)
    assert checked and outcome.study.user_attrs[SHORTLIST_ATTR]["method"] == "poisoned-training"
    chosen = recommend(outcome.study, config.report.tolerance)
    assert chosen.record.number in checked and chosen.checked_backdoor_accuracy == checked[chosen.record.number]
    (split,) = build_splits(config).values()
    for number, value in checked.items():
        _, params = learner_config(outcome.study.trials[number].params)
        fitted = get_family("mlp").fit(params, split.X_train_poisoned, split.y_train_poisoned, seed=config.data.seed)
        assert value == pytest.approx(np.mean(fitted.predict(split.X_trigger) == split.y_trigger), abs=1e-6)
    assert main(["report", str(path), "--storage", str(tmp_path / "out" / "s.log"),
                 "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"Recommended: trial {chosen.record.number} (" in out and "after one training on the poisoned set" in out
    # without the stored check, recommend ranks by the estimates alone
    assert recommend(list(outcome.study.trials), config.report.tolerance).checked == {}
    assert isinstance(outcome.study, optuna.Study)
