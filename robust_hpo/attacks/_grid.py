"""Invisible grid trigger (after Zhong et al. 2020): a faint ±ε grid added over the whole image."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from robust_hpo._validation import Interval
from robust_hpo.attacks._trigger import BaseTrigger, check_trigger_inputs, class_rng

_STREAM = 1


class InvisibleGrid(BaseTrigger):
    """Additive grid trigger with maximum intensity ``epsilon``, clipped to [0, 1].

    The grid is every pixel on a row or column whose index is a multiple of ``spacing`` (spacing 1
    covers the whole image). Base class c adds ``+epsilon`` or ``-epsilon`` at each grid pixel and
    channel, the signs drawn from a generator seeded by ``(seed, c)`` — so each class has its own
    fixed pattern; pixels off the grid are untouched. After clipping ``|change| <= epsilon``.
    """

    kind = "invisible_grid"
    parameter_constraints = {"epsilon": [Interval(Real, 0, 1, closed="right")],
                             "spacing": [Interval(Integral, 1, None)]}
    parameter_help = {"epsilon": "maximum change of a pixel", "spacing": "pixels between grid lines"}
    epsilon: float
    spacing: int

    def __init__(self, *, epsilon: float = 10 / 255, spacing: int = 4, seed: int = 0) -> None:
        super().__init__(epsilon=epsilon, spacing=spacing, seed=seed)

    def grid(self, height: int, width: int) -> np.ndarray:
        """Boolean mask (height, width) of the grid pixels."""
        rows = np.arange(height) % self.spacing == 0
        cols = np.arange(width) % self.spacing == 0
        return rows[:, None] | cols[None, :]

    def pattern(self, label: int, shape: tuple[int, int, int]) -> np.ndarray:
        """The additive pattern (C, H, W) of base class ``label``: ±epsilon on the grid, 0 elsewhere."""
        channels, height, width = shape
        signs = class_rng(self.seed, label, _STREAM).choice(np.array([-1.0, 1.0]), size=(channels, height, width))
        return (self.epsilon * signs * self.grid(height, width)).astype(np.float32)

    def apply(self, images: np.ndarray, base_labels: np.ndarray) -> np.ndarray:
        images, labels = check_trigger_inputs(images, base_labels)
        out = images.copy()
        for label in np.unique(labels):
            sel = labels == label
            out[sel] = np.clip(images[sel] + self.pattern(int(label), images.shape[1:]), 0.0, 1.0)
        return out

    def short_name(self) -> str:
        return f"grid-eps{self.epsilon:.3g}"
