"""Conditional search spaces: suggestion, naming, overrides, TOML-style specs and their errors."""

from __future__ import annotations

import optuna
import pytest
from robust_hpo.testing import FAKE, NET
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from robust_hpo.search_space import (
    LEARNER_PARAM,
    SearchSpace,
    distribution_from_spec,
    format_params,
    param_name,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space() -> SearchSpace:
    return SearchSpace({
        "a": {"C": FloatDistribution(1e-3, 1e3, log=True)},
        "b": {"C": FloatDistribution(0.1, 10.0), "gamma": FloatDistribution(1e-4, 1.0, log=True)},
        "net": {"epochs": IntDistribution(1, 20), "width": IntDistribution(8, 256, log=True),
                "act": CategoricalDistribution(["relu", "tanh"])},
    })


def test_suggest_only_the_chosen_learners_parameters() -> None:
    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set[str]] = {}

    def objective(trial: optuna.Trial) -> float:
        learner, params = space.suggest(trial)
        assert set(trial.params) == {LEARNER_PARAM, *(param_name(learner, p) for p in params)}
        seen.setdefault(learner, set()).update(params)
        for name, value in params.items():
            dist = space.learners[learner][name]
            if isinstance(dist, CategoricalDistribution):
                assert value in dist.choices
            else:
                assert dist.low <= value <= dist.high
                assert isinstance(value, int) == isinstance(dist, IntDistribution)
        return 0.0

    study.optimize(objective, n_trials=40)
    assert seen == {"a": {"C"}, "b": {"C", "gamma"}, "net": {"epochs", "width", "act"}}
    # each learner's C is its own dimension, with its own range
    assert study.trials[0].distributions[LEARNER_PARAM] == CategoricalDistribution(["a", "b", "net"])


def test_distributions_is_the_flat_union() -> None:
    flat = _space().distributions()
    assert list(flat) == [LEARNER_PARAM, "a.C", "b.C", "b.gamma", "net.epochs", "net.width", "net.act"]
    assert flat["b.gamma"] == FloatDistribution(1e-4, 1.0, log=True)


def test_split_params_round_trip_and_errors() -> None:
    space = _space()
    learner, own = space.split_params({LEARNER_PARAM: "b", "b.C": 2.0, "b.gamma": 0.1, "a.C": 5.0})
    assert (learner, own) == ("b", {"C": 2.0, "gamma": 0.1})
    with pytest.raises(ValueError, match="params must contain 'learner'"):
        space.split_params({"b.C": 2.0})
    with pytest.raises(ValueError, match=r"params\['learner'\] must be one of"):
        space.split_params({LEARNER_PARAM: "zzz"})
    with pytest.raises(ValueError, match="params is missing 'b.gamma'"):
        space.split_params({LEARNER_PARAM: "b", "b.C": 2.0})
    with pytest.raises(ValueError, match=r"params\['b.C'\] = 99.0 is outside"):
        space.split_params({LEARNER_PARAM: "b", "b.C": 99.0, "b.gamma": 0.1})


def test_from_families_applies_overrides() -> None:
    override = FloatDistribution(1.0, 5.0)
    space = SearchSpace.from_families([FAKE, NET], {"fake": {"C": override}})
    assert space.learner_names == ("fake", "fake_net")
    assert space.learners["fake"]["C"] == override
    assert space.learners["fake"]["threshold"] == FAKE.search_space()["threshold"]
    assert space.learners["fake_net"]["width"] == IntDistribution(8, 512, log=True)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"nope": {}}, "overrides: no learner 'nope'"),
    ({"fake": {"gamma": FloatDistribution(0, 1)}}, r"overrides\['fake'\]: unknown parameter 'gamma'"),
])
def test_from_families_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_families([FAKE], overrides)


def test_from_families_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="learner 'fake' is listed twice"):
        SearchSpace.from_families([FAKE, FAKE])


