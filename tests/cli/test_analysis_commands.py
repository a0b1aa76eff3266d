"""``robust-hpo curves | deviation | explain | verify | heatmap`` end to end, on a small study and on flags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.study import load_study_config, run_study
from robust_hpo.analysis import VERIFY_ATTR

STUDY = """
[study]
name = "tiny"
n_trials = 10
seed = 0
sampler = "random"

[data]
dataset = "digits"
classes = [3, 8]
n_train = 120
n_test = 50

[attack]
trigger = "badnets"
size = 2
fraction = 0.1

[search]
learners = ["logistic", "rbf_svm"]

[search.rbf_svm]
C = { low = 1.0, high = 100.0, log = true }
gamma = { low = 1e-3, high = 1.0, log = true }
"""


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("study")
    path = folder / "tiny.toml"
    path.write_text(STUDY)
    output = folder / "out"
    run_study(load_study_config(path), storage=str(output / "study.log"), output=output, progress=False)
    return path, output


def test_study_commands(study_file, capsys):
    path, output = study_file
    assert main(["curves", str(path), "--storage", str(output / "study.log"), "--output", str(output), "--betas", "0", "0.01", "0.1", "1"]) == 0
    out = capsys.readouterr().out
    assert "slope" in out and (output / "curves.html").is_file()
    # by default: the recommended trial (labelled so) first, then the Pareto front it is compared with
    from robust_hpo.objective import DEFAULT_TOLERANCE
    from robust_hpo.study import pareto_trials, recommend

    tiny = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(output / "study.log"))))
    chosen = recommend(tiny, DEFAULT_TOLERANCE).trial.number
    expected = [chosen] + [t.number for t in pareto_trials(tiny) if t.number != chosen]
    assert [int(n) for n in re.findall(r"^fitted trial (\d+)", out, re.MULTILINE)] == expected
    assert f"fitted trial {chosen} (recommended): " in out
    assert main(["deviation", str(path), "--storage", str(output / "study.log"), "--output", str(output), "--trial", "0", "1", "--betas", "0", "1"]) == 0
    assert "angle/π" in capsys.readouterr().out and (output / "deviation_trials-0-1.html").is_file()
    assert main(["explain", str(path), "--storage", str(output / "study.log"), "--output", str(output), "--trial", "0", "-k", "3"]) == 0
    assert "carry the trigger" in capsys.readouterr().out
    assert (output / "explain_maps_trial-0.html").is_file() and (output / "explain_influence_trial-0.html").is_file()

    assert main(["verify", str(path), "--storage", str(output / "study.log"), "--output", str(output), "--trials", "all"]) == 0
    out = capsys.readouterr().out
    assert "Spearman(slope, backdoor accuracy" in out and "robust region" in out
    assert (output / "verification.html").is_file() and (output / "verification.csv").is_file()
    assert (output / "heatmap_rbf_svm.html").is_file() or (output / "heatmap_logistic.html").is_file()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(output / "study.log")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    stored = study.user_attrs[VERIFY_ATTR]
    assert [k for k in study.user_attrs if k.startswith("robust_hpo:verify")] == [VERIFY_ATTR]
    assert len(stored["trials"]) == 10 and all(0.0 <= b <= 1.0 for _, b, _ in stored["trials"].values())
    assert len(json.dumps(stored)) < 1500  # compact: `optuna studies` prints one short row

    (output / "heatmap_logistic.html").unlink(missing_ok=True)
    assert main(["heatmap", str(path), "--storage", str(output / "study.log"), "--output", str(output), "--bins", "3"]) == 0
    assert (output / "heatmap_logistic.html").is_file()


def test_storage_only_rebuilds_the_split_from_the_study(study_file, tmp_path, capsys):
    _, output = study_file
    assert main(["curves", "--storage", str(output / "study.log"), "--trial", "0", "--betas", "0", "1",
                 "--output", str(tmp_path)]) == 0
    assert (tmp_path / "curves_trial-0.html").is_file()


def test_flag_commands(tmp_path, capsys):
    common = ["--classes", "1", "7", "--n-train", "100", "--n-test", "40", "--size", "3", "--output", str(tmp_path)]
    assert main(["curves", "--learner", "rbf_svm", "--C", "10", "--gamma", "0.01", "0.1",
                 "--betas", "0", "0.05", "1", *common]) == 0
    out = capsys.readouterr().out
    assert out.count("fitted rbf_svm") == 2
    assert main(["explain", "--learner", "logistic", "--C", "1", "--index", "2", *common]) == 0
    assert "share of |∂f/∂x| inside the trigger patch" in capsys.readouterr().out
    assert main(["heatmap", "--learner", "rbf_svm", "--C", "1", "10", "--gamma", "0.01", "0.1", *common]) == 0
    assert "Spearman(slope, backdoor accuracy)" in capsys.readouterr().out
    # flag-mode files are named for what they analysed
    assert (tmp_path / "curves_rbf_svm_C-10_gamma-0.01-0.1.html").is_file()
    assert (tmp_path / "explain_maps_logistic_C-1.html").is_file()
    assert (tmp_path / "heatmap_rbf_svm_C-1-10_gamma-0.01-0.1.html").is_file()
    assert (tmp_path / "index.html").is_file()


@pytest.mark.parametrize("argv, message", [
    (["curves", "--C", "1"], "give a study (STUDY.toml or --storage), or --learner and its hyperparameters"),
    (["curves", "--learner", "rbf_svm", "--C", "1"], "--learner rbf_svm needs --gamma"),
    (["curves", "--learner", "ridge", "--C", "1", "--gamma", "0.1"], "--gamma applies to --learner rbf_svm only"),
    (["curves", "--learner", "ridge", "--C", "1", "--epsilon", "0.1"], "--epsilon applies to --trigger invisible_grid, not badnets"),
    (["curves", "--learner", "ridge", "--C", "1", "--betas", "0.5", "1"], "betas must include 0"),
    (["verify"], "verify needs a study"),
    (["heatmap"], "give a study (STUDY.toml or --storage), or --learner"),
    (["explain", "--learner", "ridge", "--C", "1", "--index", "9999"], "index must be an integer in"),
    (["curves", "missing.toml"], "study file not found: missing.toml"),
])
def test_errors_are_one_line_with_status_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--output", str(tmp_path)] if argv[0] != "verify" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("robust-hpo: error: ") and message in err and err.count("\n") == 1


def test_study_and_flags_do_not_mix(study_file, capsys):
    path, output = study_file
    assert main(["curves", str(path), "--learner", "ridge", "--output", str(output)]) == 2
    assert "--learner cannot be combined with a study" in capsys.readouterr().err
    assert main(["curves", str(path), "--trial", "999", "--storage", str(output / "study.log")]) == 2
    assert "--trial 999" in capsys.readouterr().err


def test_a_changed_study_file_is_refused(study_file, tmp_path, capsys):
    path, output = study_file
    changed = tmp_path / "tiny.toml"
    changed.write_text(path.read_text().replace("size = 2", "size = 3"))
    assert main(["verify", str(changed), "--storage", str(output / "study.log"), "--output", str(output)]) == 2
    assert "ran with different [attack]" in capsys.readouterr().err


def test_bad_flag_values_are_refused_by_argparse(capsys):
    with pytest.raises(SystemExit):
        main(["curves", "--learner", "ridge", "--C", "-1"])
    assert "expected a positive number" in capsys.readouterr().err


def test_verify_and_report_name_the_same_recommendation(study_file, tmp_path, capsys):
    """`report` and `verify` (default: the candidates) agree on the recommended trial; verify retrains
    every candidate and its regret is the recommended trial's backdoor accuracy minus the best's."""
    import csv
    import re

    path, output = study_file
    assert main(["report", str(path), "--storage", str(output / "study.log"), "--output", str(output)]) == 0
    report = capsys.readouterr().out
    recommended = int(re.search(r"^Recommended: trial (\d+) ", report, re.MULTILINE).group(1))
    summary = json.loads((output / "summary.json").read_text())
    assert summary["recommended"]["number"] == recommended
    candidates = summary["recommended"]["candidates"]
    assert main(["verify", str(path), "--storage", str(output / "study.log"), "--output", str(output)]) == 0
    verify = capsys.readouterr().out
    assert f"recommended trial {recommended} (" in verify
    rows = list(csv.DictReader((output / "verification.csv").open()))
    assert sorted(int(r["trial"]) for r in rows) == sorted(candidates)
    assert [int(r["trial"]) for r in rows if r["recommended"] == "True"] == [recommended]
    backdoor = {int(r["trial"]): float(r["backdoor_accuracy"]) for r in rows}
    regret = float(re.search(r"regret (-?\d+\.\d+)", verify).group(1))
    assert regret == pytest.approx(backdoor[recommended] - min(backdoor.values()), abs=6e-4)
    robust = re.search(r"robust region \(the recommendation's candidates.*\): (.*)$", verify, re.MULTILINE).group(1)
    assert robust == "empty" or all(int(n) in candidates for n in re.findall(r"trial (\d+)", robust))


MIXED = """
[study]
name = "mixed"
n_trials = 6
seed = 0
sampler = "random"
threads = 1

