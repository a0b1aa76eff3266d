"""Many threat models on one shared clean set: construction, nesting, and one-threat = in-place poisoning."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo.attacks import BadNets, InvisibleGrid, ThreatModel, poison, poison_many, threat_grid
from robust_hpo.datasets import load_dataset


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


def test_threat_model_from_dict():
    t = ThreatModel.from_dict({"trigger": "badnets", "size": 4, "position": "top-left", "fraction": 0.2})
    assert isinstance(t.trigger, BadNets) and t.trigger.size == 4 and t.fraction == 0.2
    assert t.name == "badnets-4px-top-left-20%"
    g = ThreatModel.from_dict({"trigger": "invisible_grid", "epsilon": 0.1, "name": "faint"})
    assert isinstance(g.trigger, InvisibleGrid) and g.name == "faint" and g.describe()["fraction"] == 0.1


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
    with pytest.raises(ValueError, match="sizes must be a non-empty sequence"):
        threat_grid(sizes=())
    multi = poison_many(dataset, [ThreatModel(trigger=BadNets())])
    with pytest.raises(ValueError, match="no attack named 'x'"):
        multi["x"]
