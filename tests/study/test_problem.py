"""The stored problem: StudyConfig -> JSON -> StudyConfig loses nothing, for every study file; version 0.1's
format is read; differences are named by section; the identity and the location of the data stay apart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import distribution_to_json

from robust_hpo.errors import StorageError
from robust_hpo.study import (
    PROBLEM_ATTR,
    StudyLocation,
    StorageSpec,
    build_objective,
    config_from_problem,
    load_study_config,
    open_study,
    problem_differences,
    stored_problem,
)

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").rglob("*.toml"))


def _same_problem(a, b) -> None:
    """Every section that defines a problem, compared field by field."""
    assert a.data == b.data
    assert a.attacks == b.attacks
    assert a.threat_names() == b.threat_names()
    assert a.features == b.features
    assert {k: dict(v) for k, v in a.options.items()} == {k: dict(v) for k, v in b.options.items()}
    assert a.constraint == b.constraint
    assert a.study.aggregate == b.study.aggregate
    assert a.study.objective == b.study.objective
    assert a.report == b.report
    space_a, space_b = a.search.space().learners, b.search.space().learners
    assert list(space_a) == list(space_b)
    for learner in space_a:
        assert {p: distribution_to_json(d) for p, d in space_a[learner].items()} == \
               {p: distribution_to_json(d) for p, d in space_b[learner].items()}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(REPO / "studies")))
def test_every_study_file_round_trips(path: Path) -> None:
    config = load_study_config(path)
    stored = stored_problem(config)
    json.dumps(stored)
    back = config_from_problem(json.loads(json.dumps(stored)), name=config.study.name)
    _same_problem(config, back)
    assert stored_problem(back) == stored
    assert problem_differences(stored, stored_problem(back)) == []


MULTI = """
[study]
name = "m"
aggregate = "mean"
objective = "predicted_backdoor_accuracy"

[data]
dataset = "digits"
classes = [3, 8]
n_train = 80
n_test = 30
root = "data"

[[attacks]]
size = 2

[[attacks]]
name = "grid"
trigger = "invisible_grid"
epsilon = 0.2
fraction = 0.05

[search]
learners = ["logistic", "rbf_svm"]

[search.rbf_svm]
C = { low = 1.0, high = 10.0, log = true }
gamma = 0.01

[features]
model = "resnet18"
weights = "none"
batch_size = 8
cache_dir = "cache"

[constraint]
within_best = 0.05

