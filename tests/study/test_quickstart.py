"""The quickstart study, exactly as the README runs it: ≥ 50 trials and the paper's trade-off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState
from scipy.stats import spearmanr

from robust_hpo.cli import main
from robust_hpo.plots import plotly_bundle_name
from robust_hpo.objective import is_feasible
from robust_hpo.study import StorageSpec, load_study_config, recommend

QUICKSTART = Path(__file__).resolve().parents[2] / "studies" / "quickstart.toml"


@pytest.mark.slow
def test_quickstart_shows_the_trade_off(output_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    out = output_root / "quickstart"  # the default study folder, as the README runs it
    assert main(["run", str(QUICKSTART), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "Recommended: trial" in stdout and (out / "pareto.html").is_file() and (out / "trials.csv").is_file()
    assert f"Pareto plot: {out / 'pareto.html'}" in stdout  # absolute, clickable

    config = load_study_config(QUICKSTART)
    study = optuna.load_study(study_name="quickstart", storage=StorageSpec(journal=out / "study.log").open())
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(study.trials) == config.study.n_trials >= 50
    assert len(complete) >= 50

    # The recommendation: feasible, accurate, and the lowest predicted backdoor accuracy among them.
    recommendation = recommend(study, config.report.tolerance)
    assert recommendation is not None and is_feasible(recommendation.trial)
    assert recommendation.clean_accuracy >= 0.97 and recommendation.rule == "predicted_backdoor_accuracy"
    accurate = recommendation.candidates.records
    assert recommendation.predicted_backdoor_accuracy == min(r.predicted_backdoor_accuracy for r in accurate)
    # Choosing by clean accuracy alone could have picked a far more vulnerable configuration.
    assert max(r.slope for r in accurate) >= 0.5 and max(r.predicted_backdoor_accuracy for r in accurate) >= 0.5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recommended"]["number"] == recommendation.trial.number
    assert f"Recommended: trial {recommendation.trial.number} " in stdout

    # The paper's finding: less regularisation (larger C) learns the backdoor faster.
    for learner in ("logistic", "ridge", "linear_svm"):
        trials = [t for t in complete if t.params["learner"] == learner]
        if len(trials) >= 4:
            rho = spearmanr([t.params[f"{learner}.C"] for t in trials], [t.values[1] for t in trials]).statistic
            assert rho >= 0.9, (learner, rho)

    # The analysis chain writes into the same folder: one plotly.js, an index linking everything, ≤ 10 MB.
    for argv in (["curves"], ["verify"], ["heatmap"]):
        assert main([*argv, str(QUICKSTART)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out / 'curves.html'}" in stdout and f"wrote {out / 'verification.html'}" in stdout
    files = {p.name: p for p in out.iterdir()}
    assert sum(p.stat().st_size for p in files.values()) <= 10_000_000
    assert [name for name in files if name.endswith(".js")] == [plotly_bundle_name()]
    index = files["index.html"].read_text()
    figures = [name for name in files if name.endswith((".html", ".csv", ".json")) and name != "index.html"]
    assert {"pareto.html", "trials.csv", "curves.html", "verification.html", "verification.csv"} <= set(figures)
    assert any(name.startswith("heatmap_") for name in figures)
    for name in figures:
        assert f'href="{name}"' in index, name
