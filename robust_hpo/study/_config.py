"""Study files (TOML): strict parsing into validated, keyword-only settings objects.

Sections: ``[study]`` (name, storage, n_trials, timeout, seed, sampler, n_jobs, aggregate, threads),
``[data]`` (dataset, classes, n_train, n_test, seed, root, download, image_size), ``[attack]``
(trigger, fraction, target, seed; size, position for "badnets"; epsilon, spacing for
"invisible_grid") *or* ``[[attacks]]`` (several such tables, each with an optional ``name``),
``[search]`` (learners, then one ``[search.<learner>]`` table of parameter overrides each),
``[options.<learner>]`` (fixed, not searched, options of a network family), ``[features]`` (model,
weights, batch_size, cache_dir: pretrained features instead of pixels), ``[constraint]``
(min_accuracy or within_best), ``[report]`` (tolerance).
Unknown keys, wrong types and bad ranges raise ``ValueError("<file>: <key> ...")``; a missing file
raises ``FileNotFoundError`` naming it. Relative paths inside the file are relative to its folder.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json

from robust_hpo.attacks import ThreatModel
from robust_hpo.learners import get_family
from robust_hpo.objective import AGGREGATES, AccuracyConstraint
from robust_hpo.search_space import SearchSpace, distribution_from_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SAMPLERS = ("tpe", "nsga2", "gp", "random")
TRIGGERS = ("badnets", "invisible_grid")
_TRIGGER_KEYS = {"badnets": ("size", "position"), "invisible_grid": ("epsilon", "spacing")}


def _positive_int(key: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer ≥ {minimum}, got {value!r}")


def _number(key: str, value: Any, *, low: float, high: float, open_low: bool = False,
            open_high: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{key} must be a number in {interval}, got {value!r}")


def _string(key: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class StudySettings:
    """``[study]``: which study, where it is stored, and how long and how to sample."""

    name: str
    storage: str | None = None
    n_trials: int | None = 50
    timeout: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    n_jobs: int = 1
    aggregate: str = "max"
    threads: int | None = None

    def __post_init__(self) -> None:
        _string("study.name", self.name)
        _string("study.storage", self.storage, allow_none=True)
        _positive_int("study.n_trials", self.n_trials, allow_none=True)
        _number("study.timeout", self.timeout, low=0.0, high=math.inf, open_low=True, allow_none=True)
        if self.n_trials is None and self.timeout is None:
            raise ValueError("study.n_trials or study.timeout must be given (otherwise the study never ends)")
        _positive_int("study.seed", self.seed, minimum=0)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"study.sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs == 0 \
                or self.n_jobs < -1:
            raise ValueError(f"study.n_jobs must be a positive integer or -1 (all cores), got {self.n_jobs!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"study.aggregate must be one of {list(AGGREGATES)}, got {self.aggregate!r}")
        _positive_int("study.threads", self.threads, allow_none=True)


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """``[data]``: the arguments of :func:`robust_hpo.datasets.load_dataset`."""

    dataset: str = "digits"
    classes: tuple[int | str, ...] | None = None
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0
    root: str | None = None
    download: bool = False
    image_size: int | None = None

    def __post_init__(self) -> None:
        _string("data.dataset", self.dataset)
        if self.classes is not None:
            if not isinstance(self.classes, (list, tuple)) or len(self.classes) < 2 or not all(
                    isinstance(c, (int, str)) and not isinstance(c, bool) for c in self.classes):
                raise ValueError(f"data.classes must be a list of at least two class ids or names, "
                                 f"got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(self.classes))
        _positive_int("data.n_train", self.n_train, allow_none=True)
        _positive_int("data.n_test", self.n_test, allow_none=True)
        _positive_int("data.seed", self.seed, minimum=0)
        _string("data.root", self.root, allow_none=True)
        if not isinstance(self.download, bool):
            raise ValueError(f"data.download must be true or false, got {self.download!r}")
        _positive_int("data.image_size", self.image_size, allow_none=True)

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"classes": self.classes, "n_train": self.n_train, "n_test": self.n_test,
                                  "seed": self.seed, "root": self.root, "download": self.download}
        if self.image_size is not None:
            kwargs["image_size"] = self.image_size
        return kwargs


@dataclass(frozen=True, kw_only=True)
class AttackSettings:
    """``[attack]``: the trigger and :func:`robust_hpo.attacks.poison`'s arguments."""

    trigger: str = "badnets"
    fraction: float = 0.1
    target: str = "next"
    seed: int = 0
    size: int | None = None
    position: str | None = None
    epsilon: float | None = None
    spacing: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _string("attack.name", self.name, allow_none=True)
        if self.trigger not in TRIGGERS:
            raise ValueError(f"attack.trigger must be one of {list(TRIGGERS)}, got {self.trigger!r}")
        for other, keys in _TRIGGER_KEYS.items():
            if other == self.trigger:
                continue
            for key in keys:
                if getattr(self, key) is not None:
                    raise ValueError(f"attack.{key} applies to trigger {other!r}, not {self.trigger!r}")
        _number("attack.fraction", self.fraction, low=0.0, high=1.0, open_low=True, open_high=True)
        _string("attack.target", self.target)
        _positive_int("attack.seed", self.seed, minimum=0)
        _positive_int("attack.size", self.size, allow_none=True)
        _string("attack.position", self.position, allow_none=True)
        _number("attack.epsilon", self.epsilon, low=0.0, high=1.0, open_low=True, allow_none=True)
        _positive_int("attack.spacing", self.spacing, allow_none=True)

    def trigger_kwargs(self) -> dict[str, Any]:
        """The trigger's own keyword arguments that were given (others keep the trigger's defaults)."""
        kwargs = {key: getattr(self, key) for key in _TRIGGER_KEYS[self.trigger] if getattr(self, key) is not None}
        kwargs["seed"] = self.seed
        return kwargs

    def threat_model(self) -> ThreatModel:
        """This attack as a :class:`~robust_hpo.attacks.ThreatModel` (``name`` or a generated one)."""
        return ThreatModel.from_dict({"trigger": self.trigger, "fraction": self.fraction,
                                      "name": self.name or "", **self.trigger_kwargs()})


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """``[search]``: the learner families (registry names) and per-parameter overrides."""

    learners: tuple[str, ...]
    overrides: Mapping[str, Mapping[str, BaseDistribution]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.learners, (list, tuple)) or len(self.learners) == 0 or not all(
                isinstance(n, str) and n for n in self.learners):
            raise ValueError(f"search.learners must be a non-empty list of learner names, got {self.learners!r}")
        if len(set(self.learners)) != len(self.learners):
            raise ValueError(f"search.learners has duplicates: {list(self.learners)}")
        object.__setattr__(self, "learners", tuple(self.learners))
        for name in self.learners:
            try:
                get_family(name)
            except ValueError as exc:
                raise ValueError(f"search.learners: {exc}") from None
        for learner in self.overrides:
            if learner not in self.learners:
                raise ValueError(f"search.{learner}: learner {learner!r} is not in search.learners "
                                 f"{list(self.learners)}")

    def space(self) -> SearchSpace:
        """The conditional search space (families' defaults with the overrides)."""
        return SearchSpace.from_families([get_family(n) for n in self.learners], self.overrides)


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    """``[report]``: ``tolerance`` = how much clean accuracy the recommendation may give up."""

    tolerance: float = 0.01

    def __post_init__(self) -> None:
        _number("report.tolerance", self.tolerance, low=0.0, high=1.0)


