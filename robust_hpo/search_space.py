"""Conditional hyperparameter search spaces: a categorical learner choice, then that learner's parameters.

A :class:`SearchSpace` maps each learner name to its parameters' Optuna distributions
(``FloatDistribution`` / ``IntDistribution``, linear or log, optional step; ``CategoricalDistribution``).
Trial parameter names are ``"learner"`` (the categorical choice) and ``"<learner>.<param>"`` (e.g.
``"rbf_svm.gamma"``), so each learner's parameters live in their own dimension and a conditional
parameter (``gamma`` only for ``rbf_svm``) is only suggested when its learner is chosen. Network
parameters such as ``epochs`` (int) and ``width`` (int, log) are declared the same way.

:func:`distribution_from_spec` turns a TOML-style spec into a distribution, with errors naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from robust_hpo.errors import ValidationError

LEARNER_PARAM = "learner"
"""Name of the categorical learner-choice parameter in every trial."""

_SEPARATOR = "."


def param_name(learner: str, param: str) -> str:
    """The trial parameter name of ``param`` of ``learner``: ``"<learner>.<param>"``."""
    return f"{learner}{_SEPARATOR}{param}"


def learner_config(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Flat trial params -> (learner name, {hyperparameter: value}), without a search space.

    Accepts the plugin's layout (``{"learner": "rbf_svm", "rbf_svm.C": 1.0, "rbf_svm.gamma": 0.01}``)
    and the plain one (``{"learner": "rbf_svm", "C": 1.0, "gamma": 0.01}``).
    :meth:`SearchSpace.split_params` does the same and checks the values against the space.
    """
    if LEARNER_PARAM not in params:
        raise ValidationError(f"trial params must contain {LEARNER_PARAM!r} (the learner name); "
                              f"got keys {sorted(params)}")
    learner = params[LEARNER_PARAM]
    if not isinstance(learner, str) or not learner:
        raise ValidationError(f"trial params[{LEARNER_PARAM!r}] must be a learner name, got {learner!r}")
    prefix = param_name(learner, "")
    own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    if not own:
        own = {k: v for k, v in params.items() if k != LEARNER_PARAM and _SEPARATOR not in k}
    return learner, own


def format_values(params: Mapping[str, Any]) -> str:
    """A learner's hyperparameters as text: ``C=1.2, gamma=0.003``."""
    return ", ".join(f"{name}={_format_value(value)}" for name, value in params.items())


def format_config(learner: str, params: Mapping[str, Any]) -> str:
    """A configuration as text: ``rbf_svm C=1.2, gamma=0.003`` (``learner`` alone without params)."""
    text = format_values(params)
    return f"{learner} {text}" if text else learner


