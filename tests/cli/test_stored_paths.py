"""A storage handed over by someone else does not decide where this process writes: its stored data
root is read only (and said when outside the output root), never downloaded into, and a stored
features cache outside the output root is replaced."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.cli._resolve import stored_path_overrides
from robust_hpo.study import PROBLEM_ATTR, StorageSpec, output_root
from robust_hpo.testing import tiny_study_toml


def test_a_received_journal_writes_nothing_at_its_stored_paths(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    study_file = tmp_path / "s.toml"
    study_file.write_text(tiny_study_toml("received", learners=("logistic",), n_trials=1))
    journal = tmp_path / "received.log"
    assert main(["run", str(study_file), "--storage", str(journal), "--no-progress", "--output",
                 str(tmp_path / "out")]) == 0
    elsewhere = tmp_path / "elsewhere" / "data"  # where the sender's file points
    study = optuna.load_study(study_name="received", storage=StorageSpec(journal=journal).open())
    problem = dict(study.user_attrs[PROBLEM_ATTR])
    problem["location"] = {**problem["location"], "data_root": str(elsewhere)}
    problem["data"] = {**problem["data"], "download": True}
    study.set_user_attr(PROBLEM_ATTR, problem)
    capsys.readouterr()
    assert main(["report", "--storage", str(journal), "--output", str(tmp_path / "report")]) == 0
    assert main(["curves", "--storage", str(journal), "--output", str(tmp_path / "curves")]) == 0
    err = capsys.readouterr().err
    assert f"reading the data from {elsewhere}, the data folder stored with the study" in err
    assert not (tmp_path / "elsewhere").exists()


def test_a_stored_features_cache_outside_the_root_is_replaced() -> None:
    root = output_root()
    notes: list[str] = []
    stored = {"location": {"data_root": None, "features_cache_dir": "/etc/evil"}, "features": {"model": "m"},
              "data": {"download": True}}
    result = stored_path_overrides(stored, {}, report=notes.append)
    assert result == {"data.download": False, "features.cache_dir": str(root / "features_cache")}
    assert notes and "/etc/evil" in notes[0] and "not used" in notes[0]
    inside = {**stored, "location": {"features_cache_dir": str(root / "mine")}}
    assert stored_path_overrides(inside, {}, report=notes.append) == {"data.download": False}
    assert stored_path_overrides(stored, {"features.cache_dir": "/x", "data.download": True},
                                 report=notes.append) == {}
