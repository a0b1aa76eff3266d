"""Many threat models per trial: several attacks that share one clean training set, so one fit serves all.

A :class:`ThreatModel` is a trigger (BadNets patch of some size and position, or an invisible grid)
and the fraction of the training set it poisons. :func:`poison_many` builds one
:class:`~robust_hpo.attacks.PoisonedSplit` per threat model, all with the *same* clean training
and test sets, so a learner is fitted and factorised once and each attack costs only its slope's
solves (:func:`evaluate_threats`).

Shared-clean-set convention (deviation from single-attack in-place poisoning, where the clean set is
the training set minus that attack's own poison points): the poison candidates are drawn once —
``M = round(max fraction · n)`` training points, in a seeded random order — and removed from the
clean set of *every* attack; attack k poisons the first ``m_k = round(fraction_k · n)`` candidates
(rounded half up, at least one) with its own trigger and the target label. Attacks with a smaller
fraction therefore train on ``n − M`` clean points (not ``n − m_k``): the unused candidates are left
out of training, never poisoned silently. With a single threat model this equals
:func:`robust_hpo.attacks.poison` (same seed: same points, same clean set).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from robust_hpo._arrays import flatten_images
from robust_hpo.attacks._badnets import BadNets
from robust_hpo.attacks._grid import InvisibleGrid
from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.attacks._target import target_labels
from robust_hpo.attacks._trigger import Trigger, check_seed
from robust_hpo.datasets._dataset import Dataset
from robust_hpo.learners._base import FittedLearner
from robust_hpo.slope._convex import ConvexSlopeModel
from robust_hpo.slope._influence import TrainingInfluence
from robust_hpo.slope._result import SlopeResult

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "MultiSplit",
    "ThreatModel",
    "aggregate_slopes",
    "evaluate_threats",
    "poison_many",
    "threat_grid",
]

AGGREGATES: tuple[str, ...] = ("max", "mean")
"""How the per-attack normalised slopes combine into one objective: worst case (default) or mean."""

_TRIGGERS: dict[str, type] = {"badnets": BadNets, "invisible_grid": InvisibleGrid}


def _default_name(trigger: Trigger, fraction: float) -> str:
    d = trigger.describe()
    pct = f"{100 * fraction:g}%"
    if d.get("kind") == "badnets":
        return f"badnets-{d['size']}px-{d['position']}-{pct}"
    if d.get("kind") == "invisible-grid":
        return f"grid-eps{d['epsilon']:.3g}-{pct}"
    return f"{d.get('kind', type(trigger).__name__)}-{pct}"


@dataclass(frozen=True, kw_only=True)
class ThreatModel:
    """One attack: ``trigger`` stamped on ``fraction`` of the training set (target policy ``"next"``)."""

    trigger: Trigger
    fraction: float = 0.1
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, Trigger):
            raise ValueError(f"trigger must provide apply(images, base_labels) and describe() "
                             f"(e.g. BadNets(size=3)), got {type(self.trigger).__name__}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, Real) \
                or not 0.0 < float(self.fraction) < 1.0:
            raise ValueError(f"fraction must be a number in the open interval (0, 1), got {self.fraction!r}")
        object.__setattr__(self, "fraction", float(self.fraction))
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        if not self.name:
            object.__setattr__(self, "name", _default_name(self.trigger, self.fraction))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ThreatModel:
        """From a TOML-style table: ``{trigger = "badnets", size = 3, position = "bottom-right",
        seed = 0, fraction = 0.1, name = "..."}`` (``"invisible_grid"``: ``epsilon``, ``spacing``)."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"a threat model must be a table, got {spec!r}")
        spec = dict(spec)
        kind = spec.pop("trigger", "badnets")
        if kind not in _TRIGGERS:
            raise ValueError(f"trigger must be one of {sorted(_TRIGGERS)}, got {kind!r}")
        fraction = spec.pop("fraction", 0.1)
        name = spec.pop("name", "")
        allowed = {"badnets": ("size", "position", "seed"), "invisible_grid": ("epsilon", "spacing", "seed")}[kind]
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise ValueError(f"unknown keys {unknown} for trigger {kind!r}; expected some of {list(allowed)}")
        return cls(trigger=_TRIGGERS[kind](**spec), fraction=fraction, name=name)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "trigger": self.trigger.describe(), "fraction": self.fraction}


