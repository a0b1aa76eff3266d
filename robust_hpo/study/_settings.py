"""A study's settings: validated, keyword-only dataclasses, one per study-file section.

Each class declares its parameter constraints (:mod:`robust_hpo._validation`) next to its fields;
errors name the study-file key (``study.n_trials must be a positive integer, got 0``). The attacks
are always a list (``StudyConfig.attacks``): a study file's single ``[attack]`` is a list of one.
Parsing study files is :mod:`robust_hpo.study._toml`; the JSON form stored with a study is
:mod:`robust_hpo.study._problem`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, fields
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

from optuna.distributions import BaseDistribution

from robust_hpo._validation import BOOLEAN, NON_EMPTY_STRING, ConstraintSpec, Interval, Options, Satisfies, check
from robust_hpo.attacks import POLICIES, TRIGGERS, ThreatModel, trigger_class
from robust_hpo.errors import ValidationError
from robust_hpo.learners import get_family
from robust_hpo.objective import AGGREGATES, DEFAULT_TOLERANCE, OBJECTIVES, AccuracyConstraint
from robust_hpo.search_space import SearchSpace
from robust_hpo.study._sampling import SAMPLERS
from robust_hpo.study._storage import Heartbeat

FEATURE_WEIGHTS_NONE = "none"
"""``[features] weights`` value for an untrained (seeded) network, TOML having no ``None``."""

_POSITIVE = Interval(Integral, 1, None)
_NON_NEGATIVE = Interval(Integral, 0, None)
SEED_MAX = 2**32 - 1
"""Largest seed: NumPy's legacy ``RandomState`` (scikit-learn's ``random_state``) takes 0..2**32 - 1."""
_SEED = Satisfies(lambda v: isinstance(v, Integral) and not isinstance(v, bool) and 0 <= v <= SEED_MAX,
                  f"an integer in [0, {SEED_MAX}] (NumPy's seed range)")


def _validate(settings: Any, section: str) -> None:
    """Check every field of ``settings`` against its class's ``constraints`` (keys ``section.field``)."""
    for name, constraints in type(settings).constraints.items():
        check(f"{section}.{name}", getattr(settings, name), constraints)


@dataclass(frozen=True, kw_only=True)
class StudySettings:
    """``[study]``: which study, where it is stored, how long and how to sample, and the second objective
    (``objective``: the paper's ``"slope"`` by default, or ``"predicted_backdoor_accuracy"`` /
    ``"normalised_margin"`` from the same solve; always minimised)."""

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "name": [NON_EMPTY_STRING],
        "storage": [NON_EMPTY_STRING, None],
        "n_trials": [_POSITIVE, None],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "seed": [_SEED],
        "sampler": [Options(SAMPLERS)],
        "n_jobs": [_POSITIVE, Options([-1])],
        "aggregate": [Options(AGGREGATES)],
        "objective": [Options(OBJECTIVES)],
        "threads": [_POSITIVE, None],
        "heartbeat_interval": [_POSITIVE],
        "grace_period": [_POSITIVE],
        "max_retry": [_NON_NEGATIVE],
    }

    name: str
    storage: str | None = None
    n_trials: int | None = 50
    timeout: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    n_jobs: int = 1
    aggregate: str = "max"
    objective: str = "slope"
    threads: int | None = None
    heartbeat_interval: int = Heartbeat.interval
    grace_period: int = Heartbeat.grace_period
    max_retry: int = 3

    def __post_init__(self) -> None:
        _validate(self, "study")
        if self.n_trials is None and self.timeout is None:
            raise ValidationError("study.n_trials or study.timeout must be given (otherwise the study never ends)")
        try:
            self.heartbeat()
        except ValidationError as exc:
            raise ValidationError(f"study.{exc}") from None

    def heartbeat(self) -> Heartbeat:
        """The RDB heartbeat and retry settings (``heartbeat_interval``, ``grace_period``, ``max_retry``)."""
        return Heartbeat(interval=self.heartbeat_interval, grace_period=self.grace_period, max_retry=self.max_retry)


DATA_FILES = ("csv", "npz")
"""``[data] dataset`` values that read one file of yours (``path``; ``label`` for CSV)."""

