"""A tabular study from a CSV file, end to end through the CLI: run, report, curves, deviation, explain,
verify, heatmap, the dashboard and summary.json — the same commands as on images."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from sklearn.datasets import load_breast_cancer

from robust_hpo.cli import main
from robust_hpo.dashboard import dashboard_server
from robust_hpo.objective import trial_record
from robust_hpo.study import StorageSpec, load_study_config
from robust_hpo.study import build_splits
from robust_hpo.testing import serving

STUDY = """
[study]
name = "loans"
n_trials = 8
seed = 0
sampler = "random"

[data]
dataset = "csv"
path = "rows.csv"
label = "outcome"
standardize = true
n_train = 200
n_test = 100

[attack]
trigger = "features"
features = ["worst texture", "worst concave points"]
values = ["q99"]
fraction = 0.05
target = "benign"

[search]
learners = ["logistic", "linear_svm", "rbf_svm"]

[search.linear_svm]
C = { low = 1e-3, high = 100.0, log = true }

[search.rbf_svm]
C = { low = 0.1, high = 10.0, log = true }
gamma = { low = 1e-3, high = 0.1, log = true }

[constraint]
min_accuracy = 0.8
"""


@pytest.fixture(scope="module")
def tabular(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tabular")
    bunch = load_breast_cancer()
    header = ",".join([*bunch.feature_names, "outcome"])
    rows = [",".join([*(f"{v:.6g}" for v in x), bunch.target_names[t]]) for x, t in zip(bunch.data, bunch.target)]
    (folder / "rows.csv").write_text("\n".join([header, *rows]) + "\n")
    (folder / "loans.toml").write_text(STUDY)
    out = folder / "out"
    assert main(["run", str(folder / "loans.toml"), "--storage", str(out / "study.log"), "--output", str(out),
                 "--no-progress"]) == 0
    return folder / "loans.toml", out


def _args(path: Path, out: Path, *more: str) -> list[str]:
    return [str(path), "--storage", str(out / "study.log"), "--output", str(out), *more]


def test_run_and_report_on_a_csv_study(tabular, capsys):
    path, out = tabular
    study = optuna.load_study(study_name="loans", storage=StorageSpec(journal=out / "study.log").open())
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == 8 and len(complete) == 8  # C up to 100 on standardised rows: no trial fails
    record = trial_record(complete[0])
    assert record.attack["trigger"]["kind"] == "features" and record.attack["target"] == 0  # benign = id 0
    assert record.attack["feature_names"][21] == "worst texture"
    assert main(["report", *_args(path, out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recommended"]["number"] in {t.number for t in complete}
    # the stored problem alone (the CSV's path is where the data lie; its content is checked)
    capsys.readouterr()
    assert main(["report", "--storage", str(out / "study.log"), "--output", str(out / "again")]) == 0
    assert "Recommended: trial" in capsys.readouterr().out


def test_analysis_commands_on_a_csv_study(tabular, capsys):
    path, out = tabular
    assert main(["curves", *_args(path, out, "--betas", "0", "0.1", "1")]) == 0
    assert (out / "curves.html").is_file()
    assert main(["deviation", *_args(path, out, "--trial", "0", "--betas", "0", "1")]) == 0
    assert main(["explain", *_args(path, out, "--trial", "0", "-k", "4")]) == 0
    text = capsys.readouterr().out
    assert "carry the trigger" in text
    maps = next(out.glob("explain_maps*.html")).read_text()
    assert "worst texture (trigger)" in maps and "worst concave points (trigger)" in maps  # per-feature bars
    assert "values on the trigger's columns" in next(out.glob("explain_influence*.html")).read_text()
    assert main(["verify", *_args(path, out, "--trials", "all")]) == 0
    verified = (out / "verification.csv").read_text().splitlines()
    assert len(verified) == 1 + 8


def test_heatmap_on_a_csv_study(tabular):
    path, out = tabular
    assert main(["heatmap", *_args(path, out)]) == 0
    assert list(out.glob("heatmap_*.html"))


def test_verify_retrains_on_the_poisoned_rows(tabular):
    """The verification is an independent computation: refit on clean ∪ poison and read the triggered rows."""
    path, out = tabular
    from sklearn.linear_model import LogisticRegression

    split = next(iter(build_splits(load_study_config(path)).values()))
    model = LogisticRegression(C=100.0, max_iter=5000).fit(split.X_train_poisoned, split.y_train_poisoned)
    backdoor = float(np.mean(model.predict(split.X_trigger) == split.y_trigger))
    clean = LogisticRegression(C=100.0, max_iter=5000).fit(split.X_clean, split.y_clean)
    assert backdoor > float(np.mean(clean.predict(split.X_trigger) == split.y_trigger))  # the trigger is learned


def test_dashboard_serves_the_tabular_study(tabular):
    _, out = tabular
    with serving(dashboard_server(StorageSpec(journal=out / "study.log").open(), port=0)) as url:
        with urllib.request.urlopen(f"{url}/api/studies", timeout=60) as response:
            summaries = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["loans"]
        with urllib.request.urlopen(f"{url}/api/studies/{summaries[0]['study_id']}", timeout=60) as response:
            detail = json.load(response)
    assert len(detail["trials"]) == 8 and all(len(t["constraints"]) == 1 for t in detail["trials"])


BAD_BASE = """
[study]
name = "bad"
n_trials = 2