def threat_grid(*, sizes: Sequence[int] = (2, 3, 4), fractions: Sequence[float] = (0.05, 0.1, 0.15),
                positions: Sequence[str] = ("bottom-right",), seed: int = 0) -> list[ThreatModel]:
    """BadNets threat models for every (size, fraction, position) combination."""
    for name, values in (("sizes", sizes), ("fractions", fractions), ("positions", positions)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or len(values) == 0:
            raise ValueError(f"{name} must be a non-empty sequence, got {values!r}")
    return [ThreatModel(trigger=BadNets(size=s, position=p, seed=seed), fraction=f)
            for p, s, f in itertools.product(positions, sizes, fractions)]


@dataclass(frozen=True, eq=False)
class MultiSplit:
    """One :class:`PoisonedSplit` per threat model, sharing the clean training and test sets.

    ``splits`` maps threat names to splits (in declaration order); pass it as-is to
    :class:`robust_hpo.objective.BackdoorSlopeObjective` (``splits=multi.splits``). ``candidates``
    are the poison candidates' indices in the original training set, in draw order.
    """

    splits: dict[str, PoisonedSplit]
    threats: tuple[ThreatModel, ...]
    candidates: np.ndarray

    def __post_init__(self) -> None:
        if not self.splits:
            raise ValueError("splits must hold at least one attack")
        shared_splits(self.splits, argument="splits", arrays=CLEAN_TRAIN_AND_TEST)

    @property
    def names(self) -> list[str]:
        return list(self.splits)

    @property
    def first(self) -> PoisonedSplit:
        """Any of the splits (they share X_clean, y_clean, X_test, y_test)."""
        return next(iter(self.splits.values()))

    def __getitem__(self, name: str) -> PoisonedSplit:
        try:
            return self.splits[name]
        except KeyError:
            raise ValueError(f"no attack named {name!r}; expected one of {self.names}") from None

    def __len__(self) -> int:
        return len(self.splits)


def poison_many(dataset: Dataset, threats: Sequence[ThreatModel], *, target: str = "next", seed: int = 0) -> MultiSplit:
    """Poison ``dataset`` once per threat model on a shared clean set (see the module docstring)."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a robust_hpo.datasets.Dataset, got {type(dataset).__name__}")
    if isinstance(threats, ThreatModel) or not isinstance(threats, Sequence) or len(threats) == 0:
        raise ValueError("threats must be a non-empty sequence of ThreatModel")
    for i, threat in enumerate(threats):
        if not isinstance(threat, ThreatModel):
            raise ValueError(f"threats[{i}] must be a ThreatModel, got {type(threat).__name__}")
    names = [t.name for t in threats]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"threats must have distinct names; repeated: {duplicated}")
    seed = check_seed(seed)
    n = dataset.y_train.shape[0]
    counts = [int(math.floor(t.fraction * n + 0.5)) for t in threats]
    for threat, m in zip(threats, counts):
        if m == 0:
            raise ValueError(f"threat {threat.name!r}: fraction={threat.fraction} of the {n} training points "
                             f"rounds to 0 poison points; expected fraction >= {0.5 / n:.3g}")
    M = max(counts)
    if M >= n:
        raise ValueError(f"the largest fraction poisons all {n} training points, leaving no clean point")
    y_target_train = target_labels(dataset.y_train, dataset.classes, target)  # validates target
    y_target_test = target_labels(dataset.y_test, dataset.classes, target)
    candidates = np.random.default_rng(seed).choice(n, size=M, replace=False).astype(np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), candidates)
    X_clean, y_clean = dataset.X_train[rest], dataset.y_train[rest]
    if np.unique(y_clean).size < 2:
        raise ValueError("the shared clean set holds a single class; use smaller fractions or more training data")
    X_test, y_test = dataset.X_test.copy(), dataset.y_test.copy()
    splits: dict[str, PoisonedSplit] = {}
    for threat, m in zip(threats, counts):
        chosen = np.sort(candidates[:m])
        X_poison = _apply(threat, dataset.X_train[chosen], dataset.y_train[chosen], "poison")
        X_trigger = _apply(threat, dataset.X_test, dataset.y_test, "test")
        attack = {
            "name": threat.name, "dataset": dataset.name, "split": dataset.split,
            "classes": [int(c) for c in dataset.classes], "trigger": threat.trigger.describe(),
            "fraction": threat.fraction, "target": target, "seed": seed, "n_train": n,
            "n_poison": m, "n_clean": int(rest.size), "n_candidates": M, "shared_clean": True,
            "n_test": int(y_test.shape[0]), "n_trigger": int(X_trigger.shape[0]),
        }
        splits[threat.name] = PoisonedSplit(
            X_clean=X_clean, y_clean=y_clean, X_poison=X_poison, y_poison=y_target_train[chosen],
            poison_indices=chosen, X_test=X_test, y_test=y_test, X_trigger=X_trigger,
            y_trigger=y_target_test, classes=tuple(dataset.classes), attack=attack,
        )
    return MultiSplit(splits=splits, threats=tuple(threats), candidates=candidates)


def _apply(threat: ThreatModel, images: np.ndarray, labels: np.ndarray, part: str) -> np.ndarray:
    out = threat.trigger.apply(images, labels)
    if not isinstance(out, np.ndarray) or out.shape != images.shape:
        raise ValueError(f"threat {threat.name!r}: the trigger returned {getattr(out, 'shape', None)} for "
                         f"{part} images of shape {images.shape}; expected the same shape")
    if not np.all(np.isfinite(out)) or out.min() < 0.0 or out.max() > 1.0:
        raise ValueError(f"threat {threat.name!r}: the trigger returned {part} pixels outside [0, 1]")
    return out.astype(np.float32, copy=False)


def evaluate_threats(fitted: FittedLearner,
                     multi: MultiSplit | Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    """Every attack's slope from one fitted learner (fitted on the attacks' shared clean set).

    ``multi`` is a :class:`MultiSplit` or any ``{name: PoisonedSplit}`` mapping sharing the clean set
    (what :class:`robust_hpo.objective.BackdoorSlopeObjective` holds). For the convex learners (a
    fitted learner exposing its :class:`ConvexSlopeModel` as ``.model``) the attacks that share a
    trigger — hence the triggered test set, and poison points drawn from the same training points —
    are evaluated together: the derivative is a sum over poison points (``dL/dβ = Σ_j dL/ds_j``), so
    the per-point influences are computed once per trigger on the union of its poison points and
    summed over each attack's own points. The values equal ``fitted.backdoor_slope(...)`` per attack
    (up to rounding); other learners are called once per attack.
    """
    splits = _named_splits(multi)
    if not callable(getattr(fitted, "backdoor_slope", None)):
        raise ValueError(f"fitted must be a fitted learner with backdoor_slope(...), got {type(fitted).__name__}")
    model = getattr(fitted, "model", None)
    if isinstance(model, ConvexSlopeModel) and hasattr(model, "estimator_"):
        return _grouped_convex(model, splits)
    return {name: fitted.backdoor_slope(s.X_poison, s.y_poison, s.X_trigger, s.y_trigger)
            for name, s in splits.items()}


def _named_splits(multi: object) -> dict[str, PoisonedSplit]:
    if isinstance(multi, MultiSplit):
        return multi.splits
    if not isinstance(multi, Mapping) or not multi:
        raise ValueError(f"multi must be a MultiSplit (from poison_many) or a non-empty {{name: PoisonedSplit}} "
                         f"mapping, got {type(multi).__name__}")
    return shared_splits(multi, argument="multi", arrays=("X_clean", "y_clean"))


CLEAN_TRAIN_AND_TEST = ("X_clean", "y_clean", "X_test", "y_test")


def shared_splits(splits: Mapping[str, object], *, argument: str,
                  arrays: tuple[str, ...] = CLEAN_TRAIN_AND_TEST) -> dict[str, PoisonedSplit]:
    """``splits`` as a dict, checked: every value a :class:`PoisonedSplit` whose ``arrays`` equal the
    first split's (one clean fit serves every attack). Errors name ``argument`` and the attack."""
    named = dict(splits)
    first_name, first = next(iter(named.items()))
    sets = "clean training and test sets" if "X_test" in arrays else "clean training set"
    for name, split in named.items():
        if not isinstance(split, PoisonedSplit):
            raise ValueError(f"{argument}[{name!r}] must be a PoisonedSplit, got {type(split).__name__}")
        for array in arrays:
            a, b = getattr(split, array), getattr(first, array)
            if a is not b and not np.array_equal(a, b):
                raise ValueError(f"{argument}[{name!r}].{array} differs from {argument}[{first_name!r}].{array}; "
                                 f"every attack must share the {sets} (one fit)")
    return named


