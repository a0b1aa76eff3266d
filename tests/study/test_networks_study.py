"""Network studies over epochs and width run from the CLI with either slope method."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from robust_hpo.cli import main
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
