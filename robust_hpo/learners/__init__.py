"""Learner families by name: the built-in convex (scikit-learn) and network (torch) families, and yours.

:func:`get_family` resolves a name through a static table: the convex families of
:data:`robust_hpo.learners.convex.CONVEX_FAMILIES`, then the network families, each named with the
module and attribute that define it and imported only when asked for (so a convex study never
imports torch). Families of your own are added with :func:`register_family` (they take precedence
over a built-in of the same name). Nothing registers itself on import.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from robust_hpo.errors import ValidationError, requires_torch
from robust_hpo.learners._base import FittedLearner, LearnerFamily
from robust_hpo.learners.convex import CONVEX_FAMILIES, ConvexFamily, convex_family_of, estimator_label

__all__ = [
    "CONVEX_FAMILIES",
    "NETWORK_FAMILIES",
    "ConvexFamily",
    "FittedLearner",
    "LearnerFamily",
    "convex_family_of",
    "estimator_label",
    "family_names",
    "get_family",
    "register_family",
]

_NETWORKS = "robust_hpo.learners.networks"
NETWORK_FAMILIES: MappingProxyType[str, tuple[str, str]] = MappingProxyType({
    "mlp": (_NETWORKS, "MLP"),
    "cnn": (_NETWORKS, "CNN"),
    "resnet18": (_NETWORKS, "RESNET18"),
    "resnet50": (_NETWORKS, "RESNET50"),
    "mlp_fd": (_NETWORKS, "MLP_FD"),
    "cnn_fd": (_NETWORKS, "CNN_FD"),
    "resnet18_fd": (_NETWORKS, "RESNET18_FD"),
    "resnet50_fd": (_NETWORKS, "RESNET50_FD"),
})
"""Network family name -> (module, attribute); the module (and torch) is imported on first use."""

_USER: dict[str, LearnerFamily] = {}


def register_family(family: LearnerFamily) -> LearnerFamily:
    """Make ``family`` available by its ``name`` to study files and the objective; returns it."""
    name = getattr(family, "name", None)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"family must have a non-empty string name, got {name!r}")
    for method in ("search_space", "fit"):
        if not callable(getattr(family, method, None)):
            raise ValidationError(f"family {name!r} must have a {method}() method (see LearnerFamily)")
    _USER[name] = family
    return family


def get_family(name: str) -> LearnerFamily:
    """The family called ``name``: a registered one, a convex one, else a network one (imports torch)."""
    if not isinstance(name, str):
        raise ValidationError(f"name must be a learner name (a string), one of {family_names()}; got {name!r}")
    if name in _USER:
        return _USER[name]
    for family in CONVEX_FAMILIES:
        if family.name == name:
            return family
    if name in NETWORK_FAMILIES:
        module, attribute = NETWORK_FAMILIES[name]
        with requires_torch(f"learner {name!r}"):
            return getattr(importlib.import_module(module), attribute)
    raise ValidationError(f"unknown learner {name!r}; expected one of {family_names()}")


def family_names() -> list[str]:
    """Every known family name (built-in and registered), sorted; imports nothing."""
    return sorted({*(f.name for f in CONVEX_FAMILIES), *NETWORK_FAMILIES, *_USER})