[data]
dataset = "csv"
path = "d.csv"
label = "y"

[attack]
trigger = "features"
features = ["a"]

[search]
learners = ["logistic"]
"""
GOOD_CSV = "a,b,y\n1,2,0\n3,1,1\n4,5,1\n2,2,0\n5,5,0\n6,1,1\n7,3,0\n8,8,1\n"


@pytest.mark.parametrize(("csv", "edit", "message"), [
    ("a,b,y\n1,2,0\n3,1\n4,5,1\n", None, r"d.csv: line 3 has 2 cells but the header has 3"),
    ("a,b,y\n1,2,0\n3,x,1\n4,5,1\n", None, r"d.csv: column 'b' is not numeric \('x' on line 3\)"),
    ("a,b,y\n1,2,0\n3,1,NaN\n4,5,1\n", None, r"d.csv: label column 'y' has a missing value on line 3"),
    ("a,b,label\n1,2,0\n", None, r"d.csv: no label column 'y'; its columns are \['a', 'b', 'label'\]"),
    ("a,b,y\n1,2,0\n3,1,0\n4,5,0\n", None, r"d.csv: labels hold a single class \('0'\)"),
    (GOOD_CSV, ('path = "d.csv"', 'path = "nope.csv"'), r"\[data\] path: data file not found: .*nope.csv"),
    (GOOD_CSV, ('path = "d.csv"', 'path = ""'), r"data.path must be a non-empty string"),
    (GOOD_CSV, ('path = "d.csv"', 'path = "."'), r"is not a regular file; expected a CSV file"),
    (GOOD_CSV, ('path = "d.csv"', 'path = 3'), r"data.path must be a non-empty string, got 3"),
    (GOOD_CSV, ('label = "y"', 'root = "."\nlabel = "y"'), r"data.root does not apply to dataset 'csv'"),
    (GOOD_CSV, ('label = "y"\n', ''), r"data.label is required for dataset 'csv'"),
    (GOOD_CSV, ('features = ["a"]', 'features = [99]'), r"\[attack\] features: column index 99 is out of range; "
                                                         r"dataset 'd' has 2 columns"),
    (GOOD_CSV, ('features = ["a"]', 'features = ["a"]\nvalues = [100.0]'),
     r"\[attack\] values: 100 for feature 'a' lies outside the training data's range \[1, 8\]"),
    (GOOD_CSV, ('features = ["a"]', 'features = ["a"]\nvalues = ["q200"]'),
     r"attack.values must be a finite number or a percentile such as .q99., or a non-empty list"),
    (GOOD_CSV, ('features = ["a"]', 'features = ["a"]\ntarget = "maybe"'),
     r"\[attack\] target 'maybe' is neither 'next' nor a class name of the data"),
    (GOOD_CSV, ('trigger = "features"\nfeatures = ["a"]', 'trigger = "badnets"'),
     r"trigger 'badnets' needs images \(n, C, H, W\), but dataset 'd' holds tabular rows"),
])
def test_bad_tabular_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, capsys, csv, edit, message):
    import re

    (tmp_path / "d.csv").write_text(csv)
    text = BAD_BASE if edit is None else BAD_BASE.replace(edit[0], edit[1], 1)
    assert edit is None or text != BAD_BASE
    (tmp_path / "s.toml").write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--storage", str(out / "study.log"), "--output", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "s.toml") in err and re.search(message, err), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "s.toml"]


def test_the_stored_problem_finds_the_csv_and_checks_its_content(tabular, tmp_path, capsys):
    from robust_hpo.study import config_from_problem, stored_problem

    path, out = tabular
    config = load_study_config(path)
    again = config_from_problem(stored_problem(config), name="loans")
    assert (again.data.path, again.data.label, again.data.standardize) == (str(path.parent / "rows.csv"), "outcome",
                                                                            True)
    assert again.attacks == config.attacks
    # --storage alone: the data are read where the study found them
    assert main(["deviation", "--storage", str(out / "study.log"), "--output", str(tmp_path / "a"), "--trial", "1",
                 "--betas", "0", "1"]) == 0
    # a byte-identical copy elsewhere is the same data; an edited copy is refused, naming the arrays
    moved = tmp_path / "copy.csv"
    moved.write_bytes((path.parent / "rows.csv").read_bytes())
    assert main(["deviation", "--storage", str(out / "study.log"), "--output", str(tmp_path / "b"), "--trial", "1",
                 "--betas", "0", "1", "--set", f"data.path={moved}"]) == 0
    header, *rows = moved.read_text().splitlines()
    rows = [",".join([str(float(r.split(",")[0]) + (i % 7)), *r.split(",")[1:]])  # every row, unevenly
            for i, r in enumerate(rows)]                                           # (standardising keeps it)
    moved.write_text("\n".join([header, *rows]) + "\n")
    capsys.readouterr()
    assert main(["deviation", "--storage", str(out / "study.log"), "--output", str(tmp_path / "c"), "--trial", "1",
                 "--betas", "0", "1", "--set", f"data.path={moved}"]) == 2
    assert "was created with other data" in capsys.readouterr().err
