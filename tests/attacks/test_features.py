"""Feature-space trigger on tabular rows, all-to-one targets, and triggers refusing the wrong layout."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo import Dataset, FeatureTrigger
from robust_hpo.attacks import BadNets, ThreatModel, make_trigger, poison, poison_many
from robust_hpo.datasets import load_dataset
from robust_hpo.errors import ValidationError


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    return load_dataset("breast_cancer", n_train=200, n_test=100, seed=0)


def test_feature_trigger_sets_named_columns_to_training_percentiles(cancer):
    trigger = FeatureTrigger(features=["mean radius", 5], values=["q99", "q50"])
    split = poison(cancer, trigger, fraction=0.1, seed=1)
    r, c5 = 0, 5
    assert cancer.feature_names[r] == "mean radius"
    q99, q50 = np.quantile(cancer.X_train[:, r], 0.99), np.quantile(cancer.X_train[:, c5], 0.50)
    for X in (split.X_poison, split.X_trigger):
        assert np.allclose(X[:, r], q99) and np.allclose(X[:, c5], q50)
        others = [j for j in range(30) if j not in (r, c5)]
    # the other columns are the original rows' values
    assert np.array_equal(split.X_poison[:, others], cancer.X_train[split.poison_indices][:, others])
    assert np.array_equal(split.X_trigger[:, others], cancer.X_test[:, others])
    described = split.attack["trigger"]
    assert described["kind"] == "features" and described["columns"] == [0, 5]
    assert described["set_to"] == pytest.approx([q99, q50])
    assert split.attack["feature_names"] == list(cancer.feature_names)


def test_one_value_for_all_and_numeric_values(cancer):
    split = poison(cancer, FeatureTrigger(features=[7, 27], values=["q95"]), fraction=0.1)
    assert np.allclose(split.X_trigger[:, 7], np.quantile(cancer.X_train[:, 7], 0.95))
    assert np.allclose(split.X_trigger[:, 27], np.quantile(cancer.X_train[:, 27], 0.95))
    lo = float(cancer.X_train[:, 2].min())
    split = poison(cancer, FeatureTrigger(features=[2], values=[lo]), fraction=0.1)
    assert np.all(split.X_trigger[:, 2] == lo) and np.all(split.X_poison[:, 2] == lo)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"features": [30]}, r"features: column index 30 is out of range; dataset 'breast_cancer' has 30 columns"),
    ({"features": ["height"]}, r"features: 'height' is not a column of dataset 'breast_cancer'"),
    ({"features": [0], "values": [1e6]}, r"values: 1e\+06 for feature 0 lies outside the training data's range"),
])
def test_features_and_values_are_checked_against_the_data(cancer, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        poison(cancer, FeatureTrigger(**kwargs), fraction=0.1)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"features": []}, r"features must be a column name or non-negative column index, or a non-empty list"),
    ({"features": [-1]}, r"features must be a column name or non-negative column index, or a non-empty list"),
    ({"features": -1}, r"features must be a column name or non-negative column index"),
    ({"values": ["q101"]}, r"values must be a finite number or a percentile such as 'q99', or a non-empty list"),
    ({"values": [float("nan")]}, r"values must be"),
    ({"features": [0, 1, 2], "values": [1.0, 2.0]}, r"values must hold one value per feature \(3\) or a single"),
    ({"features": [1, 1]}, r"features must not repeat a column"),
])
def test_feature_trigger_parameters(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        FeatureTrigger(**kwargs)


def test_triggers_refuse_the_other_layout(cancer):
    digits = load_dataset("digits", classes=[3, 8], n_train=60, n_test=30)
    with pytest.raises(ValidationError, match=r"trigger 'badnets' needs images \(n, C, H, W\), but dataset "
                                              r"'breast_cancer' holds tabular rows \(n, d\); use trigger 'features'"):
        poison(cancer, BadNets(), fraction=0.1)
    with pytest.raises(ValidationError, match=r"trigger 'features' needs tabular rows \(n, d\), but dataset 'digits'"):
        poison(digits, FeatureTrigger(), fraction=0.1)


def test_all_to_one_poisons_and_triggers_only_the_other_classes():
    X = np.random.default_rng(0).normal(size=(90, 4))
    y = np.repeat(np.array(["cat", "dog", "eel"]), 30)
    data = Dataset.from_arrays(X, y, seed=0, n_test=30)
    split = poison(data, FeatureTrigger(features=[0], values=["q90"]), fraction=0.2, target="dog", seed=2)
    dog = data.class_names.index("dog")
    assert split.attack["target"] == dog
    assert np.all(data.y_train[split.poison_indices] != dog) and split.poison_indices.size == 12
    assert np.all(split.y_poison == dog) and np.all(split.y_trigger == dog)
    assert split.X_trigger.shape[0] == int(np.sum(data.y_test != dog))
    assert np.array_equal(split.X_trigger[:, 1:], data.X_test[data.y_test != dog][:, 1:])
    by_id = poison(data, FeatureTrigger(features=[0], values=["q90"]), fraction=0.2, target=dog, seed=2)
    assert np.array_equal(by_id.X_poison, split.X_poison)
    with pytest.raises(ValidationError, match=r"target 'fish' is neither 'next' nor a class name of the data"):
        poison(data, FeatureTrigger(), fraction=0.2, target="fish")
    with pytest.raises(ValidationError, match=r"target 7 is not a class id of the data"):
        poison(data, FeatureTrigger(), fraction=0.2, target=7)
    with pytest.raises(ValidationError, match=r"asks for 42 poison points but only 40 training points are outside"):
        poison(data, FeatureTrigger(), fraction=0.7, target="dog")


def test_all_to_one_on_images_with_several_attacks():
    digits = load_dataset("digits", classes=[3, 8, 5], n_train=90, n_test=30)
    multi = poison_many(digits, [ThreatModel(trigger=BadNets(size=2), fraction=0.1),
                                 ThreatModel(trigger=BadNets(size=3), fraction=0.05)], target=8)
    for split in multi.splits.values():
        assert np.all(digits.y_train[split.poison_indices] != 8) and np.all(split.y_trigger == 8)
        assert split.X_trigger.shape[0] == int(np.sum(digits.y_test != 8))


def test_one_feature_and_one_value_need_no_list(cancer):
    split = poison(cancer, FeatureTrigger(features="worst area", values="q95"), fraction=0.1)
    j = cancer.feature_names.index("worst area")
    assert split.attack["trigger"]["columns"] == [j]
    assert split.attack["trigger"]["set_to"] == pytest.approx([np.quantile(cancer.X_train[:, j], 0.95)])


def test_registry_builds_feature_triggers_from_study_tables():
    trigger = make_trigger("features", {"features": ["worst area"], "values": ["q95"]}, seed=1)
    assert isinstance(trigger, FeatureTrigger) and trigger.describe()["features"] == ("worst area",)
    # a command line passes words: indices as text work too
    bound = make_trigger("features", {"features": ["3"], "values": ["0.5"]}).bind(
        Dataset.from_arrays(np.linspace(0, 1, 40).reshape(10, 4), np.arange(10) % 2))
    assert bound.describe()["columns"] == [3] and bound.describe()["set_to"] == [0.5]
