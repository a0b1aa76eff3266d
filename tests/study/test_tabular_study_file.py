"""studies/tabular.toml: the shipped tabular study runs offline and every trial completes."""

from __future__ import annotations

from pathlib import Path

import optuna

from robust_hpo.objective import recommend
from robust_hpo.study import StorageSpec, load_study_config, run_study

TABULAR = Path(__file__).resolve().parents[2] / "studies" / "tabular.toml"


def test_tabular_study_runs(tmp_path: Path) -> None:
    config = load_study_config(TABULAR, overrides={"study.n_trials": 12})
    assert config.data.dataset == "breast_cancer" and config.attacks[0].trigger == "features"
    assert config.attacks[0].target == "benign"
    run_study(config, storage=str(tmp_path / "study.log"), output=tmp_path, progress=False)
    study = optuna.load_study(study_name="tabular", storage=StorageSpec(journal=tmp_path / "study.log").open())
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 12
    assert recommend(study, config.report.tolerance) is not None
