"""Finite-difference backdoor slope (the paper's Eq. 7): retrain at β, compare with β = 0.

For each β in ``betas``:

    dL/dβ ≈ (L_trig(θ*(β)) − L_trig(θ*(0))) / β,   influence = that / m,
    slope(β) = −(2/π)·arctan(influence),

with L_trig the *mean* cross-entropy on the triggered test points and β the sample weight of every
poison point (clean points weigh 1), exactly as the influence slope. The reported ``derivative``
is the quotient at the *smallest* β (closest to the derivative at 0); every β's quotient, slope,
triggered loss and backdoor accuracy are in ``details`` (the paper's Table 1 lists slope(β)).

``margins``: the clean network's target margins ``z_t − max_{k≠t} z_k`` on the triggered points
(β = 0) and, as their derivative, the same finite difference at the smallest β on the retrained
network's margins ``z_t − z_c`` (c the competing class at β = 0, held fixed).
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

from robust_hpo._validation import check_betas
from robust_hpo.errors import ValidationError
from robust_hpo.slope._result import SlopeResult, TriggerMargins, normalised_slope
from robust_hpo.slope._torch_margins import clean_test_scale, logits_of, margin_change, target_margins

FD_BETAS: tuple[float, ...] = (0.01,)
"""β values retrained by default (one extra training per β): small enough to stay near the
derivative at 0 for strongly trained networks, large enough to rise far above float32 round-off."""


def finite_difference_from_losses(loss_at_zero: float, betas: Sequence[float], losses: Sequence[float],
                                  *, n_clean: int, n_poison: int, n_trigger: int,
                                  backdoor_accuracy: Sequence[float] | None = None,
                                  slope_seconds: float = 0.0,
                                  margins: TriggerMargins | None = None) -> SlopeResult:
    """The Eq. 7 arithmetic on measured triggered-test losses (``losses[i]`` at ``betas[i]``);
    ``margins`` (already differenced) are passed through."""
    if not math.isfinite(loss_at_zero):
        raise ValidationError(f"loss_at_zero must be finite, got {loss_at_zero!r}")
    check_betas(betas, include_zero=False)
    order = np.argsort(np.asarray(betas, dtype=np.float64), kind="stable")
    betas_sorted = [float(betas[i]) for i in order]
    if len(losses) != len(betas):
        raise ValidationError(f"losses must have one value per beta ({len(betas)}), got {len(losses)}")
    losses_sorted = [float(losses[i]) for i in order]
    if not all(math.isfinite(v) for v in losses_sorted):
        raise ValidationError(f"losses must be finite, got {list(losses)!r}")
    if n_poison < 1:
        raise ValidationError(f"n_poison must be a positive integer, got {n_poison!r}")
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
            raise ValidationError("backdoor_accuracy must have one value at β = 0 and one per beta "
                             f"({len(betas) + 1}), got {len(backdoor_accuracy)}")
        details["backdoor_accuracy_at_zero"] = float(backdoor_accuracy[0])
        details["backdoor_accuracy"] = [float(backdoor_accuracy[1 + i]) for i in order]
    return SlopeResult.from_derivative(
        derivatives[0], n_poison=n_poison, n_clean=n_clean, n_trigger=n_trigger,
        method="finite-difference", loss="cross-entropy", slope_seconds=slope_seconds, details=details,
        margins=margins,
    )


def finite_difference_slope(clean_model: nn.Module, retrain: Callable[[float], nn.Module],
                            X_trigger: Any, y_trigger: Any, *, betas: Sequence[float] = FD_BETAS,
                            n_clean: int, n_poison: int, batch_size: int = 1024,
                            X_test: Any = None, y_test: Any = None) -> SlopeResult:
    """Eq. 7 with ``retrain(β)`` returning the network trained with poison weight β.

    ``clean_model`` is θ*(0) (the same training with β = 0: same initialisation and batch order,
    so the difference measures β and not training noise). ``y_trigger``: target class indices.
    ``X_test``, ``y_test`` (clean test inputs, true class indices; optional): the margins' scale.
    """
    betas = check_betas(betas, include_zero=False)
    if (X_test is None) != (y_test is None):
        raise ValidationError("X_test and y_test must be given together (the clean test set for the "
                              "margins' scale) or not at all")
    start = time.perf_counter()
    targets = _labels("y_trigger", y_trigger, len(X_trigger))
    logits = logits_of(clean_model, X_trigger, batch_size=batch_size)
    loss0, acc0 = _loss_and_accuracy(logits, targets)
    margin0, competitors = target_margins(logits, targets)
    losses, accuracies, margin_changes = [], [acc0], []
    for beta in betas:
        logits_beta = logits_of(retrain(beta), X_trigger, batch_size=batch_size)
        loss, accuracy = _loss_and_accuracy(logits_beta, targets)
        losses.append(loss)
        accuracies.append(accuracy)
        margin_changes.append(margin_change(logits_beta, targets, competitors) - margin0)
    scale = None
    if X_test is not None:
        labels = _labels("y_test", y_test, len(X_test), "test input")
        scale = clean_test_scale(logits_of(clean_model, X_test, batch_size=batch_size), labels)
    margins = TriggerMargins(margin=margin0.numpy(), derivative=(margin_changes[0] / betas[0]).numpy(),
                             scale=scale)
    return finite_difference_from_losses(
        loss0, betas, losses, n_clean=n_clean, n_poison=n_poison, n_trigger=len(targets),
        backdoor_accuracy=accuracies, slope_seconds=time.perf_counter() - start, margins=margins,
    )


def triggered_loss(model: nn.Module, X: Any, y: Any, *, batch_size: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` (in eval mode) on inputs ``X``, class indices ``y``."""
    targets = _labels("y_trigger", y, len(X))
    return _loss_and_accuracy(logits_of(model, X, batch_size=batch_size), targets)


def _loss_and_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, share of rows whose argmax is the target) from float64 logits."""
    loss = float(F.cross_entropy(logits, targets, reduction="mean"))
    return loss, float((logits.argmax(dim=1) == targets).double().mean())


def _labels(name: str, y: Any, n: int, what: str = "triggered input") -> torch.Tensor:
    y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if n == 0 or y_t.ndim != 1 or len(y_t) != n:
        raise ValidationError(f"{name} must hold one label per {what} ({n}), got shape {tuple(y_t.shape)}")
    return y_t.to(device="cpu", dtype=torch.long)