def format_params(params: Mapping[str, Any]) -> str:
    """Flat trial params as ``learner=rbf_svm, C=1.2, gamma=0.003`` (learner prefixes dropped)."""
    learner = params.get(LEARNER_PARAM)
    parts = [f"{LEARNER_PARAM}={learner}"] if learner is not None else []
    prefix = param_name(learner, "") if learner is not None else ""
    for name, value in params.items():
        if name == LEARNER_PARAM:
            continue
        short = name[len(prefix):] if prefix and name.startswith(prefix) else name
        parts.append(f"{short}={_format_value(value)}")
    return ", ".join(parts)


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, eq=False)
class SearchSpace:
    """Learner name -> {parameter name -> Optuna distribution}; learner order is the choice order.

    Parameters of a learner with an empty mapping are none (the learner is fitted with defaults).
    """

    learners: Mapping[str, Mapping[str, BaseDistribution]]

    def __post_init__(self) -> None:
        if not isinstance(self.learners, Mapping) or len(self.learners) == 0:
            raise ValidationError("learners must be a non-empty mapping of learner name -> {param: distribution}")
        frozen: dict[str, Mapping[str, BaseDistribution]] = {}
        for learner, params in self.learners.items():
            if not isinstance(learner, str) or not learner or _SEPARATOR in learner:
                raise ValidationError(f"learners: learner names must be non-empty strings without "
                                 f"{_SEPARATOR!r}, got {learner!r}")
            if not isinstance(params, Mapping):
                raise ValidationError(f"learners[{learner!r}] must be a mapping of param name -> distribution, "
                                 f"got {type(params).__name__}")
            for name, dist in params.items():
                if not isinstance(name, str) or not name or _SEPARATOR in name:
                    raise ValidationError(f"learners[{learner!r}]: parameter names must be non-empty strings "
                                     f"without {_SEPARATOR!r}, got {name!r}")
                if not isinstance(dist, BaseDistribution):
                    raise ValidationError(f"learners[{learner!r}][{name!r}] must be an Optuna distribution, "
                                     f"got {type(dist).__name__}")
            frozen[learner] = MappingProxyType(dict(params))
        object.__setattr__(self, "learners", MappingProxyType(frozen))

    @classmethod
    def from_families(cls, families: Sequence[Any],
                      overrides: Mapping[str, Mapping[str, BaseDistribution]] | None = None) -> SearchSpace:
        """Each family's default ``search_space()``, with ``overrides[learner][param]`` replacing entries.

        Overriding a parameter a family does not declare raises ``ValueError`` (the family would not
        accept it).
        """
        overrides = dict(overrides or {})
        names = [f.name for f in families]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValidationError(f"overrides: no learner {unknown[0]!r} in the search; expected one of {names}")
        learners: dict[str, dict[str, BaseDistribution]] = {}
        for family in families:
            if family.name in learners:
                raise ValidationError(f"families: learner {family.name!r} is listed twice")
            space = dict(family.search_space())
            for param, dist in overrides.get(family.name, {}).items():
                if param not in space:
                    raise ValidationError(f"overrides[{family.name!r}]: unknown parameter {param!r}; "
                                     f"learner {family.name!r} has {sorted(space)}")
                space[param] = dist
            learners[family.name] = space
        return cls(learners)

    @property
    def learner_names(self) -> tuple[str, ...]:
        return tuple(self.learners)

    def distributions(self) -> dict[str, BaseDistribution]:
        """The flat union of every trial parameter (OptunaHub ``BaseProblem.search_space`` shape)."""
        flat: dict[str, BaseDistribution] = {LEARNER_PARAM: CategoricalDistribution(self.learner_names)}
        for learner, params in self.learners.items():
            for name, dist in params.items():
                flat[param_name(learner, name)] = dist
        return flat

    def suggest(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        """Suggest the learner, then only its parameters; returns (learner, {param: value})."""
        learner = trial.suggest_categorical(LEARNER_PARAM, self.learner_names)
        params = {name: _suggest(trial, param_name(learner, name), dist)
                  for name, dist in self.learners[learner].items()}
        return learner, params

    def split_params(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Flat trial params (as in ``FrozenTrial.params``) -> (learner, {param: value}).

        Other learners' parameters are ignored; a missing or out-of-range one raises ``ValueError``.
        """
        if LEARNER_PARAM not in params:
            raise ValidationError(f"params must contain {LEARNER_PARAM!r}; got keys {sorted(params)}")
        learner = params[LEARNER_PARAM]
        if learner not in self.learners:
            raise ValidationError(f"params[{LEARNER_PARAM!r}] must be one of {list(self.learner_names)}, "
                             f"got {learner!r}")
        own: dict[str, Any] = {}
        for name, dist in self.learners[learner].items():
            key = param_name(learner, name)
            if key not in params:
                raise ValidationError(f"params is missing {key!r} for learner {learner!r}")
            if not _contains(dist, params[key]):
                raise ValidationError(f"params[{key!r}] = {params[key]!r} is outside its distribution {dist}")
            own[name] = params[key]
        return learner, own


def _contains(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return bool(dist.low <= value <= dist.high)  # type: ignore[attr-defined]


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Suggest through the public ``trial.suggest_*`` API for ``dist``."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise ValidationError(f"{name}: unsupported distribution {type(dist).__name__}; expected Float, Int or "
                     f"Categorical")


_SPEC_KEYS = ("type", "low", "high", "log", "step", "choices")


def distribution_from_spec(key: str, spec: Any, default: BaseDistribution | None = None) -> BaseDistribution:
    """A distribution from a TOML-style ``spec``; errors are ``ValueError`` starting with ``key``.

    Forms: a table ``{low, high, log = false, step, type = "float" | "int"}`` (missing entries are
    taken from ``default``; without one, integer bounds mean ``type = "int"``); a table
    ``{choices = [...]}`` or a bare list (categorical); a bare scalar (the parameter is fixed to it).
    ``low < high`` is required, and ``low > 0`` with ``log``.
    """
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, Mapping):
        return _fixed(key, spec, default)
    unknown = [k for k in spec if k not in _SPEC_KEYS]
    if unknown:
        raise ValidationError(f"{key}: unknown key {unknown[0]!r}; expected some of {list(_SPEC_KEYS)}")
    if "choices" in spec:
        extra = [k for k in spec if k != "choices"]
        if extra:
            raise ValidationError(f"{key}: 'choices' cannot be combined with {extra}")
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) == 0:
            raise ValidationError(f"{key}.choices must be a non-empty list, got {choices!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ValidationError(f"{key}.choices has duplicates: {choices!r}")
        _check_values(key, choices, default)
        return CategoricalDistribution(choices)
    if isinstance(default, CategoricalDistribution):
        raise ValidationError(f"{key}: this parameter is categorical; give 'choices' (a list), got {dict(spec)}")
    kind = spec.get("type", _kind(default) if default is not None else _inferred_kind(spec))
    if kind not in ("float", "int"):
        raise ValidationError(f"{key}.type must be 'float' or 'int', got {kind!r}")
    low = spec.get("low", getattr(default, "low", None))
    high = spec.get("high", getattr(default, "high", None))
    log = spec.get("log", getattr(default, "log", False) if _kind(default) == kind else False)
    step = spec.get("step", None)
    for name, value in (("low", low), ("high", high)):
        if value is None:
            raise ValidationError(f"{key}.{name} is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(f"{key}.{name} must be a finite number, got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise ValidationError(f"{key}.{name} must be an integer for type 'int', got {value!r}")
    if not isinstance(log, bool):
        raise ValidationError(f"{key}.log must be true or false, got {log!r}")
    if low >= high:
        raise ValidationError(f"{key}: low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise ValidationError(f"{key}: low ({low}) must be > 0 when log = true")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ValidationError(f"{key}.step must be a positive number, got {step!r}")
        if log:
            raise ValidationError(f"{key}: step cannot be combined with log = true")
        if kind == "int" and not float(step).is_integer():
            raise ValidationError(f"{key}.step must be an integer for type 'int', got {step!r}")
    if kind == "int":
        return IntDistribution(int(low), int(high), log=log, step=int(step) if step is not None else 1)
    return FloatDistribution(float(low), float(high), log=log, step=float(step) if step is not None else None)


def _inferred_kind(spec: Mapping[str, Any]) -> str:
    """"int" when every given bound is an integer literal, else "float"."""
    bounds = [spec[k] for k in ("low", "high") if k in spec]
    return "int" if bounds and all(type(b) is int for b in bounds) else "float"


def _kind(dist: BaseDistribution | None) -> str | None:
    if isinstance(dist, IntDistribution):
        return "int"
    if isinstance(dist, FloatDistribution):
        return "float"
    return None


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return "text" if isinstance(value, str) else type(value).__name__


def _check_values(key: str, values: list[Any], default: BaseDistribution | None) -> None:
    """Choices (or a fixed value) of the kind the family's parameter takes: numbers (integers for an
    integer parameter, > 0 on a log scale) for a numeric one, the kinds of its default choices for a
    categorical one. Anything else would fail every trial."""
    if isinstance(default, (FloatDistribution, IntDistribution)):
        integer = isinstance(default, IntDistribution)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (integer and not float(value).is_integer()):
                expected = "integers" if integer else "finite numbers"
                raise ValidationError(f"{key} must hold {expected} (the parameter is numeric), got {value!r}")
            if default.log and value <= 0:
                raise ValidationError(f"{key} must hold numbers > 0 (a log-scale parameter), got {value!r}")
    elif isinstance(default, CategoricalDistribution):
        kinds = {_value_kind(choice) for choice in default.choices}
        for value in values:
            if _value_kind(value) not in kinds:
                raise ValidationError(f"{key}: {value!r} is {_value_kind(value)}, but the parameter takes "
                                      f"{' or '.join(sorted(kinds))} (such as {list(default.choices)})")


def _fixed(key: str, value: Any, default: BaseDistribution | None) -> BaseDistribution:
    """A one-point distribution: the parameter is fixed to ``value``."""
    if isinstance(default, (FloatDistribution, IntDistribution)) and isinstance(value, (str, bool)):
        raise ValidationError(f"{key} must be a number (the parameter is numeric), got {value!r}")
    if isinstance(default, CategoricalDistribution):
        _check_values(key, [value], default)
    if isinstance(default, CategoricalDistribution) or isinstance(value, (str, bool)):
        return CategoricalDistribution([value])
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{key} must be a table {{low, high, ...}}, a list of choices or a finite value, "
                         f"got {value!r}")
    if isinstance(default, IntDistribution) or (default is None and isinstance(value, int)):
        if not float(value).is_integer():
            raise ValidationError(f"{key} must be an integer, got {value!r}")
        return IntDistribution(int(value), int(value))
    if isinstance(default, FloatDistribution) and default.log and value <= 0:
        raise ValidationError(f"{key} must be > 0 (a log-scale parameter), got {value!r}")
    return FloatDistribution(float(value), float(value))