[data]
dataset = "digits"
classes = [3, 8]
n_train = 150
n_test = 60

[attack]
trigger = "badnets"
size = 3
fraction = 0.1

[search]
learners = ["logistic", "mlp"]

[search.mlp]
epochs = { low = 2, high = 8 }
width = { low = 8, high = 32, log = true }
"""


def test_verify_a_mixed_network_study_with_several_seeds(tmp_path, capsys):
    """A study of logistic regression and an MLP: verify exits 0 (it stopped at "has no parameter 'C'"),
    retrains each MLP trial with --seeds seeds and reports their mean and spread; logistic once."""
    from robust_hpo.analysis import stored_verification
    from robust_hpo.learners import get_family
    from robust_hpo.search_space import learner_config
    from robust_hpo.study import build_splits

    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    output = tmp_path / "out"
    config = load_study_config(path)
    outcome = run_study(config, storage=str(output / "study.log"), output=output, progress=False)
    assert main(["verify", str(path), "--storage", str(output / "study.log"), "--output", str(output),
                 "--trials", "all", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "spread (seeds)" in out and "no heatmap for mlp" in out
    (split,) = build_splits(config).values()
    verified = {t.number: t for t in stored_verification(outcome.study)}
    learners = set()
    for trial in outcome.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        learner, params = learner_config(trial.params)
        learners.add(learner)
        v = verified[trial.number]
        if learner == "mlp":  # mean over seeds 0 and 1 of independent trainings on the poisoned set
            runs = [get_family("mlp").fit(params, split.X_train_poisoned, split.y_train_poisoned, seed=s)
                    for s in (0, 1)]
            backdoor = [np.mean(f.predict(split.X_trigger) == split.y_trigger) for f in runs]
            assert v.backdoor_accuracy == pytest.approx(np.mean(backdoor), abs=1e-6)
            assert v.backdoor_spread == pytest.approx(max(backdoor) - min(backdoor), abs=1e-6)
        else:
            assert v.backdoor_spread is None
    assert learners == {"logistic", "mlp"}
