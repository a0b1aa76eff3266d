"""The two configs a network trial needs: what to train (``NetworkConfig``) and how to score it
(``NetworkSlopeOptions``), both buildable from one flat params mapping (Optuna params + fixed options).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any, Literal

from robust_hpo._validation import BOOLEAN, Interval, Options, check, check_betas, check_params
from robust_hpo.errors import ValidationError
from robust_hpo.learners._torch_models import ARCHITECTURES
from robust_hpo.learners._torch_training import TrainingConfig
from robust_hpo.slope.networks import FD_BETAS, InfluenceConfig

SLOPE_METHODS: tuple[str, ...] = ("influence", "finite-difference")
ESTIMATES: tuple[str, ...] = ("fine-tune", "linear")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Architecture and SGD training of one configuration (see ``_torch_models`` for ``width``)."""

    architecture: str
    width: int
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int | None = 64
    depth: int = 1
    pretrained: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        check_params({"architecture": self.architecture, "width": self.width, "depth": self.depth,
                      "pretrained": self.pretrained},
                     {"architecture": [Options(ARCHITECTURES)], "width": [Interval(Integral, 1, None)],
                      "depth": [Interval(Integral, 1, None)], "pretrained": [BOOLEAN]})
        if self.pretrained and not self.architecture.startswith("resnet"):
            raise ValidationError(f"pretrained weights exist only for resnet18/resnet50, not "
                             f"{self.architecture!r}")
        self.training()  # validates epochs, lr, momentum, weight_decay, batch_size, device

    def training(self) -> TrainingConfig:
        return TrainingConfig(epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay, batch_size=self.batch_size, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class NetworkSlopeOptions:
    """How ``FittedNetwork.backdoor_slope`` scores a configuration.

    method: "influence" (default: implicit differentiation at the clean network, no retraining) or
        "finite-difference" (Eq. 7: one retraining per β in ``betas``).
    damping: "auto" (default) = a factor times the training horizon's damping ``(1 − momentum)/(lr ·
        steps)`` (``TrainingConfig.horizon_damping``; the factor — 2 for the MLP, 2.75 for the CNN — is
        a calibration against Eq. 7's finite difference, ``robust_hpo.learners.networks.HORIZON_FACTORS``),
        or a number ≥ 0; added to H + λI.
    hessian, last_layers, hessian_samples, cg_tol, cg_max_iter, solve_dtype: see
        ``InfluenceConfig`` (``last_layers = None`` means all parameters; ``solve_dtype`` is its dtype).
    estimate: how the β = 1 backdoor accuracy is estimated: "fine-tune" (default: a short poisoned
        fine-tune of the clean network, ``robust_hpo.learners._torch_estimate``; ≈ 0.35–0.4 of a clean
        training) or "linear" (the margins linearised from β = 0: free, but saturates at 0.9–1.0).
    """

    method: Literal["influence", "finite-difference"] = "influence"
    betas: tuple[float, ...] = FD_BETAS
    damping: float | Literal["auto"] = "auto"
    hessian: Literal["gauss-newton", "exact"] = "gauss-newton"
    last_layers: int | None = None
    hessian_samples: int | None = None
    cg_tol: float = 1e-3
    cg_max_iter: int = 1000
    solve_dtype: Literal["float32", "float64"] = "float32"
    estimate: Literal["fine-tune", "linear"] = "fine-tune"

    def __post_init__(self) -> None:
        check("slope_method", self.method, [Options(SLOPE_METHODS)])
        check("estimate", self.estimate, [Options(ESTIMATES)])
        object.__setattr__(self, "betas", check_betas(self.betas, include_zero=False))
        check("damping", self.damping, [Options(["auto"]), Interval(Real, 0, None)])
        self.influence(damping=0.0)  # validates the solver options

    def influence(self, *, damping: float, weight_decay: float = 0.0, seed: int = 0) -> InfluenceConfig:
        """The solver config; ``seed`` draws the Hessian subsample (if ``hessian_samples`` is set)."""
        return InfluenceConfig(damping=float(damping), weight_decay=float(weight_decay),
                               hessian=self.hessian, last_layers=self.last_layers,
                               hessian_samples=self.hessian_samples, tol=self.cg_tol,
                               max_iter=self.cg_max_iter, dtype=self.solve_dtype, seed=int(seed))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SLOPE_KEYS = {"slope_method": "method", "betas": "betas", "damping": "damping", "hessian": "hessian",
               "last_layers": "last_layers", "hessian_samples": "hessian_samples", "cg_tol": "cg_tol",
               "cg_max_iter": "cg_max_iter", "solve_dtype": "solve_dtype", "estimate": "estimate"}
_NETWORK_KEYS = tuple(f.name for f in fields(NetworkConfig) if f.name != "architecture")
PARAM_KEYS: tuple[str, ...] = (*_NETWORK_KEYS, *_SLOPE_KEYS)
"""Every key a network family's params (or options) may hold."""


def configs_from_params(architecture: str, params: Mapping[str, Any]
                        ) -> tuple[NetworkConfig, NetworkSlopeOptions]:
    """Split flat ``params`` into the two configs; unknown keys raise ``ValidationError``.

    TOML has no ``None``: ``"all"`` is accepted for ``last_layers`` / ``hessian_samples`` and
    ``"full"`` for ``batch_size``; ``betas`` may be a list.
    """
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ValidationError(f"unknown network parameters {unknown}; expected some of {sorted(PARAM_KEYS)}")
    network = {k: v for k, v in params.items() if k in _NETWORK_KEYS}
    if network.get("batch_size") == "full":
        network["batch_size"] = None
    slope = {_SLOPE_KEYS[k]: v for k, v in params.items() if k in _SLOPE_KEYS}
    for key in ("last_layers", "hessian_samples"):
        if slope.get(key) == "all":
            slope[key] = None
    if isinstance(slope.get("betas"), list):
        slope["betas"] = tuple(slope["betas"])
    return NetworkConfig(architecture=architecture, **network), NetworkSlopeOptions(**slope)
