"""``except RobustHPOError`` catches what the library raises on bad input: a broad sample of bad API calls
and bad study files (and each keeps the built-in base it had, so ``except ValueError`` still works)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model import Perceptron

import robust_hpo as rh
from robust_hpo.analysis import backdoor_curve, bin_trials, explain_maps, paper_grid, verify_study
from robust_hpo.attacks import InvisibleGrid, ThreatModel, make_trigger, target_labels, threat_grid
from robust_hpo.cli import main
from robust_hpo.datasets.pretrained import extract_features
from robust_hpo.errors import MissingFileError, RobustHPOError, StorageError, ValidationError
from robust_hpo.objective import AccuracyConstraint
from robust_hpo.search_space import SearchSpace, distribution_from_spec, learner_config
from robust_hpo.study import StorageSpec, config_from_problem, load_study_config
from robust_hpo.testing import tiny_split


@pytest.fixture(scope="module")
def digits():
    return rh.load_dataset("digits", classes=(3, 8), n_train=60, n_test=20)


@pytest.fixture(scope="module")
def split(digits):
    return rh.poison(digits, rh.BadNets(size=2), fraction=0.1)


BAD_CALLS = {
    "unknown dataset": lambda d, s: rh.load_dataset("nope"),
    "n_train 0": lambda d, s: rh.load_dataset("digits", n_train=0),
    "one class": lambda d, s: rh.load_dataset("digits", classes=(3,)),
    "missing MNIST": lambda d, s: rh.load_dataset("mnist", root="/nonexistent/robust_hpo"),
    "patch size 0": lambda d, s: rh.BadNets(size=0),
    "bad corner": lambda d, s: rh.BadNets(position="centre"),
    "grid epsilon 2": lambda d, s: InvisibleGrid(epsilon=2.0),
    "trigger kind": lambda d, s: make_trigger("blend", {}),
    "fraction 1.5": lambda d, s: rh.poison(d, rh.BadNets(), fraction=1.5),
    "not a dataset": lambda d, s: rh.poison("digits", rh.BadNets()),
    "not a trigger": lambda d, s: ThreatModel(trigger="badnets"),
    "no threats": lambda d, s: rh.poison_many(d, []),
    "empty grid": lambda d, s: threat_grid(sizes=()),
    "target policy": lambda d, s: target_labels(np.array([0, 1]), (0, 1), "all-to-one"),
    "not a split": lambda d, s: rh.backdoor_slope(LogisticRegression(), "split"),
    "unsupported estimator": lambda d, s: rh.slope_model(Perceptron()),
    "unknown learner": lambda d, s: rh.get_family("nope"),
    "not a family": lambda d, s: rh.register_family(object()),
    "empty space": lambda d, s: SearchSpace({}),
    "bad range": lambda d, s: distribution_from_spec("C", {"low": 1.0, "high": 0.1}),
    "no learner param": lambda d, s: learner_config({"C": 1.0}),
    "objective space": lambda d, s: rh.BackdoorSlopeObjective(s, space="space"),
    "constraint 2": lambda d, s: AccuracyConstraint(min_accuracy=2.0),
    "aggregate": lambda d, s: rh.aggregate_slopes({}, "median"),
    "curve betas": lambda d, s: backdoor_curve(LogisticRegression(), s, betas=[0.5, 1.0]),
    "explain index": lambda d, s: explain_maps(LogisticRegression(), s, index=10**6),
    "grid C": lambda d, s: paper_grid(s, C=(), gamma=None),
    "verify study": lambda d, s: verify_study("study", s),
    "bins": lambda d, s: bin_trials([], learner="ridge", n_bins=0),
    "storage url": lambda d, s: StorageSpec(url="nosuchdb://x").open(),
    "stored problem": lambda d, s: config_from_problem({"format": 2}, name="x"),
    "missing study file": lambda d, s: load_study_config("/nonexistent/study.toml"),
    "feature model": lambda d, s: extract_features(np.zeros((1, 1, 8, 8), np.float32), model="vgg"),
    "fit before derivative": lambda d, s: rh.slope_model(LogisticRegression()).derivative(
        *tiny_split().flat()[2:]),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_api_inputs_raise_library_errors(name, digits, split):
    with pytest.raises(RobustHPOError):
        BAD_CALLS[name](digits, split)


def test_errors_keep_their_builtin_base(digits):
    with pytest.raises(ValueError):
        rh.BadNets(size=0)
    with pytest.raises(FileNotFoundError):
        load_study_config("/nonexistent/study.toml")
    with pytest.raises(ValueError):
        StorageSpec(url="nosuchdb://x").open()
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(StorageError, ValueError)
    assert rh.RobustHPOError is RobustHPOError and rh.ValidationError is ValidationError


GOOD = """
[study]
name = "t"

[search]
learners = ["ridge"]
"""

BAD_FILES = {
    "not TOML": "[study\nname = 1",
    "unknown section": GOOD + "[colour]\n",
    "unknown key": GOOD.replace('name = "t"', 'name = "t"\ncolour = 1'),
    "bad sampler": GOOD.replace('name = "t"', 'name = "t"\nsampler = "cmaes"'),
    "bad trigger": GOOD + "[attack]\ntrigger = 'blend'\n",
    "trigger key": GOOD + "[attack]\nepsilon = 0.1\n",
    "bad fraction": GOOD + "[attack]\nfraction = 0\n",
    "bad attacks": "attacks = 3\n" + GOOD,
    "unknown learner": GOOD.replace('["ridge"]', '["svm"]'),
    "bad range": GOOD + "[search.ridge]\nC = {low = 1.0, high = 0.1}\n",
    "bad options": GOOD + "[options.ridge]\nepochs = 3\n",
    "bad features": GOOD + "[features]\nmodel = 'vgg'\n",
    "bad constraint": GOOD + "[constraint]\nmin_accuracy = 2.0\n",
    "bad report": GOOD + "[report]\ntolerance = -1\n",
    "bad data": GOOD + "[data]\nclasses = [3]\n",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_study_files_raise_library_errors_and_exit_2(name, tmp_path: Path, capsys):
    path = tmp_path / "study.toml"
    path.write_text(BAD_FILES[name])
    with pytest.raises(RobustHPOError, match=f"^{path}: "):
        load_study_config(path)
    assert main(["run", str(path), "--no-progress", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"robust-hpo: error: {path}: ") and err.count("\n") == 1
