"""Finite-difference backdoor slope (the paper's Eq. 7): retrain at β, compare with β = 0.

For each β in ``betas``:

    dL/dβ ≈ (L_trig(θ*(β)) − L_trig(θ*(0))) / β,   influence = that / m,
    slope(β) = −(2/π)·arctan(influence),

with L_trig the *mean* cross-entropy on the triggered test points and β the sample weight of every
poison point (clean points weigh 1), exactly as the influence slope. The reported ``derivative``
is the quotient at the *smallest* β (closest to the derivative at 0); every β's quotient, slope,
triggered loss and backdoor accuracy are in ``details`` (the paper's Table 1 lists slope(β)).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robust_hpo.slope._result import SlopeResult, normalised_slope

DEFAULT_BETAS: tuple[float, ...] = (0.01,)
"""β values retrained by default (one extra training per β): small enough to stay near the
derivative at 0 for strongly trained networks, large enough to rise far above float32 round-off."""


def check_betas(betas: Any) -> tuple[float, ...]:
    """``betas`` as a sorted tuple of distinct floats in (0, ∞); ``ValueError`` otherwise."""
    if isinstance(betas, str | bytes) or not isinstance(betas, Sequence | np.ndarray) or len(betas) == 0:
        raise ValueError(f"betas must be a non-empty list of positive numbers, got {betas!r}")
    values: list[float] = []
    for beta in betas:
        if isinstance(beta, bool) or not isinstance(beta, int | float | np.number) or not (
                math.isfinite(beta) and beta > 0):
            raise ValueError(f"betas must hold finite numbers > 0, got {beta!r}")
        values.append(float(beta))
    if len(set(values)) != len(values):
        raise ValueError(f"betas must be distinct, got {list(betas)!r}")
    return tuple(sorted(values))


def finite_difference_from_losses(loss_at_zero: float, betas: Sequence[float], losses: Sequence[float],
                                  *, n_clean: int, n_poison: int, n_trigger: int,
                                  backdoor_accuracy: Sequence[float] | None = None,
                                  slope_seconds: float = 0.0) -> SlopeResult:
    """The Eq. 7 arithmetic on measured triggered-test losses (``losses[i]`` at ``betas[i]``)."""
    if not math.isfinite(loss_at_zero):
        raise ValueError(f"loss_at_zero must be finite, got {loss_at_zero!r}")
    check_betas(betas)
    order = np.argsort(np.asarray(betas, dtype=np.float64), kind="stable")
    betas_sorted = [float(betas[i]) for i in order]
    if len(losses) != len(betas):
        raise ValueError(f"losses must have one value per beta ({len(betas)}), got {len(losses)}")
    losses_sorted = [float(losses[i]) for i in order]
    if not all(math.isfinite(v) for v in losses_sorted):
        raise ValueError(f"losses must be finite, got {list(losses)!r}")
    if n_poison < 1:
        raise ValueError(f"n_poison must be a positive integer, got {n_poison!r}")
    derivatives = [(loss - loss_at_zero) / beta for beta, loss in zip(betas_sorted, losses_sorted,
                                                                        strict=True)]
    details: dict[str, Any] = {
        "betas": betas_sorted,
        "loss_at_zero": float(loss_at_zero),
        "losses": losses_sorted,
        "derivatives": derivatives,
        "influences": [d / n_poison for d in derivatives],
        "slopes": [normalised_slope(d / n_poison) for d in derivatives],
    }
    if backdoor_accuracy is not None:
        if len(backdoor_accuracy) != len(betas) + 1:
            raise ValueError("backdoor_accuracy must have one value at β = 0 and one per beta "
                             f"({len(betas) + 1}), got {len(backdoor_accuracy)}")
        details["backdoor_accuracy_at_zero"] = float(backdoor_accuracy[0])
        details["backdoor_accuracy"] = [float(backdoor_accuracy[1 + i]) for i in order]
    return SlopeResult.from_derivative(
        derivatives[0], n_poison=n_poison, n_clean=n_clean, n_trigger=n_trigger,
        method="finite-difference", loss="cross-entropy", slope_seconds=slope_seconds, details=details,
    )


def finite_difference_slope(clean_model: nn.Module, retrain: Callable[[float], nn.Module],
                            X_trigger: Any, y_trigger: Any, *, betas: Sequence[float] = DEFAULT_BETAS,
                            n_clean: int, n_poison: int, batch_size: int = 1024) -> SlopeResult:
    """Eq. 7 with ``retrain(β)`` returning the network trained with poison weight β.

    ``clean_model`` is θ*(0) (the same training with β = 0: same initialisation and batch order,
    so the difference measures β and not training noise). ``y_trigger``: target class indices.
    """
    betas = check_betas(betas)
    start = time.perf_counter()
    loss0, acc0 = triggered_loss(clean_model, X_trigger, y_trigger, batch_size=batch_size)
    losses, accuracies = [], [acc0]
    for beta in betas:
        loss, accuracy = triggered_loss(retrain(beta), X_trigger, y_trigger, batch_size=batch_size)
        losses.append(loss)
        accuracies.append(accuracy)
    return finite_difference_from_losses(
        loss0, betas, losses, n_clean=n_clean, n_poison=n_poison, n_trigger=len(y_trigger),
        backdoor_accuracy=accuracies, slope_seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def triggered_loss(model: nn.Module, X: Any, y: Any, *, batch_size: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` (in eval mode) on inputs ``X``, class indices ``y``."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    X_t = torch.as_tensor(X) if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X))
    y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if len(X_t) == 0 or y_t.ndim != 1 or len(y_t) != len(X_t):
        raise ValueError(f"y_trigger must hold one label per triggered input ({len(X_t)}), "
                         f"got shape {tuple(y_t.shape)}")
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(X_t), batch_size):
        logits = model(X_t[i:i + batch_size].to(device=device, dtype=dtype))
        target = y_t[i:i + batch_size].to(device=device, dtype=torch.long)
        total += float(F.cross_entropy(logits.double(), target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    model.train(was_training)
    return total / len(X_t), correct / len(X_t)