FEATURE_WEIGHTS_NONE = "none"
"""``[features] weights`` value for an untrained (seeded) network, TOML having no ``None``."""


@dataclass(frozen=True, kw_only=True)
class FeatureSettings:
    """``[features]``: replace every image by its pretrained features (:func:`robust_hpo.datasets.pretrained.extract_features`).

    ``weights`` is ``"DEFAULT"``, a torchvision weights name, or ``"none"`` (untrained, seeded);
    ``cache_dir`` None = the extractor's default (``<data root>/features``).
    """

    model: str = "alexnet"
    weights: str = "DEFAULT"
    batch_size: int = 64
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        from robust_hpo.datasets.pretrained import FEATURE_MODELS

        if self.model not in FEATURE_MODELS:
            raise ValueError(f"features.model must be one of {sorted(FEATURE_MODELS)}, got {self.model!r}")
        _string("features.weights", self.weights)
        _positive_int("features.batch_size", self.batch_size)
        _string("features.cache_dir", self.cache_dir, allow_none=True)

    @property
    def extractor_weights(self) -> str | None:
        """What ``extract_features(weights=...)`` takes: ``None`` for ``"none"``."""
        return None if self.weights.lower() == FEATURE_WEIGHTS_NONE else self.weights

    def describe(self) -> dict[str, Any]:
        """What defines the features (recorded in the attack description and the stored problem)."""
        return {"model": self.model, "weights": self.weights}


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A whole study file, validated; ``path`` is where it was read from (None if built in code).

    ``attacks`` (from ``[[attacks]]``) is empty for a single-attack study (``[attack]``, as
    ``attack``); otherwise ``attack`` is left at its default and unused. ``options`` maps learner
    names to their fixed options (``[options.<learner>]``).
    """

    study: StudySettings
    data: DataSettings = field(default_factory=DataSettings)
    attack: AttackSettings = field(default_factory=AttackSettings)
    attacks: tuple[AttackSettings, ...] = ()
    search: SearchSettings
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    features: FeatureSettings | None = None
    constraint: AccuracyConstraint | None = None
    report: ReportSettings = field(default_factory=ReportSettings)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attacks, (list, tuple)) or not all(
                isinstance(a, AttackSettings) for a in self.attacks):
            raise ValueError(f"attacks must be a sequence of AttackSettings, got {self.attacks!r}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        if self.attacks:
            targets = {a.target for a in self.attacks}
            if len(targets) > 1:
                raise ValueError(f"attacks: every attack must have the same target (they share one clean set), "
                                 f"got {sorted(targets)}")
            names = self.threat_names()
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"attacks: names must be distinct, repeated {repeated}; give each a `name`")
        for learner in self.options:
            if learner not in self.search.learners:
                raise ValueError(f"unknown key 'options.{learner}'; expected a table named after one of "
                                 f"search.learners {list(self.search.learners)}")

    def threat_names(self) -> list[str]:
        """The attacks' names (``[[attacks]]``), in file order; empty for a single ``[attack]``."""
        return [a.threat_model().name for a in self.attacks]

    def families(self) -> dict[str, Any]:
        """The learner families by name, with ``[options.<learner>]`` fixed through ``with_options``."""
        out: dict[str, Any] = {}
        for name in self.search.learners:
            family = get_family(name)
            out[name] = family.with_options(**self.options[name]) if self.options.get(name) else family
        return out

    def problem(self) -> dict[str, Any]:
        """What defines the optimisation problem (data, attack(s), search space, options, features,
        constraint), JSON-ready. Stored with the study so that resuming with a different problem is
        refused; keys of the newer sections appear only when used (older studies resume unchanged).
        """
        space = self.search.space()
        problem: dict[str, Any] = {
            "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in _public(self.data).items()},
            "attack": _attack_public(self.attack),
            "search": {learner: {p: distribution_to_json(d) for p, d in params.items()}
                       for learner, params in space.learners.items()},
            "constraint": self.constraint.to_dict() if self.constraint is not None else None,
        }
        if self.attacks:
            problem["attacks"] = [{**_attack_public(a), "name": name}
                                  for a, name in zip(self.attacks, self.threat_names())]
            problem["aggregate"] = self.study.aggregate
        if any(self.options.values()):
            problem["options"] = {k: dict(v) for k, v in self.options.items() if v}
        if self.features is not None:
            problem["features"] = self.features.describe()
        return problem