[report]
tolerance = 0.03
"""


def _config(tmp_path: Path, text: str = MULTI):
    path = tmp_path / "m.toml"
    path.write_text(text)
    return load_study_config(path)


def test_every_section_survives(tmp_path: Path) -> None:
    config = _config(tmp_path)
    stored = stored_problem(config)
    assert stored["data"]["dataset"] == "digits" and "root" not in stored["data"]
    assert stored["location"] == {"data_root": str(tmp_path / "data"), "features_cache_dir": str(tmp_path / "cache"),
                                  "features_batch_size": 8}
    assert [a["name"] for a in stored["attacks"]] == ["badnets-2px-bottom-right-10%", "grid"]
    assert stored["attacks"][1] == {"name": "grid", "trigger": "invisible_grid", "fraction": 0.05, "target": "next",
                                    "seed": 0, "epsilon": 0.2, "spacing": 4}
    back = config_from_problem(stored, name="m")
    _same_problem(config, back)
    assert back.features.cache_dir == str(tmp_path / "cache") and back.features.batch_size == 8
    assert back.search.space().learners["rbf_svm"]["gamma"].low == 0.01


def test_differences_are_named_by_section(tmp_path: Path) -> None:
    config = _config(tmp_path)
    stored = stored_problem(config)
    attacks = (config.attacks[0], dataclasses.replace(config.attacks[1], fraction=0.1))
    assert problem_differences(stored, stored_problem(dataclasses.replace(config, attacks=attacks))) == ["[[attacks]]"]
    features = dataclasses.replace(config.features, weights="DEFAULT", cache_dir=None)
    assert problem_differences(stored, stored_problem(dataclasses.replace(config, features=features))) == ["[features]"]
    # where the data lie is not the problem: what they are is (their content, when recorded)
    data = dataclasses.replace(config.data, root="elsewhere")
    assert problem_differences(stored, stored_problem(dataclasses.replace(config, data=data))) == []
    study = dataclasses.replace(config.study, objective="slope")
    assert problem_differences(stored, stored_problem(dataclasses.replace(config, study=study))) == \
        ["[study] objective"]
    # stored before the key existed: the slope
    older = {k: v for k, v in stored.items() if k != "objective"}
    assert config_from_problem(older, name="m").study.objective == "slope"
    # how the features are computed and the report tolerance do not define the problem
    features = dataclasses.replace(config.features, batch_size=64, cache_dir=None)
    report = dataclasses.replace(config.report, tolerance=0.2)
    assert problem_differences(stored, stored_problem(dataclasses.replace(config, features=features,
                                                                         report=report))) == []


def _version_01(config) -> dict:
    """The problem as robust_hpo 0.1 stored it (one [attack], root inside [data], no format)."""
    stored = stored_problem(config)
    attack = {k: v for k, v in stored["attacks"][0].items() if k != "name"}
    old_attack = {"trigger": attack.pop("trigger"), "fraction": attack.pop("fraction"),
                  "target": attack.pop("target"), "seed": attack.pop("seed"),
                  "size": None, "position": None, "epsilon": None, "spacing": None, **attack}
    return {"data": {**stored["data"], "root": stored["location"]["data_root"]}, "attack": old_attack,
            "search": stored["search"], "constraint": stored["constraint"]}


def test_version_01_problems_are_read_and_resume(tmp_path: Path) -> None:
    text = MULTI[:MULTI.index("[[attacks]]")] + "[attack]\nsize = 2\n[search]\nlearners = ['ridge']\n"
    text = text.replace('aggregate = "mean"\n', "").replace('objective = "predicted_backdoor_accuracy"\n', "")
    config = _config(tmp_path, text)
    old = _version_01(config)
    assert problem_differences(old, stored_problem(config)) == []
    assert config_from_problem(old, name="m").attacks == config.attacks
    # a study created by 0.1 resumes with the same study file
    location = StudyLocation(name="m", output=tmp_path, storage=StorageSpec(journal=tmp_path / "study.log"))
    study = optuna.create_study(study_name="m", storage=location.storage.open(),
                                directions=["maximize", "minimize"])
    study.set_user_attr(PROBLEM_ATTR, old)
    objective = build_objective(dataclasses.replace(config, features=None, data=dataclasses.replace(
        config.data, root=None)))
    with pytest.raises(StorageError, match=r"different problem \(\[data\] differ"):
        open_study(location, objective=objective, problem=stored_problem(dataclasses.replace(
            config, data=dataclasses.replace(config.data, n_train=81))))
    resumed = open_study(location, objective=objective, problem=stored_problem(config))
    assert resumed.user_attrs[PROBLEM_ATTR] == old  # left as it was


def test_an_unreadable_problem_names_the_study() -> None:
    with pytest.raises(StorageError, match=r"study 'x': its stored problem is not readable"):
        config_from_problem({"format": 2, "data": {}}, name="x")
    with pytest.raises(StorageError, match="format 9"):
        config_from_problem({"format": 9}, name="x")


def test_data_fingerprint_names_the_arrays_that_differ() -> None:
    from robust_hpo.datasets import load_dataset
    from robust_hpo.study._problem import content_differences, data_fingerprint

    dataset = load_dataset("digits", classes=(3, 8), n_train=60, n_test=30)
    stored = data_fingerprint(dataset)
    assert stored == data_fingerprint(load_dataset("digits", classes=(3, 8), n_train=60, n_test=30))
    assert stored["x_train"]["shape"] == [60, 1, 8, 8] and stored["x_train"]["dtype"] == "float32"
    assert content_differences(stored, stored) == []
    dataset.X_train[5, 0, 2, 2] += 1 / 255  # one pixel, one grey level
    assert [d.split(":")[0] for d in content_differences(stored, data_fingerprint(dataset))] == ["training images"]
    fewer = data_fingerprint(load_dataset("digits", classes=(3, 8), n_train=60, n_test=20))
    differences = content_differences(stored, fewer)
    assert "test images: shape (20, 1, 8, 8) here, (30, 1, 8, 8) stored" in differences
    assert "test labels: shape (20,) here, (30,) stored" in differences
    assert content_differences(None, stored) == [] and content_differences(stored, None) == []
