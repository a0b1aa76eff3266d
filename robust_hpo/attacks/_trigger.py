"""The trigger protocol, the base class of the built-in triggers, and the input checks they share."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from numbers import Integral
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from robust_hpo._validation import ConstraintSpec, Interval, Options, check, describe
from robust_hpo.errors import ValidationError

SEED = (Interval(Integral, 0, None),)


@runtime_checkable
class Trigger(Protocol):
    """A backdoor trigger: a pattern stamped on images, which may depend on each image's base class.

    ``apply(images, base_labels)`` takes float images (n, C, H, W) in [0, 1] and their original
    class ids (n,) and returns *new* triggered images of the same shape and dtype, in [0, 1]; it
    never modifies its input. ``describe()`` returns a JSON-friendly dict of the trigger's settings.
    """

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TriggerParameter:
    """One declared parameter of a trigger: its default, constraints and meaning.

    ``type`` (``int``, ``float`` or ``str``) and ``choices`` are what a command-line flag needs.
    """

    name: str
    default: Any
    constraints: ConstraintSpec
    help: str

    @property
    def type(self) -> type:
        if isinstance(self.default, tuple):  # a list-valued parameter (command-line flags take several words)
            return tuple
        kinds = {c.kind for c in self.constraints if isinstance(c, Interval)}
        if kinds == {Integral}:
            return int
        if kinds:
            return float
        return str

    @property
    def choices(self) -> tuple[Any, ...] | None:
        options = [c for c in self.constraints if isinstance(c, Options)]
        return options[0].options if options else None

    def describe(self) -> str:
        """``patch side in pixels: a positive integer (default 3)``."""
        return f"{self.help}: {describe(self.constraints)} (default {self.default!r})"


class BaseTrigger:
    """Base of the registered triggers: each declares its parameters once, in its class.

    A subclass sets ``kind`` (its name in study files and descriptions), ``parameter_constraints``
    and ``parameter_help`` (one entry per keyword of its ``__init__`` besides ``seed``, whose
    defaults are the parameters' defaults) and calls ``super().__init__(**its keywords)``, which
    validates every value and stores it as an attribute. Study files, command-line flags and docs
    derive from :meth:`parameters`; :meth:`describe` and ``repr`` from the stored values.
    """

    kind: ClassVar[str]
    needs: ClassVar[str] = "images"
    """The input layout the trigger works on: a key of ``robust_hpo.datasets.LAYOUTS``."""
    parameter_constraints: ClassVar[dict[str, ConstraintSpec]]
    parameter_help: ClassVar[dict[str, str]]

    def __init__(self, *, seed: int = 0, **params: Any) -> None:
        declared = self.parameters()
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValidationError(f"unknown parameters {unknown} for trigger {self.kind!r}; "
                                  f"expected some of {sorted(declared)}")
        for name, parameter in declared.items():
            value = check(name, params.get(name, parameter.default), parameter.constraints, note=parameter.help)
            if parameter.type is tuple:
                value = tuple(value)
            elif parameter.type is int:
                value = int(value)
            elif parameter.type is float:
                value = float(value)
            setattr(self, name, value)
        self.seed = check_seed(seed)

    @classmethod
    def parameters(cls) -> dict[str, TriggerParameter]:
        """The trigger's own parameters (``seed`` aside), in ``__init__`` order."""
        signature = inspect.signature(cls.__init__)
        out = {}
        for name, p in signature.parameters.items():
            if name in ("self", "seed") or p.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            out[name] = TriggerParameter(name=name, default=p.default, constraints=cls.parameter_constraints[name],
                                         help=cls.parameter_help[name])
        return out

    def get_params(self) -> dict[str, Any]:
        """The parameter values (``seed`` aside)."""
        return {name: getattr(self, name) for name in self.parameters()}

    def short_name(self) -> str:
        """A short readable name of the trigger (threat models are named after it)."""
        return self.kind

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.get_params(), "seed": self.seed}

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in {**self.get_params(), "seed": self.seed}.items())
        return f"{type(self).__name__}({values})"


def check_seed(seed: object) -> int:
    return int(check("seed", seed, SEED))


def check_trigger_inputs(images: object, base_labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``apply``'s arguments; ``ValidationError`` names the argument and what was expected."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        shape = getattr(images, "shape", None)
        raise ValidationError(
            f"images must be a float array of shape (n, C, H, W), got {type(images).__name__} "
            f"with shape {shape} and dtype {getattr(images, 'dtype', None)}"
        )
    return images, check_trigger_labels(base_labels, images.shape[0], what="images")


def check_trigger_labels(base_labels: object, n: int, *, what: str = "rows") -> np.ndarray:
    """``base_labels`` as int64 class ids, one per input; ``ValidationError`` otherwise."""
    labels = np.asarray(base_labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValidationError(
            f"base_labels must be a 1-D integer array of class ids, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if labels.shape[0] != n:
        raise ValidationError(
            f"base_labels has {labels.shape[0]} labels but {what} has {n} {what}; "
            "expected equal lengths"
        )
    if labels.size and labels.min() < 0:
        raise ValidationError(f"base_labels must be non-negative class ids, found {int(labels.min())}")
    return labels.astype(np.int64)


def class_rng(seed: int, label: int, stream: int) -> np.random.Generator:
    """The generator of one base class's pattern: depends on (seed, class id, stream) only.

    ``stream`` separates trigger kinds (BadNets 0, InvisibleGrid 1) so they never share draws.
    """
    return np.random.default_rng([seed, int(label), stream])