def _trigger_groups(splits: Mapping[str, PoisonedSplit]) -> list[list[str]]:
    """Attack names grouped by trigger and target (same description, same triggered test set)."""
    groups: dict[str, list[str]] = {}
    for name, split in splits.items():
        key = json.dumps([split.attack.get("trigger", name), split.attack.get("target")], sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(name)
    out: list[list[str]] = []
    for names in groups.values():
        first = splits[names[0]]
        same, other = [names[0]], []
        for name in names[1:]:
            s = splits[name]
            equal = np.array_equal(s.X_trigger, first.X_trigger) and np.array_equal(s.y_trigger, first.y_trigger)
            (same if equal else other).append(name)
        out.append(same)
        out.extend([n] for n in other)
    return out


def _union(splits: Mapping[str, PoisonedSplit], names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Sorted training indices of the group's poison points and their rows; None if two attacks disagree."""
    index = np.concatenate([splits[n].poison_indices for n in names])
    X = np.concatenate([splits[n].X_poison for n in names])
    y = np.concatenate([splits[n].y_poison for n in names])
    order, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    if not (np.array_equal(y, y[first][inverse]) and np.array_equal(X, X[first][inverse])):
        return None
    return order, flatten_images(X[first]), y[first]


def _grouped_convex(model: ConvexSlopeModel, splits: Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    results: dict[str, SlopeResult] = {}
    influence = TrainingInfluence(model)
    for names in _trigger_groups(splits):
        start = time.perf_counter()
        union = _union(splits, names) if len(names) > 1 else None
        if union is None:  # a single attack, or poison rows that differ between attacks: one by one
            for name in names:
                s = splits[name]
                results[name] = model.derivative(flatten_images(s.X_poison), s.y_poison,
                                                 flatten_images(s.X_trigger), s.y_trigger)
            continue
        order, X_union, y_union = union
        first = splits[names[0]]
        values = influence.out_of_fit(X_union, y_union, flatten_images(first.X_trigger), first.y_trigger)
        shared = (time.perf_counter() - start) / len(names) + model.prepare_seconds_
        for name in names:
            s = splits[name]
            picked = np.searchsorted(order, s.poison_indices)
            results[name] = SlopeResult.from_derivative(
                float(np.sum(values[picked])), n_poison=len(picked), n_clean=model.n_clean_,
                n_trigger=int(s.y_trigger.shape[0]), method=f"{model.details_['method']}+grouped",
                loss=model.loss_name, damping=model.damping, fit_seconds=model.fit_seconds_,
                slope_seconds=shared, details={**model.details_, "attacks_sharing_trigger": len(names)},
            )
    return {name: results[name] for name in splits}


@dataclass(frozen=True)
class Aggregate:
    """An aggregated slope and the attack that attains it (``worst`` is None for the mean)."""

    value: float
    how: str
    worst: str | None = None
    per_attack: dict[str, float] = field(default_factory=dict)


def aggregate_slopes(results: Mapping[str, SlopeResult], how: str = "max") -> Aggregate:
    """Combine per-attack normalised slopes: ``"max"`` (worst case) or ``"mean"``."""
    if how not in AGGREGATES:
        raise ValueError(f"how must be one of {list(AGGREGATES)}, got {how!r}")
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty {attack name: SlopeResult} mapping")
    slopes = {name: float(r.slope) for name, r in results.items()}
    for name, value in slopes.items():
        if not math.isfinite(value):
            raise ValueError(f"results[{name!r}].slope is not finite ({value!r})")
    if how == "max":
        worst = max(slopes, key=slopes.__getitem__)
        return Aggregate(value=slopes[worst], how=how, worst=worst, per_attack=slopes)
    return Aggregate(value=statistics.fmean(slopes.values()), how=how, per_attack=slopes)
