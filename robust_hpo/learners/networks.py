"""Torch network families "mlp", "cnn", "resnet18", "resnet50" (named in ``robust_hpo.learners``), and the
same with the paper's finite-difference slope: "mlp_fd", "cnn_fd", "resnet18_fd", "resnet50_fd".

Each family searches over ``epochs`` (int), ``width`` (int, log) and ``lr`` by default; every other
key of ``NetworkConfig`` / ``NetworkSlopeOptions`` (``PARAM_KEYS``: ``batch_size``, ``weight_decay``,
``slope_method``, ``betas``, ``damping``, ...) can be fixed through ``NetworkFamily.with_options``
or passed in ``params``. Labels are original class ids (any number of classes ≥ 2); images are
(n, C, H, W) float32 in [0, 1]. Training is deterministic under ``seed`` on the CPU; the first CUDA
device is used automatically when present (``device = "auto"``).

The slope (``FittedNetwork.backdoor_slope``) is the influence slope at the clean network by default
(conjugate gradients on Gauss-Newton-vector products, damping = the training horizon's), or the
paper's finite difference (Eq. 7) with ``slope_method = "finite-difference"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping
from numbers import Integral
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from robust_hpo.errors import requires_torch

with requires_torch("the network learners (robust_hpo.learners.networks)"):
    import torch
    from torch import nn

from robust_hpo._validation import Interval, check
from robust_hpo.errors import ValidationError
from robust_hpo.learners._torch_config import (
    PARAM_KEYS,
    NetworkConfig,
    NetworkSlopeOptions,
    configs_from_params,
)
from robust_hpo.learners._torch_estimate import fine_tune_margins
from robust_hpo.learners._torch_models import build_network
from robust_hpo.learners._torch_training import train_network
from robust_hpo.slope import SlopeResult
from robust_hpo.slope.networks import clean_test_scale, finite_difference_slope, influence_slope, logits_of

__all__ = [
    "CNN",
    "CNN_FD",
    "MLP",
    "MLP_FD",
    "PARAM_KEYS",
    "RESNET18",
    "RESNET18_FD",
    "RESNET50",
    "RESNET50_FD",
    "HORIZON_FACTOR",
    "HORIZON_FACTORS",
    "FittedNetwork",
    "NetworkConfig",
    "NetworkFamily",
    "NetworkSlopeOptions",
]


HORIZON_FACTOR = 2.0
"""``damping = "auto"`` is a factor times the training horizon's ``(1 − momentum)/(lr · steps)``, a
calibration that puts the influence derivative in the units of the paper's Eq. 7 (median
|influence| / |FD at β = 0.01| within [0.67, 1.5] at 2, 8 and 30 epochs; docs/networks.md). This is
the factor of the MLP and of the architectures not calibrated separately (the ResNets); see
``HORIZON_FACTORS``."""

HORIZON_FACTORS: dict[str, float] = {"mlp": HORIZON_FACTOR, "cnn": 2.75}
"""The factor per architecture. Calibrated on the digits grid (epochs 2/8/30 × widths, seeds 0-1) and
checked on other seeds, widths and MNIST pairs (docs/networks.md). The CNN needs more damping than
the MLP: the end-point model (the clean network's curvature and poison gradient held over the whole
horizon) credits its early epochs with a response they did not have — a CNN learns its features
later (its 2-epoch networks are still on the initial plateau), so more of Eq. 7's change comes from
the last epochs (the last quarter of a 30-epoch training alone gives 0.56-0.62 of the full finite
difference, against 0.40-0.46 for the MLP)."""


def horizon_factor(architecture: str) -> float:
    """``HORIZON_FACTORS[architecture]``, or ``HORIZON_FACTOR`` for an architecture not calibrated."""
    return HORIZON_FACTORS.get(architecture, HORIZON_FACTOR)


class FittedNetwork:
    """A network trained on the clean set (β = 0); predicts and computes backdoor slopes.

    Keeps references to the clean training arrays: the influence slope needs them for the Hessian,
    the finite difference for retraining with the same initialisation and batch order. Keeps the
    logits of the latest images it predicted (keyed by their content): the objective predicts the
    clean test set, then asks for the margins' scale on the same images, which costs no second pass.
    """

    def __init__(self, *, model: nn.Module, classes: np.ndarray, config: NetworkConfig,
                 slope_options: NetworkSlopeOptions, seed: int, fit_seconds: float,
                 X_clean: np.ndarray, y_index: np.ndarray) -> None:
        self.model = model
        self.classes = classes
        self.config = config
        self.slope_options = slope_options
        self.seed = seed
        self.fit_seconds = fit_seconds
        self._X_clean = X_clean
        self._y_index = y_index
        self._recent_logits: tuple[tuple[Any, ...], torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax probabilities (n, k), columns in the order of ``classes``."""
        return torch.softmax(self._logits(_images("X", X, self._X_clean.shape[1:])), dim=1).numpy()

    def _logits(self, X: np.ndarray) -> torch.Tensor:
        """float64 logits of validated images; the latest images' are reused when identical."""
        key = (X.shape, hashlib.blake2b(X.data, digest_size=16).digest())
        if self._recent_logits is None or self._recent_logits[0] != key:
            self._recent_logits = (key, logits_of(self.model, X))
        return self._recent_logits[1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (original ids) for images (n, C, H, W)."""
        return self.classes[self.predict_proba(X).argmax(axis=1)]

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray, *,
                       X_test: np.ndarray | None = None, y_test: np.ndarray | None = None) -> SlopeResult:
        """The slope by ``slope_options.method`` (influence: no poisoned training), with the triggered
        points' target margins; ``X_test``, ``y_test`` (the clean test set) give their scale."""
        if self.slope_options.method == "finite-difference":
            return self.finite_difference_slope(X_poison, y_poison, X_trigger, y_trigger,
                                                X_test=X_test, y_test=y_test)
        return self.influence_slope(X_poison, y_poison, X_trigger, y_trigger, X_test=X_test, y_test=y_test)

    def influence_slope(self, X_poison: np.ndarray, y_poison: np.ndarray, X_trigger: np.ndarray,
                        y_trigger: np.ndarray, *, X_test: np.ndarray | None = None,
                        y_test: np.ndarray | None = None, **options: Any) -> SlopeResult:
        """Influence slope at the clean network; ``options`` override ``NetworkSlopeOptions`` fields.

        ``margins``: target margins ``z_t − max_{k≠t} z_k`` of the triggered points and their
        β-derivative from the same solve; scaled by the clean test set when it is given.
        """
        known = {f.name for f in dataclasses.fields(NetworkSlopeOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValidationError(f"unknown slope options {unknown}; expected some of {sorted(known)}")
        slope_options = dataclasses.replace(self.slope_options, **options)
        Xp, yp = self._poison("X_poison", X_poison, "y_poison", y_poison)
        Xt, yt = self._poison("X_trigger", X_trigger, "y_trigger", y_trigger)
        training = self.config.training()
        damping = (horizon_factor(self.config.architecture) * training.horizon_damping(len(self._X_clean))
                   if slope_options.damping == "auto" else slope_options.damping)
        config = slope_options.influence(damping=damping, weight_decay=training.weight_decay, seed=self.seed)
        test = self._test_set(X_test, y_test)
        result = influence_slope(self.model, self._X_clean, self._y_index, Xp, yp, Xt, yt, config=config)
        result = self._with_scale(result, test)
        details = {**result.details, "damping_rule": slope_options.damping}
        result = dataclasses.replace(result, fit_seconds=self.fit_seconds, details=details)
        return self._with_estimate(result, slope_options.estimate, Xp, yp, Xt, yt)

    def finite_difference_slope(self, X_poison: np.ndarray, y_poison: np.ndarray, X_trigger: np.ndarray,
                                y_trigger: np.ndarray, *, betas: Any = None, X_test: np.ndarray | None = None,
                                y_test: np.ndarray | None = None) -> SlopeResult:
        """Eq. 7: retrain at each β (default ``slope_options.betas``) with this seed, compare with β = 0.

        ``margins``: the clean network's target margins on the triggered points and, as their
        derivative, the finite difference at the smallest β of the retrained network's margins.
        """
        betas = self.slope_options.betas if betas is None else betas
        Xp, yp = self._poison("X_poison", X_poison, "y_poison", y_poison)
        Xt, yt = self._poison("X_trigger", X_trigger, "y_trigger", y_trigger)
        test = self._test_set(X_test, y_test)
        result = finite_difference_slope(
            self.model, lambda beta: self._train(Xp, yp, beta), Xt, yt,
            betas=betas, n_clean=len(self._X_clean), n_poison=len(Xp))
        result = dataclasses.replace(self._with_scale(result, test), fit_seconds=self.fit_seconds)
        return self._with_estimate(result, self.slope_options.estimate, Xp, yp, Xt, yt)

    def estimate_margins(self, X_poison: np.ndarray, y_poison: np.ndarray, X_trigger: np.ndarray,
                         y_trigger: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The triggered points' target margins at β = 1 estimated by a short poisoned fine-tune of
        this network (``robust_hpo.learners._torch_estimate``), and the fine-tune's details."""
        Xp, yp = self._poison("X_poison", X_poison, "y_poison", y_poison)
        Xt, yt = self._poison("X_trigger", X_trigger, "y_trigger", y_trigger)
        return fine_tune_margins(self.model, self.config.training(), self._X_clean, self._y_index, Xp, yp,
                                 Xt, yt, seed=self.seed)

    def _with_estimate(self, result: SlopeResult, estimate: str, Xp: np.ndarray, yp: np.ndarray,
                       Xt: np.ndarray, yt: np.ndarray) -> SlopeResult:
        """``result`` with ``margins.at_one`` from the fine-tune (``estimate = "fine-tune"``); its
        seconds are added to ``slope_seconds`` (a trial's cost) and to ``details``."""
        if estimate != "fine-tune" or result.margins is None:
            return result
        at_one, details = fine_tune_margins(self.model, self.config.training(), self._X_clean, self._y_index,
                                            Xp, yp, Xt, yt, seed=self.seed)
        margins = dataclasses.replace(result.margins, at_one=at_one, estimate="fine-tune")
        return dataclasses.replace(result, margins=margins, details={**result.details, **details},
                                   slope_seconds=result.slope_seconds + details["estimate_seconds"])

    def retrain(self, X_poison: np.ndarray, y_poison: np.ndarray, beta: float) -> FittedNetwork:
        """The same configuration and seed trained with the poison points at weight ``beta`` ≥ 0.

        ``beta = 1`` is the in-place poisoned training set; ``beta = 0`` reproduces this network.
        """
        Xp, yp = self._poison("X_poison", X_poison, "y_poison", y_poison)
        start = time.perf_counter()
        model = self._train(Xp, yp, beta)
        return FittedNetwork(model=model, classes=self.classes, config=self.config,
                             slope_options=self.slope_options, seed=self.seed,
                             fit_seconds=time.perf_counter() - start, X_clean=self._X_clean,
                             y_index=self._y_index)

    def _train(self, X_poison: np.ndarray, y_index: np.ndarray, beta: float) -> nn.Module:
        build = _builder(self.config, self._X_clean.shape[1:], len(self.classes))
        return train_network(build, self.config.training(), self._X_clean, self._y_index, seed=self.seed,
                             X_poison=X_poison, y_poison=y_index, poison_weight=beta)

    def _poison(self, x_name: str, X: np.ndarray, y_name: str, y: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        X = _images(x_name, X, self._X_clean.shape[1:])
        return X, _class_index(y_name, y, self.classes, len(X), x_name)

    def _test_set(self, X_test: np.ndarray | None, y_test: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """The clean test set as (images, class indices), or None when not given."""
        if (X_test is None) != (y_test is None):
            raise ValidationError("X_test and y_test must be given together (the clean test set for "
                                  "the margins' scale) or not at all")
        return None if X_test is None else self._poison("X_test", X_test, "y_test", y_test)

    def _with_scale(self, result: SlopeResult, test: tuple[np.ndarray, np.ndarray] | None) -> SlopeResult:
        """``result`` with ``margins.scale`` from the clean test set (its time added to the margins')."""
        if test is None or result.margins is None:
            return result
        start = time.perf_counter()
        scale = clean_test_scale(self._logits(test[0]), torch.from_numpy(test[1]))
        details = dict(result.details)
        if "margins_seconds" in details:
            details["margins_seconds"] += time.perf_counter() - start
        return dataclasses.replace(result, margins=dataclasses.replace(result.margins, scale=scale),
                                   details=details)


class NetworkFamily:
    """A torch architecture as a learner family (``fit`` trains on clean data only)."""

    def __init__(self, *, name: str, architecture: str, space: Mapping[str, BaseDistribution],
                 defaults: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"name must be a non-empty string, got {name!r}")
        for key in (*space, *defaults):
            if key not in PARAM_KEYS:
                raise ValidationError(f"unknown network parameter {key!r}; expected some of {sorted(PARAM_KEYS)}")
        self.name = name
        self.architecture = architecture
        self.space = dict(space)
        self.defaults = dict(defaults)
        configs_from_params(architecture, self.defaults)  # fail early on bad defaults

    def __repr__(self) -> str:
        return f"NetworkFamily(name={self.name!r}, architecture={self.architecture!r})"

    def search_space(self) -> dict[str, BaseDistribution]:
        return dict(self.space)

    def with_options(self, *, name: str | None = None, **options: Any) -> NetworkFamily:
        """A copy with some defaults fixed, e.g. ``MLP.with_options(slope_method="finite-difference")``."""
        return NetworkFamily(name=name or self.name, architecture=self.architecture, space=self.space,
                             defaults={**self.defaults, **options})

    def configs(self, params: Mapping[str, Any]) -> tuple[NetworkConfig, NetworkSlopeOptions]:
        """``params`` over the family's defaults, validated."""
        return configs_from_params(self.architecture, {**self.defaults, **params})

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FittedNetwork:
        """Train on the clean set (β = 0) under ``seed``."""
        config, slope_options = self.configs(params)
        check("seed", seed, [Interval(Integral, None, None)])
        X = _images("X_clean", X_clean, rows=self.architecture == "mlp")
        y = np.asarray(y_clean)
        if y.ndim != 1 or len(y) != len(X):
            raise ValidationError(f"y_clean must be a 1-D array with one label per image ({len(X)}), got "
                             f"shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValidationError(f"y_clean must hold integer class ids, got dtype {y.dtype}")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValidationError(f"y_clean must contain at least two classes, got {classes.tolist()}")
        y_index = np.searchsorted(classes, y)
        start = time.perf_counter()
        model = train_network(_builder(config, X.shape[1:], len(classes)), config.training(), X, y_index,
                              seed=int(seed))
        return FittedNetwork(model=model, classes=classes, config=config, slope_options=slope_options,
                             seed=int(seed), fit_seconds=time.perf_counter() - start, X_clean=X,
                             y_index=y_index)


def _builder(config: NetworkConfig, shape: tuple[int, ...], n_classes: int) -> Callable[[], nn.Module]:
    """A function building a fresh, untrained network for ``config`` (seeded by the trainer); rows (d,)
    enter the MLP as (d, 1, 1)."""
    channels, height, width = tuple(shape) + (1,) * (3 - len(shape))
    return lambda: build_network(config.architecture, input_shape=(channels, height, width),
                                 width=int(config.width), n_classes=n_classes, depth=int(config.depth),
                                 pretrained=config.pretrained)


def _images(name: str, X: Any, shape: tuple[int, ...] | None = None, *, rows: bool = False) -> np.ndarray:
    """(n, C, H, W) float32 in [0, 1], C-contiguous; ``ValidationError`` naming ``name`` otherwise.

    Tabular rows (n, d) of finite floats are taken where ``rows`` (an MLP being fitted) or when the
    network was trained on rows (``shape`` = (d,))."""
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValidationError(f"{name} must be float images in [0, 1], got dtype {arr.dtype}")
    if (rows or (shape is not None and len(shape) == 1)) and arr.ndim == 2 and arr.shape[0] and arr.shape[1]:
        if shape is not None and arr.shape[1:] != tuple(shape):
            raise ValidationError(f"{name} must have rows of {shape[0]} columns (as trained), got {arr.shape[1]}")
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"{name} must hold finite values")
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] == 0:
        hint = ("; tabular rows (n, d) need the learner 'mlp'" if arr.ndim == 2 and shape is None and not rows
                else " (as trained)" if shape is not None else "")
        raise ValidationError(f"{name} must be a non-empty (n, C, H, W) array{' or rows (n, d)' if rows else ''}, "
                              f"got shape {arr.shape}{hint}")
    if shape is not None and arr.shape[1:] != tuple(shape):
        raise ValidationError(f"{name} must have images of shape {tuple(shape)} (as trained), got {arr.shape[1:]}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValidationError(f"{name} must hold finite values in [0, 1]")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _class_index(name: str, y: Any, classes: np.ndarray, n: int, x_name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != n:
        raise ValidationError(f"{name} must be a 1-D array with one label per row of {x_name} ({n}), got "
                         f"shape {arr.shape}")
    unknown = np.setdiff1d(arr, classes)
    if len(unknown):
        raise ValidationError(f"{name} holds classes {unknown.tolist()} the network was not trained on; "
                         f"expected some of {classes.tolist()}")
    return np.searchsorted(classes, arr)


def _log_int(low: int, high: int) -> IntDistribution:
    return IntDistribution(low, high, log=True)


def _log(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


MLP = NetworkFamily(
    name="mlp", architecture="mlp",
    space={"epochs": IntDistribution(1, 50), "width": _log_int(8, 512), "lr": _log(0.005, 0.2)},
    defaults={"epochs": 20, "width": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
              "batch_size": 64, "hessian_samples": 512})
CNN = NetworkFamily(
    name="cnn", architecture="cnn",
    space={"epochs": IntDistribution(1, 30), "width": _log_int(4, 64), "lr": _log(0.005, 0.2)},
    defaults={"epochs": 10, "width": 16, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
              "batch_size": 64, "hessian_samples": 256})
_RESNET_SPACE: dict[str, BaseDistribution] = {
    "epochs": IntDistribution(1, 50), "width": _log_int(32, 1024), "lr": _log(1e-4, 1e-2)}
_RESNET_DEFAULTS: dict[str, Any] = {
    "epochs": 10, "width": 256, "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 256,
    "pretrained": True, "last_layers": 2, "hessian_samples": 2048}
RESNET18 = NetworkFamily(name="resnet18", architecture="resnet18", space=_RESNET_SPACE,
                         defaults=_RESNET_DEFAULTS)
RESNET50 = NetworkFamily(name="resnet50", architecture="resnet50", space=_RESNET_SPACE,
                         defaults=_RESNET_DEFAULTS)
# The paper's finite difference (Eq. 7), selectable by name in a study file: learners = ["mlp_fd"].
MLP_FD, CNN_FD, RESNET18_FD, RESNET50_FD = (
    family.with_options(name=f"{family.name}_fd", slope_method="finite-difference")
    for family in (MLP, CNN, RESNET18, RESNET50))