def _attack_public(attack: AttackSettings) -> dict[str, Any]:
    return {k: v for k, v in _public(attack).items() if not (k == "name" and v is None)}


def _public(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


_SECTIONS: dict[str, type] = {"study": StudySettings, "data": DataSettings, "attack": AttackSettings,
                              "attacks": AttackSettings, "search": SearchSettings, "options": dict,
                              "features": FeatureSettings, "constraint": AccuracyConstraint,
                              "report": ReportSettings}
_REQUIRED = ("study", "search")


def load_study_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study file; every error names the file and the key.

    ``overrides`` maps dotted keys (``"data.root"``, ``"features.weights"``) to values that replace
    the file's before validation (missing tables are created); relative paths given there are
    relative to the file's folder like the file's own (pass absolute paths for others).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        raw = apply_overrides(raw, overrides or {})
        return parse_study_config(raw, base=path.parent, path=path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted key of ``overrides`` set (``"a.b.c"`` -> ``raw[a][b][c]``)."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        parts = dotted.split(".") if isinstance(dotted, str) else []
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"override key must be 'section.key' (e.g. 'data.root'), got {dotted!r}")
        table = out
        for depth, part in enumerate(parts[:-1]):
            child = table.get(part)
            if child is None:
                child = table[part] = {}
            elif isinstance(child, Mapping):
                child = table[part] = dict(child)
            else:
                raise ValueError(f"cannot override {dotted!r}: {'.'.join(parts[:depth + 1])} is not a table")
            table = child
        table[parts[-1]] = value
    return out


def parse_study_config(raw: Mapping[str, Any], *, base: Path = Path("."), path: Path | None = None) -> StudyConfig:
    """Validate a parsed TOML mapping (errors name the key, not the file)."""
    for section in raw:
        if section not in _SECTIONS:
            raise ValueError(f"unknown section [{section}]; expected some of {list(_SECTIONS)}")
        if section == "attacks":
            if not isinstance(raw[section], list) or not raw[section] or not all(
                    isinstance(t, Mapping) for t in raw[section]):
                raise ValueError(f"attacks must be an array of tables [[attacks]], got {raw[section]!r}")
        elif not isinstance(raw[section], Mapping):
            raise ValueError(f"{section} must be a table [{section}], got {raw[section]!r}")
    for section in _REQUIRED:
        if section not in raw:
            raise ValueError(f"missing section [{section}]")
    if "attack" in raw and "attacks" in raw:
        raise ValueError("give either [attack] (one attack) or [[attacks]] (several), not both")
    study = dict(_known(raw["study"], StudySettings, "study"))
    if "storage" in study and isinstance(study["storage"], str) and "://" not in study["storage"]:
        study["storage"] = str(base / study["storage"])
    data = dict(_known(raw.get("data", {}), DataSettings, "data"))
    if isinstance(data.get("root"), str):
        data["root"] = str(base / Path(data["root"]).expanduser())
    if "timeout" in study and isinstance(study["timeout"], int) and not isinstance(study["timeout"], bool):
        study["timeout"] = float(study["timeout"])
    settings = StudySettings(**study)
    attack_table = _known(raw.get("attack", {}), AttackSettings, "attack")
    if "name" in attack_table:
        raise ValueError("attack.name applies to [[attacks]] entries only (a single attack needs no name)")
    search = _parse_search(raw["search"])
    features = None
    if "features" in raw:
        table = dict(_known(raw["features"], FeatureSettings, "features"))
        if isinstance(table.get("cache_dir"), str):
            table["cache_dir"] = str(base / Path(table["cache_dir"]).expanduser())
        features = FeatureSettings(**table)
    return StudyConfig(
        study=settings,
        data=DataSettings(**data),
        attack=AttackSettings(**attack_table),
        attacks=_parse_attacks(raw.get("attacks", [])),
        search=search,
        options=_parse_options(raw.get("options", {}), search),
        features=features,
        constraint=_parse_constraint(raw.get("constraint")),
        report=ReportSettings(**_known(raw.get("report", {}), ReportSettings, "report")),
        path=path,
    )


def _parse_attacks(tables: list[Mapping[str, Any]]) -> tuple[AttackSettings, ...]:
    """``[[attacks]]``: each table validated like ``[attack]``; errors say ``attacks[i].<key>``."""
    out = []
    for i, table in enumerate(tables):
        where = f"attacks[{i}]"
        try:
            settings = AttackSettings(**_known(table, AttackSettings, "attack"))
            settings.threat_model()  # the trigger's own checks (e.g. position names)
        except ValueError as exc:
            message = str(exc)
            message = message.replace("'attack.", f"'{where}.").replace("attack.", f"{where}.")
            raise ValueError(message if message.startswith(("unknown key", where)) else f"{where}: {message}") \
                from None
        out.append(settings)
    return tuple(out)


def _parse_options(table: Mapping[str, Any], search: SearchSettings) -> dict[str, dict[str, Any]]:
    """``[options.<learner>]``: fixed options of network families (``with_options`` keyword arguments)."""
    options: dict[str, dict[str, Any]] = {}
    if not table:
        return options
    space = search.space()
    for learner, values in table.items():
        if learner not in search.learners:
            raise ValueError(f"unknown key 'options.{learner}'; expected a table named after one of "
                             f"search.learners {list(search.learners)}")
        if not isinstance(values, Mapping):
            raise ValueError(f"options.{learner} must be a table of fixed options, got {values!r}")
        family = get_family(learner)
        if not callable(getattr(family, "with_options", None)):
            raise ValueError(f"options.{learner}: learner {learner!r} takes no fixed options (only network "
                             "families do); set its parameters in [search.{learner}]".replace("{learner}", learner))
        from robust_hpo.learners.networks import PARAM_KEYS

        for key in values:
            if key not in PARAM_KEYS:
                raise ValueError(f"unknown key 'options.{learner}.{key}'; expected some of {sorted(PARAM_KEYS)}")
            if key in space.learners.get(learner, {}):
                raise ValueError(f"options.{learner}.{key} is searched; fix it in [search.{learner}] instead "
                                 f"({key} = <value>)")
        try:
            family.with_options(**values).configs({})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"options.{learner}: {exc}") from None
        options[learner] = dict(values)
    return options


