"""Every attack's slope from one fit (grouped by trigger) and their aggregate into one objective value."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from robust_hpo.attacks import BadNets, InvisibleGrid, ThreatModel, poison, poison_many, threat_grid
from robust_hpo.datasets import load_dataset
from robust_hpo.learners import get_family
from robust_hpo.objective import aggregate_slopes, evaluate_threats
from robust_hpo.slope import SlopeResult, backdoor_slope


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("digits", classes=(3, 8), n_train=200, n_test=60, seed=0)


def test_one_fit_serves_every_attack(dataset):
    threats = [ThreatModel(trigger=BadNets(size=s, seed=0), fraction=f) for s, f in ((2, 0.05), (3, 0.15))]
    threats.append(ThreatModel(trigger=InvisibleGrid(epsilon=0.3, spacing=2), fraction=0.1, name="grid"))
    multi = poison_many(dataset, threats, seed=0)
    fitted = get_family("logistic").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    results = evaluate_threats(fitted, multi)
    assert list(results) == multi.names
    for name, split in multi.splits.items():
        # independent: a fresh fit + slope on this attack's split alone
        ref = backdoor_slope(LogisticRegression(C=1.0, max_iter=2000), split)
        assert results[name].derivative == pytest.approx(ref.derivative, rel=1e-6)
    worst = aggregate_slopes(results)
    assert worst.how == "max" and worst.value == max(r.slope for r in results.values())
    assert results[worst.worst].slope == worst.value
    mean = aggregate_slopes(results, "mean")
    assert mean.value == pytest.approx(np.mean([r.slope for r in results.values()])) and mean.worst is None


@pytest.mark.parametrize("learner, params", [("logistic", {"C": 0.5}), ("ridge", {"C": 0.1}),
                                             ("linear_svm", {"C": 0.5}), ("rbf_svm", {"C": 10.0, "gamma": 0.05})])
def test_grouped_evaluation_equals_one_slope_per_attack(dataset, learner, params):
    multi = poison_many(dataset, threat_grid(sizes=(2, 3), fractions=(0.05, 0.1, 0.2), seed=0), seed=1)
    fitted = get_family(learner).fit(params, multi.first.X_clean, multi.first.y_clean)
    grouped = evaluate_threats(fitted, multi)
    for name, split in multi.splits.items():
        alone = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger,
                                      X_test=split.X_test, y_test=split.y_test)
        assert grouped[name].derivative == pytest.approx(alone.derivative, rel=1e-9, abs=1e-12)
        assert grouped[name].n_poison == alone.n_poison and grouped[name].slope == pytest.approx(alone.slope)
        # every attack's margins come from the same batched solve, scaled on the clean test set
        assert np.allclose(grouped[name].margins.derivative, alone.margins.derivative, rtol=1e-9, atol=1e-12)
        assert grouped[name].margins.scale == pytest.approx(alone.margins.scale) and alone.margins.scale > 0
        assert grouped[name].predicted_backdoor_accuracy == alone.predicted_backdoor_accuracy
    assert any(abs(r.derivative) > 1e-3 for r in grouped.values())


def test_plain_mappings_and_disagreeing_rows(dataset):
    from dataclasses import replace

    multi = poison_many(dataset, threat_grid(sizes=(3,), fractions=(0.05, 0.1)), seed=2)
    fitted = get_family("logistic").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    as_mapping = evaluate_threats(fitted, dict(multi.splits))
    grouped = evaluate_threats(fitted, multi)
    assert {k: r.derivative for k, r in as_mapping.items()} == {k: r.derivative for k, r in grouped.items()}
    # the same training index with a different image in two attacks: each attack's own rows count
    small, large = multi.names
    X = multi[large].X_poison.copy()
    k = int(np.flatnonzero(np.isin(multi[large].poison_indices, multi[small].poison_indices))[0])
    X[k] = 1.0 - X[k]
    odd = {small: multi[small], large: replace(multi[large], X_poison=X)}
    results = evaluate_threats(fitted, odd)
    alone = fitted.backdoor_slope(X, multi[large].y_poison, multi[large].X_trigger, multi[large].y_trigger)
    assert results[large].derivative == pytest.approx(alone.derivative, rel=1e-12)


def test_other_learners_are_evaluated_per_attack(dataset):
    multi = poison_many(dataset, threat_grid(sizes=(2,), fractions=(0.05, 0.1)), seed=0)
    calls = []

    class Fitted:
        fit_seconds = 0.0

        def predict(self, X):
            return np.zeros(len(X))

        def backdoor_slope(self, Xp, yp, Xt, yt):
            calls.append(len(yp))
            return _result(0.1 * len(calls))

    results = evaluate_threats(Fitted(), multi)
    assert calls == [len(s.y_poison) for s in multi.splits.values()]
    assert aggregate_slopes(results).worst == multi.names[-1]


def test_multisplit_plugs_into_the_objective(dataset):
    from robust_hpo.objective import BackdoorSlopeObjective
    from robust_hpo.search_space import SearchSpace

    multi = poison_many(dataset, threat_grid(sizes=(2, 3), fractions=(0.1,)), seed=0)
    space = SearchSpace.from_families([get_family("ridge")])
    objective = BackdoorSlopeObjective(multi.splits, space=space, families={"ridge": get_family("ridge")})
    evaluation = objective.evaluate_config("ridge", {"C": 1.0})
    fitted = get_family("ridge").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    assert evaluation.slope == pytest.approx(aggregate_slopes(evaluate_threats(fitted, multi)).value, rel=1e-9)


def _result(slope: float) -> SlopeResult:
    return SlopeResult(derivative=-1.0, influence=-0.1, slope=slope, n_clean=1, n_poison=1, n_trigger=1,
                       method="x", loss="x")


def test_bad_inputs(dataset):
    with pytest.raises(ValueError, match="how must be one of"):
        aggregate_slopes({"a": _result(0.1)}, "median")
    with pytest.raises(ValueError, match="results must be a non-empty"):
        aggregate_slopes({})
    multi = poison_many(dataset, [ThreatModel(trigger=BadNets())])
    with pytest.raises(ValueError, match="fitted must be a fitted learner"):
        evaluate_threats(object(), multi)
    fitted = get_family("ridge").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    with pytest.raises(ValueError, match="multi must be a MultiSplit"):
        evaluate_threats(fitted, "attacks")
    other = poison(load_dataset("digits", classes=(3, 8), n_train=150, n_test=60, seed=1), BadNets())
    with pytest.raises(ValueError, match=r"multi\['b'\].X_clean differs"):
        evaluate_threats(fitted, {"a": multi.first, "b": other})
