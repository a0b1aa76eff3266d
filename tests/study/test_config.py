"""Study files: the quickstart parses; every TOML error names the file and the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution

from robust_hpo.objective import AccuracyConstraint
from robust_hpo.study import (
    AttackSettings,
    DataSettings,
    SearchSettings,
    StudySettings,
    load_study_config,
    stored_problem,
)

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "studies" / "quickstart.toml"

OLD = 'learners = ["logistic", "rbf_svm"]'

MINIMAL = """
[study]
name = "t"

[search]
learners = ["logistic", "rbf_svm"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_quickstart_parses() -> None:
    config = load_study_config(QUICKSTART)
    assert config.study.name == "quickstart"
    assert config.study.n_trials >= 50
    assert config.data.dataset == "digits" and len(config.data.classes) == 2
    assert [a.trigger for a in config.attacks] == ["badnets"]
    assert config.search.learners == ("logistic", "ridge", "linear_svm", "rbf_svm")
    space = config.search.space()
    assert set(space.learners["rbf_svm"]) == {"C", "gamma"}
    assert space.learners["linear_svm"]["C"] == FloatDistribution(1e-2, 1e2, log=True)  # overridden
    assert config.constraint is not None
    json.dumps(stored_problem(config))  # storable with the study


def test_defaults_of_a_minimal_file(tmp_path: Path) -> None:
    config = load_study_config(_write(tmp_path, MINIMAL))
    assert config.study == StudySettings(name="t")
    assert config.data == DataSettings() and config.attacks == (AttackSettings(),)
    assert config.constraint is None and config.report.tolerance == 0.01
    assert config.path == tmp_path / "study.toml"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "t"', 'name = "t"\nstorage = "db/journal.log"') + '\n[data]\nroot = "data"\n'
    config = load_study_config(_write(tmp_path, text))
    assert config.study.storage == str(tmp_path / "db" / "journal.log")
    assert config.data.root == str(tmp_path / "data")
    url = load_study_config(_write(tmp_path, MINIMAL.replace('name = "t"', 'name = "t"\nstorage = "sqlite:///x.db"')))
    assert url.study.storage == "sqlite:///x.db"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"study file not found: {tmp_path / 'nope.toml'}")):
        load_study_config(tmp_path / "nope.toml")


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "[study\nname = 1")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not valid TOML")):
        load_study_config(path)