_CLASS_IDS = Satisfies(
    lambda v: isinstance(v, (list, tuple)) and len(v) >= 2
    and all(isinstance(c, (int, str)) and not isinstance(c, bool) for c in v),
    "a list of at least two class ids or names")


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """``[data]``: the arguments of :func:`robust_hpo.datasets.load_dataset`.

    ``root`` is where the data lie on this machine (the other fields say which data they are).
    """

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "dataset": [NON_EMPTY_STRING],
        "classes": [_CLASS_IDS, None],
        "n_train": [_POSITIVE, None],
        "n_test": [_POSITIVE, None],
        "seed": [_SEED],
        "root": [NON_EMPTY_STRING, None],
        "download": [BOOLEAN],
        "image_size": [_POSITIVE, None],
        "path": [NON_EMPTY_STRING, None],
        "label": [NON_EMPTY_STRING, None],
        "standardize": [BOOLEAN],
    }

    dataset: str = "digits"
    classes: tuple[int | str, ...] | None = None
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0
    root: str | None = None
    download: bool = False
    image_size: int | None = None
    path: str | None = None
    label: str | None = None
    standardize: bool = False

    def __post_init__(self) -> None:
        _validate(self, "data")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        if self.dataset in DATA_FILES:
            if self.path is None:
                raise ValidationError(f"data.path is required for dataset {self.dataset!r} (the file to read, "
                                      "relative to the study file)")
            for key in ("root", "image_size"):
                if getattr(self, key) is not None:
                    raise ValidationError(f"data.{key} does not apply to dataset {self.dataset!r} (it reads data.path)")
            if self.download:
                raise ValidationError(f"data.download does not apply to dataset {self.dataset!r} (it reads data.path)")
            if self.dataset == "csv" and self.label is None:
                raise ValidationError("data.label is required for dataset 'csv' (the name of the label column)")
            if self.dataset != "csv" and self.label is not None:
                raise ValidationError(f"data.label applies to dataset 'csv' only, not {self.dataset!r}")
        else:
            for key in ("path", "label"):
                if getattr(self, key) is not None:
                    raise ValidationError(f"data.{key} applies to datasets {list(DATA_FILES)} only, not "
                                          f"{self.dataset!r}")

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"classes": self.classes, "n_train": self.n_train, "n_test": self.n_test,
                                  "seed": self.seed, "root": self.root, "download": self.download}
        if self.image_size is not None:
            kwargs["image_size"] = self.image_size
        if self.dataset in DATA_FILES:
            kwargs.update(path=self.path, label=self.label)
        if self.standardize:
            kwargs["standardize"] = True
        return kwargs


ATTACK_KEYS = ("trigger", "fraction", "target", "seed", "name")
"""The keys every attack table has; the others are the trigger's own parameters."""


