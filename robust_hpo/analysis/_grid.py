"""Grids over (C, γ): the paper's Fig. 8, computed directly or binned from a study's verified trials.

:func:`paper_grid` evaluates a (C, γ) grid directly (a clean fit for accuracy and slope, a poisoned
retraining for backdoor accuracy per cell); :func:`bin_trials` bins a study's (log-uniformly
sampled) verified trials into such a grid for heatmaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robust_hpo._validation import flatten_images
from robust_hpo.analysis._common import FamilyLookup, check_positive_int, check_split, convex_estimator, lookup
from robust_hpo.analysis._verify import VerifiedTrial, retrain_poisoned, slope_backdoor_spearman
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import DegenerateSolveError, SingularHessianError, ValidationError
from robust_hpo.slope import slope_model

__all__ = ["METRICS", "GridResult", "bin_trials", "paper_grid"]

METRICS: tuple[str, ...] = ("poisoned_clean_accuracy", "backdoor_accuracy", "slope", "clean_accuracy")


@dataclass(frozen=True, eq=False)
class GridResult:
    """Metrics on a grid: rows are ``gamma`` values (a single row when ``gamma`` is None), columns ``C``.

    ``slope`` and ``clean_accuracy`` come from the clean model;
    ``poisoned_clean_accuracy`` and ``backdoor_accuracy`` from retraining on the poisoned set.
    A cell without a value is NaN and explained: ``counts == 0`` (no trial fell in that bin) or an
    entry of ``errors`` (e.g. the slope is undefined for an SVM with every support vector at the bound).
    A binned grid (``binned``) maps each trial number to its ``(row, column)`` in ``trial_cells`` and
    keeps Spearman over the trials themselves in ``trial_spearman``.
    """

    learner: str
    C: np.ndarray
    gamma: np.ndarray | None
    poisoned_clean_accuracy: np.ndarray
    backdoor_accuracy: np.ndarray
    slope: np.ndarray
    clean_accuracy: np.ndarray
    counts: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)
    binned: bool = False
    trial_cells: dict[int, tuple[int, int]] = field(default_factory=dict)
    trial_spearman: tuple[float | None, float | None, str] | None = None

    def __post_init__(self) -> None:
        shape = (1 if self.gamma is None else self.gamma.size, self.C.size)
        for name in (*METRICS, "counts"):
            if getattr(self, name).shape != shape:
                raise ValidationError(f"{name} has shape {getattr(self, name).shape}; expected {shape}")

    def spearman(self) -> tuple[float | None, float | None, str]:
        """Spearman(slope, backdoor accuracy) over the cells where both are defined (for a binned
        grid: over the bins' means — ``trial_spearman`` is over the trials)."""
        ok = np.isfinite(self.slope) & np.isfinite(self.backdoor_accuracy)
        unit = "bins (cell means)" if self.binned else "grid cells"
        return slope_backdoor_spearman(self.slope[ok], self.backdoor_accuracy[ok], unit=unit)

    def cells_of(self, numbers: Iterable[int]) -> set[tuple[int, int]]:
        """The cells holding these trial numbers (a binned grid; others are not in the grid)."""
        return {self.trial_cells[n] for n in numbers if n in self.trial_cells}

    def robust_cells(self, *, tolerance: float, max_backdoor: float) -> set[tuple[int, int]]:
        """Cells whose clean accuracy after poisoning is within ``tolerance`` of the best cell and
        whose backdoor accuracy is at most ``max_backdoor`` (verification's robust region, on cells)."""
        clean, backdoor = self.poisoned_clean_accuracy, self.backdoor_accuracy
        if not np.isfinite(clean).any():
            return set()
        best = float(np.nanmax(clean))
        with np.errstate(invalid="ignore"):
            ok = (clean >= best - tolerance - 1e-12) & (backdoor <= max_backdoor + 1e-12)
        return {(int(r), int(c)) for r, c in zip(*np.nonzero(ok))}


def _grid_values(name: str, values: Iterable[float] | None) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValidationError(f"{name} must be a non-empty list of positive numbers, got {values!r}")
    if not np.all(np.diff(arr) > 0):
        raise ValidationError(f"{name} must be strictly increasing, got {arr.tolist()}")
    return arr


def paper_grid(split: PoisonedSplit, *, learner: str = "rbf_svm", C: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
               gamma: Sequence[float] | None = (1e-3, 1e-2, 1e-1), family_lookup: FamilyLookup | None = None,
               progress: Callable[[int, int], None] | None = None) -> GridResult:
    """Evaluate every (C, γ) of a grid: clean fit (accuracy, slope) and poisoned retraining (Fig. 8).

    Pass ``gamma=None`` for learners with C only (``logistic``, ``ridge``, ``linear_svm``).
    ``progress(done, total)`` is called after each cell.
    """
    split = check_split(split)
    Cs = _grid_values("C", C)
    gammas = _grid_values("gamma", gamma)
    assert Cs is not None
    family_lookup = lookup(family_lookup)
    shape = (1 if gammas is None else gammas.size, Cs.size)
    out = {name: np.full(shape, np.nan) for name in METRICS}
    errors: dict[str, str] = {}
    Xc, yc, Xp, yp, Xt, yt = split.flat()
    X_test = flatten_images(split.X_test)
    for i in range(shape[0]):
        for j, c in enumerate(Cs):
            params: dict[str, Any] = {"C": float(c)}
            if gammas is not None:
                params["gamma"] = float(gammas[i])
            est = convex_estimator(learner, params, family_lookup)
            model = slope_model(est).fit(Xc, yc)
            out["clean_accuracy"][i, j] = float(np.mean(model.predict(X_test) == split.y_test))
            try:
                out["slope"][i, j] = model.derivative(Xp, yp, Xt, yt).slope
            except (DegenerateSolveError, SingularHessianError, FloatingPointError) as exc:
                errors[", ".join(f"{k}={v:.4g}" for k, v in params.items())] = f"slope undefined: {exc}"
            clean, backdoor = retrain_poisoned(learner, params, split, family_lookup=family_lookup)
            out["poisoned_clean_accuracy"][i, j] = clean
            out["backdoor_accuracy"][i, j] = backdoor
            if progress is not None:
                progress(i * shape[1] + j + 1, shape[0] * shape[1])
    return GridResult(learner=learner, C=Cs, gamma=gammas, counts=np.ones(shape, dtype=np.int64),
                      errors=errors, **out)


def bin_trials(trials: Sequence[VerifiedTrial], *, learner: str, n_bins: int = 6) -> GridResult:
    """Average verified trials of ``learner`` in a log-spaced grid of bins over C (and γ if it has one)."""
    check_positive_int("n_bins", n_bins)
    mine = [t for t in trials if t.learner == learner]
    if not mine:
        raise ValidationError(f"no verified trial of learner {learner!r}; verified learners: "
                         f"{sorted({t.learner for t in trials})}")
    for t in mine:
        if "C" not in t.params:
            raise ValidationError(f"trial {t.number} of {learner!r} has no parameter 'C'; got {sorted(t.params)}")
    has_gamma = all("gamma" in t.params for t in mine)
    logC = np.log10([t.params["C"] for t in mine])
    edges_C = _edges(logC, n_bins)
    if has_gamma:
        logG = np.log10([t.params["gamma"] for t in mine])
        edges_G = _edges(logG, n_bins)
        rows = np.clip(np.searchsorted(edges_G, logG, side="right") - 1, 0, edges_G.size - 2)
    else:
        edges_G = None
        rows = np.zeros(len(mine), dtype=np.int64)
    cols = np.clip(np.searchsorted(edges_C, logC, side="right") - 1, 0, edges_C.size - 2)
    trial_cells = {t.number: (int(r), int(c)) for t, r, c in zip(mine, rows, cols)}
    shape = (1 if edges_G is None else edges_G.size - 1, edges_C.size - 1)
    counts = np.zeros(shape, dtype=np.int64)
    sums = {name: np.zeros(shape) for name in METRICS}
    have_clean = all(t.clean_accuracy is not None for t in mine)
    for t, r, c in zip(mine, rows, cols):
        counts[r, c] += 1
        for name in METRICS:
            value = getattr(t, name)
            sums[name][r, c] += value if value is not None else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: np.where(counts > 0, sums[name] / np.maximum(counts, 1), np.nan) for name in METRICS}
    if not have_clean:
        means["clean_accuracy"] = np.full(shape, np.nan)
    centers = lambda e: 10 ** ((e[:-1] + e[1:]) / 2)  # noqa: E731 - geometric bin centres
    trial_rho = slope_backdoor_spearman([t.slope for t in mine], [t.backdoor_accuracy for t in mine],
                                        unit="trials")
    return GridResult(learner=learner, C=centers(edges_C), gamma=None if edges_G is None else centers(edges_G),
                      counts=counts, binned=True, trial_cells=trial_cells, trial_spearman=trial_rho, **means)


def _edges(log_values: np.ndarray, n_bins: int) -> np.ndarray:
    lo, hi = float(np.min(log_values)), float(np.max(log_values))
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)
