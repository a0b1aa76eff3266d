"""Backdoor triggers and in-place poisoning: ``poison(dataset, BadNets()) -> PoisonedSplit``."""

from __future__ import annotations

from robust_hpo.attacks._badnets import POSITIONS, BadNets
from robust_hpo.attacks._grid import InvisibleGrid
from robust_hpo.attacks._poison import poison
from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.attacks._target import POLICIES, target_labels
from robust_hpo.attacks._trigger import Trigger

__all__ = [
    "POLICIES",
    "POSITIONS",
    "BadNets",
    "InvisibleGrid",
    "PoisonedSplit",
    "Trigger",
    "poison",
    "target_labels",
]