@dataclass(frozen=True, kw_only=True)
class AttackSettings:
    """One attack (an entry of ``[[attacks]]``, or the single ``[attack]``): a registered trigger, its
    own parameters (``params``: the trigger class's declared parameters, defaults filled in) and
    :func:`robust_hpo.attacks.poison_many`'s arguments. ``name`` defaults to the threat model's
    generated name (``badnets-3px-bottom-right-10%``). ``where`` names the table in errors
    (``attacks[1]``)."""

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "trigger": [Options(TRIGGERS)],
        "fraction": [Interval(Real, 0, 1, closed="neither")],
        "target": [Options(POLICIES), NON_EMPTY_STRING, _NON_NEGATIVE],
        "seed": [_SEED],
        "name": [NON_EMPTY_STRING, None],
    }

    trigger: str = "badnets"
    fraction: float = 0.1
    target: str | int = "next"
    seed: int = 0
    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    where: InitVar[str] = "attack"

    def __post_init__(self, where: str) -> None:
        _validate(self, where)
        cls = trigger_class(self.trigger, name=f"{where}.trigger")
        declared = cls.parameters()
        if not isinstance(self.params, Mapping):
            raise ValidationError(f"{where}: params must be a mapping of the trigger's parameters, got {self.params!r}")
        for key in self.params:
            if key not in declared:
                owners = [kind for kind, other in TRIGGERS.items() if key in other.parameters()]
                if owners:
                    raise ValidationError(f"{where}.{key} applies to trigger {owners[0]!r}, not {self.trigger!r}")
                raise ValidationError(f"unknown key '{where}.{key}'; expected some of "
                                      f"{[*ATTACK_KEYS, *declared]}")
        params = {}
        for key, parameter in declared.items():
            value = self.params.get(key, parameter.default)
            check(f"{where}.{key}", value, parameter.constraints, note=parameter.help)
            params[key] = value
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "name", self.threat_model().name)  # the trigger's own checks; the default name

    def threat_model(self) -> ThreatModel:
        """This attack as a :class:`~robust_hpo.attacks.ThreatModel`."""
        trigger = TRIGGERS[self.trigger](**self.params, seed=self.seed)
        return ThreatModel(trigger=trigger, fraction=self.fraction, name=self.name or "")

    def table(self) -> dict[str, Any]:
        """The attack as a study-file table (the form stored with the study too)."""
        return {"name": self.name, "trigger": self.trigger, "fraction": self.fraction, "target": self.target,
                "seed": self.seed, **self.params}

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "attack") -> AttackSettings:
        """From a study-file table: the common keys, and the trigger's own parameters."""
        common = {key: table[key] for key in ATTACK_KEYS if key in table}
        params = {key: value for key, value in table.items() if key not in ATTACK_KEYS}
        return cls(**common, params=params, where=where)


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """``[search]``: the learner families (registry names), per-parameter overrides, and ``scale``
    (``"standard"``: every convex learner behind a StandardScaler fitted on the β-weighted set;
    ``"none"``, the default: bare)."""

    learners: tuple[str, ...]
    overrides: Mapping[str, Mapping[str, BaseDistribution]] = field(default_factory=dict)
    scale: str = "none"

    def __post_init__(self) -> None:
        check("search.learners", self.learners, [Satisfies(
            lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(n, str) and n for n in v),
            "a non-empty list of learner names")])
        if len(set(self.learners)) != len(self.learners):
            raise ValidationError(f"search.learners has duplicates: {list(self.learners)}")
        object.__setattr__(self, "learners", tuple(self.learners))
        if self.scale not in SCALES:
            raise ValidationError(f"search.scale must be one of {list(SCALES)}, got {self.scale!r}")
        for name in self.learners:
            try:
                get_family(name)
            except ValidationError as exc:
                raise ValidationError(f"search.learners: {exc}") from None
        for learner in self.overrides:
            if learner not in self.learners:
                raise ValidationError(f"search.{learner}: learner {learner!r} is not in search.learners "
                                      f"{list(self.learners)}")

    def space(self) -> SearchSpace:
        """The conditional search space (families' defaults with the overrides)."""
        return SearchSpace.from_families([get_family(n) for n in self.learners], self.overrides)


SCALES = ("none", "standard")
"""``[search] scale`` values."""


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    """``[report]``: ``tolerance`` = how much clean accuracy the recommendation may give up."""

    constraints: ClassVar[dict[str, ConstraintSpec]] = {"tolerance": [Interval(Real, 0, 1)]}

    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        _validate(self, "report")


@dataclass(frozen=True, kw_only=True)
class FeatureSettings:
    """``[features]``: replace every image by its pretrained features
    (:func:`robust_hpo.datasets.pretrained.extract_features`).

    ``weights`` is ``"DEFAULT"``, a torchvision weights name, or ``"none"`` (untrained, seeded);
    ``cache_dir`` None = the extractor's default (``<data root>/features``). ``model`` and
    ``weights`` define the features; ``batch_size`` and ``cache_dir`` only how they are computed.
    """

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "weights": [NON_EMPTY_STRING],
        "batch_size": [_POSITIVE],
        "cache_dir": [NON_EMPTY_STRING, None],
    }

    model: str = "alexnet"
    weights: str = "DEFAULT"
    batch_size: int = 64
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        from robust_hpo.datasets.pretrained import FEATURE_MODELS

        check("features.model", self.model, [Options(FEATURE_MODELS)])
        _validate(self, "features")

    @property
    def extractor_weights(self) -> str | None:
        """What ``extract_features(weights=...)`` takes: ``None`` for ``"none"``."""
        return None if self.weights.lower() == FEATURE_WEIGHTS_NONE else self.weights

    def describe(self) -> dict[str, Any]:
        """What defines the features (recorded in the attack description and the stored problem)."""
        return {"model": self.model, "weights": self.weights}


