"""``[options.<learner>]`` (fixed network options) and ``[study] threads`` / ``--threads``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.study import StorageSpec, build_objective, load_study_config
from robust_hpo.objective import trial_record

MLP = """
[study]
name = "mlp_opts"
n_trials = 2
seed = 0
threads = 1

[data]
dataset = "digits"
classes = [3, 8]
n_train = 80
n_test = 40

[attack]
size = 2

[search]
learners = ["mlp"]

[search.mlp]
epochs = { low = 1, high = 2 }
width = { low = 4, high = 8 }
lr = 0.05

[options.mlp]
slope_method = "finite-difference"
betas = [0.01]
batch_size = 40
"""


def _write(tmp_path: Path, text: str = MLP) -> Path:
    path = tmp_path / "mlp.toml"
    path.write_text(text)
    return path


def test_finite_difference_chosen_through_options_end_to_end(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    assert main(["run", str(path), "--no-progress", "--storage", str(tmp_path / "out" / "study.log"),
                 "--threads", "1"]) == 0
    study = optuna.load_study(study_name="mlp_opts",
                              storage=StorageSpec(journal=tmp_path / "out" / "study.log").open())
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {trial_record(t).method for t in study.trials} == {"finite-difference"}
    assert study.user_attrs["robust_hpo:problem"]["options"] == {
        "mlp": {"slope_method": "finite-difference", "betas": [0.01], "batch_size": 40}}
    # an independent computation: the family with the same options fixed in code gives the same slope
    from robust_hpo.learners.networks import MLP as MLP_FAMILY

    config = load_study_config(path)
    objective = build_objective(config)
    split = next(iter(objective.splits.values()))
    trial = study.trials[0]
    learner, params = config.search.space().split_params(trial.params)
    fitted = MLP_FAMILY.with_options(slope_method="finite-difference", betas=(0.01,), batch_size=40).fit(
        params, split.X_clean, split.y_clean, seed=0)
    expected = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
    assert trial.values[1] == pytest.approx(expected.slope, rel=1e-6, abs=1e-9)
    assert objective.families["mlp"].defaults["slope_method"] == "finite-difference"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("[options.mlp]", "[options.cnn]", r"unknown key 'options.cnn'; expected a table named after one of "
                                       r"search.learners \['mlp'\]"),
    ("batch_size = 40", "batch = 40", r"unknown key 'options.mlp.batch'; expected some of \["),
    ("batch_size = 40", "lr = 0.1", r"options.mlp.lr is searched; fix it in \[search.mlp\] instead"),
    ('slope_method = "finite-difference"', 'slope_method = "exact"', r"options.mlp: slope_method must be one of"),
    ("[options.mlp]", "[options]\nmlp = 3\n[options.x]", r"options.mlp must be a table of fixed options, got 3"),
    ('learners = ["mlp"]', 'learners = ["mlp", "ridge"]\n[options.ridge]\nC = 1.0',
     r"unknown key 'options.ridge.C'; expected some of \['max_iter', 'tol'\]"),
    ("threads = 1", "threads = 0", r"study.threads must be a positive integer, got 0"),
])
def test_option_errors_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MLP
    path = _write(tmp_path, MLP.replace(old, new, 1))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{message}"):
        load_study_config(path)


def test_threads_do_not_import_torch_for_a_convex_study(tmp_path: Path) -> None:
    """A fresh interpreter: ``threads`` caps the BLAS pools of numpy and scipy, and sets torch's count
    only when torch is already in use (a convex-only study never imports the network families)."""
    code = """
import sys
from robust_hpo.study import StudyConfig, StudySettings, SearchSettings, set_threads, load_study_config
cfg = StudyConfig(study=StudySettings(name="x", threads=1), search=SearchSettings(learners=("ridge",)))
import numpy, scipy.linalg, threadpoolctl
numpy.ones((2, 2)) @ numpy.ones((2, 2))
assert set_threads(1, cfg) is False and "torch" not in sys.modules
pools = threadpoolctl.threadpool_info()
assert pools and all(p["num_threads"] == 1 for p in pools), pools
import torch
torch.set_num_threads(2)
assert set_threads(1, cfg) is True and torch.get_num_threads() == 1
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