@pytest.mark.parametrize(("edit", "message"), [
    (("[study]", "[study]\ncolour = 1"), "unknown key 'study.colour'"),
    (("[search]", "[data]\nsize = 3\n[search]"), "unknown key 'data.size'"),
    (("[search]", "[attack]\ntriger = 'badnets'\n[search]"), "unknown key 'attack.triger'"),
    (("[search]", "[report]\ntol = 0.1\n[search]"), "unknown key 'report.tol'"),
    (("[search]", "[constraint]\nmin_acc = 0.1\n[search]"), "unknown key 'constraint.min_acc'"),
    (("[search]", "[extra]\n[search]"), r"unknown section \[extra\]"),
    (('name = "t"', ""), "study.name is required"),
    ((OLD, ""), "search.learners is required"),
    ((OLD, 'learners = ["logistic", "svm"]'), "search.learners: unknown learner 'svm'"),
    ((OLD, 'learners = []'), "search.learners must be a non-empty list"),
    ((OLD, 'learners = ["ridge", "ridge"]'), "search.learners has duplicates"),
    ((OLD, 'learners = ["logistic"]\n[search.rbf_svm]\nC = 1.0'),
     r"unknown key 'search.rbf_svm'; expected 'learners', 'scale' or a table named after one of search.learners"),
    ((OLD, 'learners = ["rbf_svm"]\n[search.rbf_svm]\ndegree = 3'),
     r"unknown key 'search.rbf_svm.degree': learner 'rbf_svm' has parameters \['C', 'gamma'\]"),
    ((OLD, 'learners = ["rbf_svm"]\n[search.rbf_svm]\nC = {low = 10.0, high = 1.0}'),
     r"search.rbf_svm.C: low \(10.0\) must be < high \(1.0\)"),
    ((OLD, 'learners = ["rbf_svm"]\n[search.rbf_svm]\ngamma = {low = 0.0, high = 1.0}'),
     r"search.rbf_svm.gamma: low \(0.0\) must be > 0 when log = true"),
    ((OLD, 'learners = ["fake_net"]\n[search.fake_net]\nwidth = {low = 8.5, high = 64}'),
     "search.fake_net.width.low must be an integer for type 'int'"),
    (('name = "t"', 'name = "t"\nn_trials = 0'), "study.n_trials must be a positive integer, got 0"),
    (('name = "t"', 'name = "t"\nn_trials = 5.5'), "study.n_trials must be a positive integer, got 5.5"),
    (('name = "t"', 'name = "t"\ntimeout = -1'), "study.timeout must be a finite number > 0, got -1"),
    (('name = "t"', 'name = "t"\nsampler = "cmaes"'), "study.sampler must be one of"),
    (('name = "t"', 'name = "t"\nobjective = "margin"'),
     r"study.objective must be one of \['slope', 'predicted_backdoor_accuracy', 'normalised_margin'\], got 'margin'"),
    (('name = "t"', 'name = "t"\nseed = -1'), r"study.seed must be an integer in \[0, 4294967295\] \(NumPy's seed range\), got -1"),
    (('name = "t"', 'name = "t"\nn_jobs = 0'), "study.n_jobs must be a positive integer or -1, got 0"),
    (('name = "t"', 'name = "t"\nstorage = 3'), "study.storage must be a non-empty string"),
    (("[search]", "[data]\nclasses = [3]\n[search]"), "data.classes must be a list of at least two"),
    (("[search]", "[data]\nn_train = 0\n[search]"), "data.n_train must be a positive integer, got 0"),
    (("[search]", "[data]\ndownload = 1\n[search]"), "data.download must be true or false"),
    (("[search]", "[attack]\nfraction = 1.0\n[search]"), r"attack.fraction must be a number in the open interval \(0, 1\), got 1.0"),
    (("[search]", "[attack]\ntrigger = 'blend'\n[search]"), "attack.trigger must be one of"),
    (("[search]", "[attack]\nepsilon = 0.1\n[search]"),
     "attack.epsilon applies to trigger 'invisible_grid', not 'badnets'"),
    (("[search]", "[attack]\nsize = 0\n[search]"), r"attack.size must be a positive integer \(patch side in pixels\), got 0"),
    (("[search]", "[constraint]\nmin_accuracy = 2.0\n[search]"),
     r"constraint.min_accuracy must be a number in \[0, 1\]"),
    (("[search]", "[constraint]\nmin_accuracy = 0.9\nwithin_best = 0.1\n[search]"),
     "constraint: give exactly one of min_accuracy or within_best"),
    (("[search]", "[report]\ntolerance = -0.1\n[search]"), r"report.tolerance must be a number in \[0, 1\]"),
    (("[study]", "report = 3\n[study]"), r"report must be a table \[report\], got 3"),
])
def test_errors_name_file_and_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in MINIMAL
    path = _write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*({message})"):
        load_study_config(path)


def test_missing_sections(tmp_path: Path) -> None:
    path = _write(tmp_path, '[search]\nlearners = ["logistic"]\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}: missing section [study]")):
        load_study_config(path)


def test_settings_objects_validate_in_code() -> None:
    with pytest.raises(ValueError, match="study.n_trials or study.timeout must be given"):
        StudySettings(name="x", n_trials=None)
    with pytest.raises(ValueError, match="search.fake: learner 'fake' is not in search.learners"):
        SearchSettings(learners=("logistic",), overrides={"fake": {}})
    assert AttackSettings(trigger="invisible_grid", params={"epsilon": 0.05}).params == {"epsilon": 0.05, "spacing": 4}
    assert AccuracyConstraint(within_best=0.1).to_dict() == {"within_best": 0.1}
