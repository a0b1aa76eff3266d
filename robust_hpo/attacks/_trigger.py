"""The trigger protocol and the input checks every trigger shares."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Trigger(Protocol):
    """A backdoor trigger: a pattern stamped on images, which may depend on each image's base class.

    ``apply(images, base_labels)`` takes float images (n, C, H, W) in [0, 1] and their original
    class ids (n,) and returns *new* triggered images of the same shape and dtype, in [0, 1]; it
    never modifies its input. ``describe()`` returns a JSON-friendly dict of the trigger's settings.
    """

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_trigger_inputs(images: object, base_labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``apply``'s arguments; ``ValueError`` names the argument and what was expected."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        shape = getattr(images, "shape", None)
        raise ValueError(
            f"images must be a float array of shape (n, C, H, W), got {type(images).__name__} "
            f"with shape {shape} and dtype {getattr(images, 'dtype', None)}"
        )
    labels = np.asarray(base_labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"base_labels must be a 1-D integer array of class ids, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"base_labels has {labels.shape[0]} labels but images has {images.shape[0]} images; "
            "expected equal lengths"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"base_labels must be non-negative class ids, found {int(labels.min())}")
    return images, labels.astype(np.int64)


def class_rng(seed: int, label: int, stream: int) -> np.random.Generator:
    """The generator of one base class's pattern: depends on (seed, class id, stream) only.

    ``stream`` separates trigger kinds (BadNets 0, InvisibleGrid 1) so they never share draws.
    """
    return np.random.default_rng([seed, int(label), stream])
