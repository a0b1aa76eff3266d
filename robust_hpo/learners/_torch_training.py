"""Deterministic weighted training of a torch classifier: clean points weigh 1, poison points β.

Objective per minibatch B of clean points with its share P of the poison points:

    loss(B) = ( Σ_{i∈B} s_i CE_i + Σ_{j∈P} β_j CE_j ) / |B|        (+ SGD weight decay λ)

so one epoch's steps follow (up to the step size) the gradient of Eq. 1 scaled by 1/n:
J(θ; β) = (1/n)[Σ_i s_i CE_i + β Σ_j CE_j] + (λ/2)‖θ‖², the objective whose Hessian the influence
slope uses. The clean batch order depends on the seed alone (the poison points are dealt into the
same number of batches from a separate seeded stream), and with β = 0 the poison points are not
even evaluated — so β = 0 *is* clean training, bit for bit, and θ*(β) − θ*(0) measures β, not noise.
Batch-norm layers are kept in eval mode (frozen statistics), so the loss is a function of θ alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robust_hpo._validation import ConstraintSpec, Interval, check_params
from robust_hpo.errors import ValidationError


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """SGD with momentum; ``batch_size=None`` is full-batch gradient descent (one step per epoch).

    ``device``: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:<i>".
    """

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int | None = 64
    device: str = "auto"

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "epochs": [Interval(Integral, 1, None)],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None)],
        "batch_size": [Interval(Integral, 1, None), None],
    }

    def __post_init__(self) -> None:
        check_params({name: getattr(self, name) for name in self.constraints}, self.constraints)
        resolve_device(self.device)

    def steps_per_epoch(self, n_clean: int) -> int:
        return 1 if self.batch_size is None else math.ceil(n_clean / self.batch_size)

    def horizon_damping(self, n_clean: int) -> float:
        """``(1 − momentum) / (lr · steps)``: the curvature below which training had no time to converge.

        After T steps of (heavy-ball) gradient descent with effective step η = lr / (1 − momentum),
        a direction of curvature h has moved by the fraction 1 − (1 − ηh)^T of its way to the
        minimum, which behaves like h / (h + 1/(ηT)): early stopping acts as a damping 1/(ηT).
        """
        steps = self.epochs * self.steps_per_epoch(n_clean)
        return (1.0 - self.momentum) / (self.lr * steps)


def resolve_device(device: str) -> torch.device:
    """"auto" → the first CUDA device when available, else the CPU; other names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValidationError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValidationError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(f"device {device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return resolved


def train_network(build: Callable[[], nn.Module], config: TrainingConfig, X: np.ndarray, y: np.ndarray,
                  *, seed: int, sample_weight: np.ndarray | None = None,
                  X_poison: np.ndarray | None = None, y_poison: np.ndarray | None = None,
                  poison_weight: float | np.ndarray = 0.0, start: nn.Module | None = None,
                  max_steps: int | None = None, joint_batches: bool = False) -> nn.Module:
    """Build the network under ``seed`` and train it; returns it in eval mode on the config's device.

    ``X``, ``X_poison``: float32 inputs (n, ...); ``y``, ``y_poison``: class indices. ``sample_weight``
    (n,) weighs the clean points (default 1); ``poison_weight`` (a float β or an (m,) array) the
    poison points. ``start``: continue from a copy of this trained network instead of building one
    (a fine-tune; ``start`` itself is not modified); ``max_steps``: stop after this many SGD steps
    (within ``config.epochs``). ``joint_batches``: each step's clean batch and poison share go through
    the network in one forward/backward pass (the same loss, fewer passes — a small network's step
    costs mostly its per-pass overhead — but not bit-identical to separate passes; used by the β = 1
    estimate's fine-tune; the default keeps them apart so that β → 0 reproduces clean training's
    clean-row arithmetic exactly). Raises ``FloatingPointError`` if the loss becomes non-finite (lower ``lr``).
    """
    device = resolve_device(config.device)
    n = len(X)
    clean_w = None if sample_weight is None else _weights("sample_weight", sample_weight, n)
    if (X_poison is None) != (y_poison is None):
        raise ValidationError("X_poison and y_poison must be given together")
    m = 0 if X_poison is None else len(X_poison)
    poison_w = None
    if m:
        per_point = (np.full(m, poison_weight, dtype=np.float64) if np.ndim(poison_weight) == 0
                     else np.asarray(poison_weight))
        poison_w = _weights("poison_weight", per_point, m)
    use_poison = poison_w is not None and bool(np.any(poison_w > 0))

    if start is not None:
        model = copy.deepcopy(start).float()
    else:
        with _deterministic(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    X_t, y_t = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    w_t = None if clean_w is None else torch.from_numpy(clean_w).to(device, torch.float32)
    if use_poison:
        Xp_t = torch.from_numpy(np.ascontiguousarray(X_poison))
        yp_t = torch.from_numpy(np.asarray(y_poison, dtype=np.int64))
        wp_t = torch.from_numpy(poison_w).to(device, torch.float32)
    steps = config.steps_per_epoch(n)
    clean_order = np.random.default_rng([seed, 0])
    poison_order = np.random.default_rng([seed, 1])
    taken = 0
    with _deterministic():
        for epoch in range(config.epochs):
            if max_steps is not None and taken >= max_steps:
                break
            order = clean_order.permutation(n) if steps > 1 else np.arange(n)
            batches = np.array_split(order, steps)
            shares = np.array_split(poison_order.permutation(m), steps) if m else [None] * steps
            for batch, share in zip(batches, shares, strict=True):
                if max_steps is not None and taken >= max_steps:
                    break
                taken += 1
                _train_mode(model)
                index = torch.from_numpy(batch)
                if joint_batches and use_poison and share is not None and len(share):
                    p_index = torch.from_numpy(share)
                    inputs = torch.cat([X_t[index], Xp_t[p_index]]).to(device)
                    targets = torch.cat([y_t[index], yp_t[p_index]]).to(device)
                    clean_weight = (torch.ones(len(batch), device=device) if w_t is None
                                    else w_t[index.to(device)])
                    weights = torch.cat([clean_weight, wp_t[p_index.to(device)]])
                    total = (F.cross_entropy(model(inputs), targets, reduction="none") * weights).sum()
                else:
                    losses = F.cross_entropy(model(X_t[index].to(device)), y_t[index].to(device),
                                             reduction="none")
                    total = (losses if w_t is None else losses * w_t[index.to(device)]).sum()
                    if use_poison and share is not None and len(share):
                        p_index = torch.from_numpy(share)
                        p_losses = F.cross_entropy(model(Xp_t[p_index].to(device)), yp_t[p_index].to(device),
                                                   reduction="none")
                        total = total + (p_losses * wp_t[p_index.to(device)]).sum()
                loss = total / len(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            last = float(loss.detach())
            if not math.isfinite(last):
                raise FloatingPointError(f"training diverged: the loss is {last} after epoch "
                                         f"{epoch + 1}; lower lr (now {config.lr:g})")
    return model.eval()


def _train_mode(model: nn.Module) -> None:
    """Train mode except batch-norm layers, whose statistics stay frozen (a function of θ alone)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels (warn-only where none exists) and no cuDNN autotuning, then restore."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        torch.backends.cudnn.benchmark = previous_benchmark


def _weights(name: str, weights: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(weights, dtype=np.float64)
    if arr.shape != (n,):
        raise ValidationError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError(f"{name} must hold finite weights >= 0")
    return np.ascontiguousarray(arr)