@pytest.mark.parametrize(("learners", "message"), [
    ({}, "learners must be a non-empty mapping"),
    ({"a.b": {}}, "learner names must be non-empty strings without '.'"),
    ({"a": {"x.y": FloatDistribution(0, 1)}}, "parameter names must be non-empty strings"),
    ({"a": {"x": (0, 1)}}, r"learners\['a'\]\['x'\] must be an Optuna distribution"),
    ({"a": [1]}, r"learners\['a'\] must be a mapping"),
])
def test_search_space_validation(learners: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(learners)


@pytest.mark.parametrize(("spec", "default", "expected"), [
    ({"low": 1e-3, "high": 10.0, "log": True}, None, FloatDistribution(1e-3, 10.0, log=True)),
    ({"low": 1, "high": 10, "type": "float"}, None, FloatDistribution(1.0, 10.0)),
    ({"low": 1, "high": 10}, None, IntDistribution(1, 10)),
    ({"high": 5.0}, FloatDistribution(1e-2, 1e2, log=True), FloatDistribution(1e-2, 5.0, log=True)),
    ({"low": 2, "high": 64, "type": "int", "log": True}, None, IntDistribution(2, 64, log=True)),
    ({"low": 10, "high": 100, "step": 10}, IntDistribution(1, 50), IntDistribution(10, 100, step=10)),
    ({"low": 0.0, "high": 1.0, "step": 0.25}, FloatDistribution(0, 1), FloatDistribution(0, 1, step=0.25)),
    ([1, 2, 4], None, CategoricalDistribution([1, 2, 4])),
    ({"choices": ["relu", "tanh"]}, None, CategoricalDistribution(["relu", "tanh"])),
    (0.5, FloatDistribution(0, 1), FloatDistribution(0.5, 0.5)),
    (7, IntDistribution(1, 50), IntDistribution(7, 7)),
    ("relu", CategoricalDistribution(["relu", "tanh"]), CategoricalDistribution(["relu"])),
])
def test_distribution_from_spec(spec: object, default: object, expected: object) -> None:
    assert distribution_from_spec("search.x.p", spec, default) == expected


@pytest.mark.parametrize(("spec", "default", "message"), [
    ({"low": 10.0, "high": 1.0}, FloatDistribution(0, 100), r"search.x.p: low \(10.0\) must be < high \(1.0\)"),
    ({"low": 1.0, "high": 1.0}, FloatDistribution(0, 100), r"low \(1.0\) must be < high"),
    ({"low": 0.0, "high": 1.0, "log": True}, None, r"search.x.p: low \(0.0\) must be > 0 when log = true"),
    ({"low": -1.0}, FloatDistribution(1e-2, 1e2, log=True), "must be > 0 when log = true"),
    ({"low": 1, "hi": 2}, None, "search.x.p: unknown key 'hi'"),
    ({"low": 1, "high": 2, "type": "str"}, None, "type must be 'float' or 'int'"),
    ({"low": "a", "high": 2, "type": "float"}, None, "search.x.p.low must be a finite number"),
    ({"high": 2.0, "type": "float"}, None, "search.x.p.low is required"),
    ({"low": 1.5, "high": 4, "type": "int"}, None, "search.x.p.low must be an integer for type 'int'"),
    ({"low": 1, "high": 4, "log": "yes", "type": "int"}, None, "search.x.p.log must be true or false"),
    ({"low": 1, "high": 4, "step": 0}, IntDistribution(1, 4), "search.x.p.step must be a positive number"),
    ({"low": 1, "high": 4, "step": 1, "log": True}, IntDistribution(1, 4), "step cannot be combined with log"),
    ({"choices": []}, None, "search.x.p.choices must be a non-empty list"),
    ({"choices": [1, 1]}, None, "search.x.p.choices has duplicates"),
    ({"choices": [1], "low": 0}, None, "'choices' cannot be combined"),
    ({"low": 0.0, "high": 1.0}, CategoricalDistribution(["a"]), "this parameter is categorical"),
    (-1.0, FloatDistribution(1e-2, 1e2, log=True), r"search.x.p must be > 0 \(a log-scale parameter\)"),
    (2.5, IntDistribution(1, 4), "search.x.p must be an integer"),
    (float("nan"), FloatDistribution(0, 1), "search.x.p must be a table"),
])
def test_distribution_from_spec_errors(spec: object, default: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distribution_from_spec("search.x.p", spec, default)


def test_format_params_drops_the_learner_prefix() -> None:
    text = format_params({LEARNER_PARAM: "rbf_svm", "rbf_svm.C": 1.23456, "rbf_svm.gamma": 0.001})
    assert text == "learner=rbf_svm, C=1.235, gamma=0.001"
