"""BadNets (Gu et al. 2019): a random k×k patch in one corner, a different patch per base class."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from robust_hpo._validation import Interval, Options
from robust_hpo.attacks._trigger import BaseTrigger, check_trigger_inputs, class_rng
from robust_hpo.errors import ValidationError

POSITIONS: tuple[str, ...] = ("bottom-right", "bottom-left", "top-right", "top-left")
_STREAM = 0


class BadNets(BaseTrigger):
    """Patch trigger: pixels of a ``size``×``size`` square at ``position`` are *replaced*.

    Each base class c gets its own patch, uniform in [0, 1) per pixel and per channel, drawn from
    a generator seeded by ``(seed, c)`` alone (so a class's patch does not depend on which other
    classes are present). As in the paper, distinct patches let linear models tie each patch to its
    own target class.
    """

    kind = "badnets"
    parameter_constraints = {"size": [Interval(Integral, 1, None)], "position": [Options(POSITIONS)]}
    parameter_help = {"size": "patch side in pixels", "position": "corner of the patch"}
    size: int
    position: str

    def __init__(self, *, size: int = 3, position: str = "bottom-right", seed: int = 0) -> None:
        super().__init__(size=size, position=position, seed=seed)

    def pattern(self, label: int, channels: int) -> np.ndarray:
        """The patch (channels, size, size) of base class ``label``, values in [0, 1)."""
        return class_rng(self.seed, label, _STREAM).random((channels, self.size, self.size), dtype=np.float32)

    def window(self, height: int, width: int) -> tuple[slice, slice]:
        """(rows, cols) slices the patch covers in an image of this size."""
        if self.size > height or self.size > width:
            raise ValidationError(
                f"size={self.size} patch does not fit images of height {height} and width {width}"
            )
        rows = slice(height - self.size, height) if self.position.startswith("bottom") else slice(0, self.size)
        cols = slice(width - self.size, width) if self.position.endswith("right") else slice(0, self.size)
        return rows, cols

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray:
        images, labels = check_trigger_inputs(images, base_labels)
        _, channels, height, width = images.shape
        if self.size > height or self.size > width:
            raise ValidationError(
                f"size={self.size} patch does not fit images of shape {images.shape} (n, C, H, W); "
                f"expected size <= min(H, W) = {min(height, width)}"
            )
        rows, cols = self.window(height, width)
        out = images.copy()
        for label in np.unique(labels):
            sel = labels == label
            out[sel, :, rows, cols] = self.pattern(int(label), channels).astype(images.dtype)
        return out

    def short_name(self) -> str:
        return f"badnets-{self.size}px-{self.position}"