MIN_CLEAN_PER_CLASS = 2
"""Clean training points per class a study must keep after poisoning (fewer fail every trial)."""


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A whole study file, validated; ``path`` is where it was read from (None if built in code).

    ``attacks`` is never empty: the file's ``[[attacks]]`` tables, or its single ``[attack]`` (the
    default attack when neither is given). ``options`` maps learner names to their fixed options
    (``[options.<learner>]``).
    """

    study: StudySettings
    data: DataSettings = field(default_factory=DataSettings)
    attacks: tuple[AttackSettings, ...] = (AttackSettings(),)
    search: SearchSettings
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    features: FeatureSettings | None = None
    constraint: AccuracyConstraint | None = None
    report: ReportSettings = field(default_factory=ReportSettings)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attacks, (list, tuple)) or not self.attacks or not all(
                isinstance(a, AttackSettings) for a in self.attacks):
            raise ValidationError(f"attacks must be a non-empty sequence of AttackSettings, got {self.attacks!r}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        targets = {a.target for a in self.attacks}
        if len(targets) > 1:
            raise ValidationError(f"attacks: every attack must have the same target (they share one clean set), "
                                  f"got {sorted(targets)}")
        names = self.threat_names()
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValidationError(f"attacks: names must be distinct, repeated {repeated}; give each a `name`")
        for learner in self.options:
            if learner not in self.search.learners:
                raise ValidationError(f"unknown key 'options.{learner}'; expected a table named after one of "
                                      f"search.learners {list(self.search.learners)}")
        binary = self.binary_learners()
        if binary and self.data.classes is not None and len(self.data.classes) != 2:
            raise ValidationError(
                f"data.classes must name exactly two classes for the learners {binary} (their exact slope is "
                f"binary only), got {list(self.data.classes)}; pick a pair such as [3, 8], or search network "
                "learners only")
        self._check_clean_points()

    def _check_clean_points(self) -> None:
        """Refuse ``n_train`` and attack fractions that leave too few clean training points for every
        class (each trial would fail): the poison takes ``round(max fraction · n_train)`` points."""
        n = self.data.n_train
        if n is None:
            return
        classes = len(self.data.classes) if self.data.classes is not None else 2
        poison = max(int(math.floor(a.fraction * n + 0.5)) for a in self.attacks)
        needed = MIN_CLEAN_PER_CLASS * classes
        if n - poison < needed:
            fractions = ", ".join(f"{a.fraction:g}" for a in self.attacks)
            raise ValidationError(
                f"data.n_train = {n} with attack fraction {fractions} leaves {n - poison} clean training "
                f"point(s) after {poison} are poisoned; every trial needs at least {needed} ({MIN_CLEAN_PER_CLASS} "
                f"per class) — raise data.n_train or lower the fraction")

    def binary_learners(self) -> list[str]:
        """The searched learners whose families take two classes only (`binary_only`; none of the built-in ones)."""
        return [name for name in self.search.learners if getattr(get_family(name), "binary_only", False)]

    def threat_names(self) -> list[str]:
        """The attacks' names (given or generated), in file order: the keys of the study's splits."""
        return [a.threat_model().name for a in self.attacks]

    def families(self) -> dict[str, Any]:
        """The learner families by name, with ``[options.<learner>]`` fixed through ``with_options``."""
        out: dict[str, Any] = {}
        for name in self.search.learners:
            family = get_family(name)
            out[name] = family.with_options(**self.options[name]) if self.options.get(name) else family
            if self.search.scale != "none" and callable(getattr(out[name], "scaled", None)):
                out[name] = out[name].scaled(self.search.scale)  # convex learners only
        return out


def settings_fields(cls: type) -> list[str]:
    """The keys a section's table may hold (the dataclass's init fields)."""
    return [f.name for f in fields(cls) if f.init and not (cls is StudyConfig and f.name == "path")]
