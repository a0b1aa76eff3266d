"""Threat models: a trigger and the fraction of the training set it poisons; several share one clean set.

A :class:`ThreatModel` is one attack. :func:`robust_hpo.attacks.poison_many` turns a list of them
into a :class:`MultiSplit`: one :class:`~robust_hpo.attacks.PoisonedSplit` per threat model, all
with the *same* clean training and test sets, so a learner is fitted once and each attack costs
only its slope's solves (:func:`robust_hpo.objective.evaluate_threats`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from robust_hpo._validation import InstanceOf, Interval, check
from robust_hpo.attacks._badnets import BadNets
from robust_hpo.attacks._registry import make_trigger
from robust_hpo.attacks._split import CLEAN_TRAIN_AND_TEST, PoisonedSplit, shared_splits
from robust_hpo.attacks._trigger import Trigger
from robust_hpo.errors import ValidationError

FRACTION = (Interval(Real, 0, 1, closed="neither"),)
"""A poisoned fraction of the training set: a number in the open interval (0, 1)."""


def default_name(trigger: Trigger, fraction: float) -> str:
    """``<trigger short name>-<percent>``, e.g. ``badnets-3px-bottom-right-10%``, ``grid-eps0.0392-5%``."""
    short = getattr(trigger, "short_name", None)
    base = short() if callable(short) else trigger.describe().get("kind", type(trigger).__name__)
    return f"{base}-{100 * fraction:g}%"


@dataclass(frozen=True, kw_only=True)
class ThreatModel:
    """One attack: ``trigger`` stamped on ``fraction`` of the training set (target policy ``"next"``).

    ``name`` defaults to :func:`default_name` of the trigger and fraction.
    """

    trigger: Trigger
    fraction: float = 0.1
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.trigger, type):  # the class passes the Protocol check; its methods are unbound
            raise ValidationError(f"trigger must be a trigger instance, got the class {self.trigger.__name__}; "
                                  f"create one, e.g. {self.trigger.__name__}()")
        if not isinstance(self.trigger, Trigger):
            raise ValidationError(f"trigger must provide apply(images, base_labels) and describe() "
                                  f"(e.g. BadNets(size=3)), got {type(self.trigger).__name__}")
        object.__setattr__(self, "fraction", float(check("fraction", self.fraction, FRACTION)))
        check("name", self.name, (InstanceOf(str, "a string"),))
        if not self.name:
            object.__setattr__(self, "name", default_name(self.trigger, self.fraction))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ThreatModel:
        """From a TOML-style table: ``{trigger = "badnets", size = 3, position = "bottom-right",
        seed = 0, fraction = 0.1, name = "..."}`` (each trigger's own keys: ``robust_hpo.attacks.TRIGGERS``)."""
        if not isinstance(spec, Mapping):
            raise ValidationError(f"a threat model must be a table, got {spec!r}")
        spec = dict(spec)
        kind = spec.pop("trigger", "badnets")
        fraction = spec.pop("fraction", 0.1)
        name = spec.pop("name", "")
        seed = spec.pop("seed", 0)
        return cls(trigger=make_trigger(kind, spec, seed=seed), fraction=fraction, name=name)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "trigger": self.trigger.describe(), "fraction": self.fraction}


def threat_grid(*, sizes: Sequence[int] = (2, 3, 4), fractions: Sequence[float] = (0.05, 0.1, 0.15),
                positions: Sequence[str] = ("bottom-right",), seed: int = 0) -> list[ThreatModel]:
    """BadNets threat models for every (size, fraction, position) combination."""
    for name, values in (("sizes", sizes), ("fractions", fractions), ("positions", positions)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or len(values) == 0:
            raise ValidationError(f"{name} must be a non-empty sequence, got {values!r}")
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
            raise ValidationError("splits must hold at least one attack")
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
            raise ValidationError(f"no attack named {name!r}; expected one of {self.names}") from None

    def __len__(self) -> int:
        return len(self.splits)
