"""Backdoor triggers and poisoning: ``poison(dataset, BadNets()) -> PoisonedSplit`` (tabular rows:
``FeatureTrigger(features=..., values=...)``; all-to-one: ``target=<class>``); several attacks
on one shared clean set with ``poison_many(dataset, [ThreatModel(...), ...]) -> MultiSplit``.

:data:`TRIGGERS` is the trigger registry (kind -> class); each trigger class declares its own
parameters (:meth:`BaseTrigger.parameters`).
"""

from __future__ import annotations

from robust_hpo.attacks._badnets import POSITIONS, BadNets
from robust_hpo.attacks._features import FeatureTrigger
from robust_hpo.attacks._grid import InvisibleGrid
from robust_hpo.attacks._poison import poison, poison_many
from robust_hpo.attacks._registry import TRIGGERS, make_trigger, trigger_class
from robust_hpo.attacks._split import CLEAN_TRAIN_AND_TEST, PoisonedSplit, shared_splits
from robust_hpo.attacks._target import POLICIES, resolve_target, target_labels
from robust_hpo.attacks._threats import MultiSplit, ThreatModel, default_name, threat_grid
from robust_hpo.attacks._trigger import BaseTrigger, Trigger, TriggerParameter

__all__ = [
    "CLEAN_TRAIN_AND_TEST",
    "POLICIES",
    "POSITIONS",
    "TRIGGERS",
    "BadNets",
    "BaseTrigger",
    "FeatureTrigger",
    "InvisibleGrid",
    "MultiSplit",
    "PoisonedSplit",
    "ThreatModel",
    "Trigger",
    "TriggerParameter",
    "default_name",
    "make_trigger",
    "poison",
    "poison_many",
    "resolve_target",
    "shared_splits",
    "target_labels",
    "threat_grid",
    "trigger_class",
]