def _known(table: Mapping[str, Any], cls: type, section: str) -> dict[str, Any]:
    allowed = [f.name for f in fields(cls) if f.init and f.name != "path"]
    for key in table:
        if key not in allowed:
            raise ValueError(f"unknown key '{section}.{key}'; expected some of {allowed}")
    for f in fields(cls):
        if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in table:
            raise ValueError(f"{section}.{f.name} is required")
    return dict(table)


def _parse_search(table: Mapping[str, Any]) -> SearchSettings:
    if "learners" not in table:
        raise ValueError("search.learners is required (a list of learner names)")
    learners = table["learners"]
    overrides: dict[str, dict[str, BaseDistribution]] = {}
    defaults: dict[str, dict[str, BaseDistribution]] = {}
    if isinstance(learners, list) and all(isinstance(n, str) for n in learners):
        for name in learners:
            try:
                defaults[name] = get_family(name).search_space()
            except ValueError as exc:
                raise ValueError(f"search.learners: {exc}") from None
    for key, value in table.items():
        if key == "learners":
            continue
        if key not in defaults:
            raise ValueError(f"unknown key 'search.{key}'; expected 'learners' or a table named after "
                             f"one of search.learners {list(defaults)}")
        if not isinstance(value, Mapping):
            raise ValueError(f"search.{key} must be a table of parameter ranges, got {value!r}")
        overrides[key] = {}
        for param, spec in value.items():
            if param not in defaults[key]:
                raise ValueError(f"unknown key 'search.{key}.{param}': learner {key!r} has parameters "
                                 f"{sorted(defaults[key])}")
            overrides[key][param] = distribution_from_spec(f"search.{key}.{param}", spec, defaults[key][param])
    return SearchSettings(learners=tuple(learners) if isinstance(learners, list) else learners,
                          overrides=overrides)


def _parse_constraint(table: Mapping[str, Any] | None) -> AccuracyConstraint | None:
    if table is None:
        return None
    values = _known(table, AccuracyConstraint, "constraint")
    try:
        return AccuracyConstraint(**values)
    except ValueError as exc:
        message = str(exc)
        prefix = "constraint." if message.startswith(("min_accuracy", "within_best")) else "constraint: "
        raise ValueError(prefix + message) from None
