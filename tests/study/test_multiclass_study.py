"""Multi-class studies with the convex learners (exact slopes for K ≥ 3), the new learner families
(linear_svc, sgd_log, sgd_hinge) and ``[search] scale = "standard"``: run, report, recommend, verify."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from robust_hpo.cli import main
from robust_hpo.errors import ValidationError
from robust_hpo.objective import trial_record
from robust_hpo.study import StorageSpec
from robust_hpo.study._toml import parse_study_config
from robust_hpo.testing import tiny_study_toml


def _three_class(name: str, learners: tuple[str, ...], extra: str = "") -> str:
    return tiny_study_toml(name, learners=learners, n_train=90, n_trials=8, extra=extra).replace(
        "classes = [3, 8]", "classes = [0, 3, 8]")


def _run(tmp_path: Path, text: str, name: str) -> tuple[Path, Path, optuna.Study]:
    path, out = tmp_path / f"{name}.toml", tmp_path / "out"
    path.write_text(text)
    assert main(["run", str(path), "--storage", str(out / "study.log"), "--output", str(out), "--no-progress"]) == 0
    study = optuna.load_study(study_name=name, storage=StorageSpec(journal=out / "study.log").open())
    return path, out, study


def test_a_three_class_study_runs_reports_recommends_and_verifies(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, out, study = _run(tmp_path, _three_class("three", ("logistic", "linear_svc", "sgd_log", "sgd_hinge")),
                            "three")
    stdout = capsys.readouterr().out
    assert all(t.state == TrialState.COMPLETE for t in study.trials) and len(study.trials) == 8
    assert "Recommended: trial" in stdout
    records = [trial_record(t) for t in study.trials]
    assert all(a.details.get("n_classes") == 3 for r in records for a in r.attacks.values())
    assert all(r.predicted_backdoor_accuracy is not None for r in records)
    assert {t.params["learner"] for t in study.trials} > {"logistic"}
    assert main(["report", str(path), "--storage", str(out / "study.log"), "--output", str(out)]) == 0
    assert main(["verify", str(path), "--storage", str(out / "study.log"), "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "Recommendation check" in stdout and "after retraining on the poisoned set" in stdout


def test_scale_standard_puts_every_convex_learner_behind_the_scaler(tmp_path: Path) -> None:
    text = _three_class("scaled", ("ridge", "linear_svm"), extra="").replace(
        'learners = ["ridge", "linear_svm"]', 'learners = ["ridge", "linear_svm"]\nscale = "standard"')
    _, _, study = _run(tmp_path, text, "scaled")
    records = [trial_record(t) for t in study.trials if t.state == TrialState.COMPLETE]
    assert records and all(a.details.get("preprocessing") == ["StandardScaler"] for r in records for a in r.attacks.values())


def test_scale_must_be_known() -> None:
    text = tiny_study_toml("bad").replace('learners = ["logistic", "ridge"]',
                                         'learners = ["logistic", "ridge"]\nscale = "robust"')
    with pytest.raises(ValidationError, match=r"search.scale must be one of \['none', 'standard'\], got 'robust'"):
        parse_study_config(tomllib.loads(text))


def test_curves_deviation_and_explain_run_on_a_three_class_study(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    learners = ("logistic", "ridge", "linear_svm", "rbf_svm", "linear_svc", "sgd_log", "sgd_hinge")
    path, out, study = _run(tmp_path, _three_class("three_analysis", learners).replace(
        "n_trials = 8", "n_trials = 14"), "three_analysis")
    capsys.readouterr()
    first: dict[str, int] = {}
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            first.setdefault(t.params["learner"], t.number)
    assert len(first) >= 4, first
    common = [str(path), "--storage", str(out / "study.log"), "--output", str(out)]
    for learner, number in sorted(first.items()):
        trial = ["--trial", str(number)]
        assert main(["curves", *common, *trial, "--betas", "0", "0.01", "0.1", "1"]) == 0, learner
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(f"trial {number}:"))
        slope, stored = line.split("slope ")[1].split(" (stored ")
        assert float(slope) == pytest.approx(float(stored.split(")")[0]), abs=2e-4), line  # same slope, recomputed
        assert main(["deviation", *common, *trial, "--betas", "0", "0.1", "1"]) == 0, learner
        assert main(["explain", *common, *trial, "-k", "4"]) == 0, learner
        stdout = capsys.readouterr().out
        assert "top 4 training points" in stdout, stdout
        for name in ("curves", "deviation", "explain_maps", "explain_influence"):
            assert (out / f"{name}_trial-{number}.html").is_file(), (learner, name)
    # the dashboard's answer card on the same study
    import urllib.request

    from robust_hpo.dashboard import dashboard_server
    from robust_hpo.testing import serving

    with serving(dashboard_server(StorageSpec(journal=out / "study.log").open(), port=0)) as url:
        study_id = study._study_id
        with urllib.request.urlopen(f"{url}/robust-hpo/studies/{study_id}/card") as response:
            assert response.status == 200 and "Deploy" in response.read().decode()


def test_analysis_commands_build_estimators_as_the_trials_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """verify, curves and explain rebuild each trial's estimator with the study's [options.<learner>] and
    [search] scale (issue 19 left verify on the registry's defaults), also from the storage alone."""
    import robust_hpo.analysis as analysis
    import robust_hpo.analysis._verify as verify_module
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    text = _three_class("opts", ("logistic", "linear_svm")).replace(
        'learners = ["logistic", "linear_svm"]', 'learners = ["logistic", "linear_svm"]\nscale = "standard"') + (
        "\n[options.logistic]\ntol = 1e-7\nmax_iter = 4321\n\n[options.linear_svm]\ntol = 1e-5\ncache_size = 77\n")
    path, out, study = _run(tmp_path, text, "opts")
    built: list[object] = []
    real_clone, real_estimator = verify_module.clone, analysis.convex_estimator
    monkeypatch.setattr(verify_module, "clone", lambda est: built.append(est) or real_clone(est))
    monkeypatch.setattr(analysis, "convex_estimator",
                        lambda *a, **k: built.append(real_estimator(*a, **k)) or built[-1])
    storage = ["--storage", str(out / "study.log"), "--output", str(out)]
    assert main(["verify", str(path), *storage, "--trials", "all"]) == 0
    assert main(["verify", *storage, "--trials", "all"]) == 0  # the stored problem: options and scale kept
    number = str(next(t.number for t in study.trials if t.state == TrialState.COMPLETE))
    assert main(["curves", str(path), *storage, "--trial", number, "--betas", "0", "0.5", "1"]) == 0
    assert main(["explain", str(path), *storage, "--trial", number, "-k", "3"]) == 0
    capsys.readouterr()
    assert len(built) >= 2 * 8 + 2
    expected = {"LogisticRegression": {"tol": 1e-7, "max_iter": 4321}, "SVC": {"tol": 1e-5, "cache_size": 77}}
    for est in built:
        assert isinstance(est, Pipeline) and isinstance(est.steps[0][1], StandardScaler), est
        final = est.steps[-1][1]
        assert {k: final.get_params()[k] for k in expected[type(final).__name__]} == expected[type(final).__name__]
