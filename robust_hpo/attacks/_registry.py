"""The trigger registry: trigger kind -> class. Adding a trigger = its module plus one entry here.

Everything that names triggers derives from this table and from each class's declared
parameters (:meth:`BaseTrigger.parameters`): study files (``[[attacks]] trigger = "<kind>"`` and
the trigger's keys), the stored problem, the ``--trigger`` flags of the analysis commands, and the
documentation tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from robust_hpo.attacks._badnets import BadNets
from robust_hpo.attacks._features import FeatureTrigger
from robust_hpo.attacks._grid import InvisibleGrid
from robust_hpo.attacks._trigger import BaseTrigger
from robust_hpo.errors import ValidationError

TRIGGERS: Mapping[str, type[BaseTrigger]] = MappingProxyType({
    BadNets.kind: BadNets,
    InvisibleGrid.kind: InvisibleGrid,
    FeatureTrigger.kind: FeatureTrigger,
})
"""Every registered trigger class by its ``kind``."""


def trigger_class(kind: object, *, name: str = "trigger") -> type[BaseTrigger]:
    """The trigger class of ``kind``; ``ValidationError`` (naming ``name``) lists the known kinds."""
    if not isinstance(kind, str) or kind not in TRIGGERS:
        raise ValidationError(f"{name} must be one of {list(TRIGGERS)}, got {kind!r}")
    return TRIGGERS[kind]


def make_trigger(kind: str, params: Mapping[str, Any], *, seed: int = 0, where: str = "") -> BaseTrigger:
    """A trigger of ``kind`` from its parameters; unknown keys are refused, naming ``where``."""
    cls = trigger_class(kind, name=f"{where}trigger")
    unknown = sorted(set(params) - set(cls.parameters()))
    if unknown:
        raise ValidationError(f"unknown keys {unknown} for trigger {kind!r}; expected some of "
                              f"{sorted(cls.parameters())}")
    return cls(**params, seed=seed)
