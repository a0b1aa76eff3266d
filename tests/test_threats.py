"""Many threat models on one shared clean set: construction, one fit for all slopes, aggregates."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from robust_hpo.attacks import BadNets, InvisibleGrid, poison
from robust_hpo.datasets import load_dataset
from robust_hpo._analysis import default_family as get_family
from robust_hpo.slope import SlopeResult, backdoor_slope
from robust_hpo.threats import ThreatModel, aggregate_slopes, evaluate_threats, poison_many, threat_grid


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("digits", classes=(3, 8), n_train=200, n_test=60, seed=0)


def test_grid_shares_the_clean_set_and_nests_the_poison(dataset):
    threats = threat_grid(sizes=(2, 3, 4), fractions=(0.05, 0.1, 0.15), seed=0)
    assert len(threats) == 9 and len({t.name for t in threats}) == 9
    multi = poison_many(dataset, threats, seed=3)
    n = len(dataset.y_train)
    M = round(0.15 * n)
    assert multi.candidates.size == M and len(set(multi.candidates.tolist())) == M
    first = multi.first
    assert len(first.y_clean) == n - M
    for threat, (name, split) in zip(threats, multi.splits.items()):
        assert name == threat.name
        assert split.X_clean is first.X_clean and split.X_test is first.X_test
        m = int(np.floor(threat.fraction * n + 0.5))
        assert len(split.y_poison) == m
        # the poison points are the first m candidates, triggered with this threat's trigger
        np.testing.assert_array_equal(split.poison_indices, np.sort(multi.candidates[:m]))
        base = dataset.y_train[split.poison_indices]
        np.testing.assert_array_equal(split.X_poison, threat.trigger.apply(dataset.X_train[split.poison_indices], base))
        np.testing.assert_array_equal(split.y_poison, np.where(base == 3, 8, 3))
        np.testing.assert_array_equal(split.X_trigger, threat.trigger.apply(dataset.X_test, dataset.y_test))
        assert split.attack["shared_clean"] and split.attack["n_candidates"] == M
    # clean set ∪ candidates is the training set (as a multiset of rows): no candidate trains as clean
    def rows(X):
        flat = X.reshape(len(X), -1)
        return flat[np.lexsort(flat.T[::-1])]

    np.testing.assert_array_equal(rows(np.concatenate([first.X_clean, dataset.X_train[multi.candidates]])),
                                  rows(dataset.X_train))


def test_single_threat_equals_in_place_poisoning(dataset):
    trigger = BadNets(size=2, seed=1)
    multi = poison_many(dataset, [ThreatModel(trigger=trigger, fraction=0.1)], seed=5)
    ref = poison(dataset, trigger, fraction=0.1, seed=5)
    split = multi.first
    for name in ("X_clean", "y_clean", "X_poison", "y_poison", "poison_indices", "X_trigger", "y_trigger"):
        np.testing.assert_array_equal(getattr(split, name), getattr(ref, name), err_msg=name)


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
    assert all(r.method.endswith("+grouped") for r in grouped.values())
    for name, split in multi.splits.items():
        alone = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
        assert grouped[name].derivative == pytest.approx(alone.derivative, rel=1e-9, abs=1e-12)
        assert grouped[name].n_poison == alone.n_poison and grouped[name].slope == pytest.approx(alone.slope)
    assert any(abs(r.derivative) > 1e-3 for r in grouped.values())


def test_plain_mappings_and_disagreeing_rows(dataset):
    from dataclasses import replace

    multi = poison_many(dataset, threat_grid(sizes=(3,), fractions=(0.05, 0.1)), seed=2)
    fitted = get_family("logistic").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    as_mapping = evaluate_threats(fitted, dict(multi.splits))
    grouped = evaluate_threats(fitted, multi)
    assert {k: r.derivative for k, r in as_mapping.items()} == {k: r.derivative for k, r in grouped.items()}
    # the same training index with a different image in two attacks: evaluated one by one, still exact
    small, large = multi.names
    X = multi[large].X_poison.copy()
    k = int(np.flatnonzero(np.isin(multi[large].poison_indices, multi[small].poison_indices))[0])
    X[k] = 1.0 - X[k]
    odd = {small: multi[small], large: replace(multi[large], X_poison=X)}
    results = evaluate_threats(fitted, odd)
    assert not results[large].method.endswith("+grouped")
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


def test_threat_model_from_dict():
    t = ThreatModel.from_dict({"trigger": "badnets", "size": 4, "position": "top-left", "fraction": 0.2})
    assert isinstance(t.trigger, BadNets) and t.trigger.size == 4 and t.fraction == 0.2
    assert t.name == "badnets-4px-top-left-20%"
    g = ThreatModel.from_dict({"trigger": "invisible_grid", "epsilon": 0.1, "name": "faint"})
    assert isinstance(g.trigger, InvisibleGrid) and g.name == "faint" and g.describe()["fraction"] == 0.1


def _result(slope: float) -> SlopeResult:
    return SlopeResult(derivative=-1.0, influence=-0.1, slope=slope, n_clean=1, n_poison=1, n_trigger=1,
                       method="x", loss="x")


def test_bad_inputs(dataset):
    with pytest.raises(ValueError, match="fraction must be a number in the open interval"):
        ThreatModel(trigger=BadNets(), fraction=1.0)
    with pytest.raises(ValueError, match="trigger must provide apply"):
        ThreatModel(trigger="badnets")
    with pytest.raises(ValueError, match="unknown keys \\['epsilon'\\] for trigger 'badnets'"):
        ThreatModel.from_dict({"trigger": "badnets", "epsilon": 0.1})
    with pytest.raises(ValueError, match="trigger must be one of"):
        ThreatModel.from_dict({"trigger": "blend"})
    with pytest.raises(ValueError, match="threats must have distinct names; repeated"):
        poison_many(dataset, [ThreatModel(trigger=BadNets(), name="a"), ThreatModel(trigger=BadNets(size=3), name="a")])
    with pytest.raises(ValueError, match="threats must be a non-empty sequence"):
        poison_many(dataset, [])
    with pytest.raises(ValueError, match="rounds to 0 poison points"):
        poison_many(dataset, [ThreatModel(trigger=BadNets(), fraction=0.001)])
    with pytest.raises(ValueError, match="dataset must be a robust_hpo.datasets.Dataset"):
        poison_many("digits", [ThreatModel(trigger=BadNets())])
    with pytest.raises(ValueError, match="how must be one of"):
        aggregate_slopes({"a": _result(0.1)}, "median")
    with pytest.raises(ValueError, match="results must be a non-empty"):
        aggregate_slopes({})
    with pytest.raises(ValueError, match="sizes must be a non-empty sequence"):
        threat_grid(sizes=())
    multi = poison_many(dataset, [ThreatModel(trigger=BadNets())])
    with pytest.raises(ValueError, match="no attack named 'x'"):
        multi["x"]
    with pytest.raises(ValueError, match="fitted must be a fitted learner"):
        evaluate_threats(object(), multi)
    fitted = get_family("ridge").fit({"C": 1.0}, multi.first.X_clean, multi.first.y_clean)
    with pytest.raises(ValueError, match="multi must be a MultiSplit"):
        evaluate_threats(fitted, "attacks")
    other = poison(load_dataset("digits", classes=(3, 8), n_train=150, n_test=60, seed=1), BadNets())
    with pytest.raises(ValueError, match=r"multi\['b'\].X_clean differs"):
        evaluate_threats(fitted, {"a": multi.first, "b": other})
