"""Target margins of a k-class network: ``m = z_target − max_{k ≠ target} z_k`` on its logits z.

Positive: the point is predicted as the target. For the triggered test points the competing class is
fixed at its argmax at the clean parameters (β = 0), so that ``dm/dβ`` is the derivative of one
smooth function of θ: ``(J_θ z)[target] − (J_θ z)[competitor]`` along ``dθ/dβ``. The scale that
makes margins comparable across configurations is the mean ``|z_y − max_{k ≠ y} z_k|`` of the clean
test points with their true labels y (``TriggerMargins.scale``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def target_margins(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(margins, competitors): ``z_t − z_c`` per row, c = the largest logit other than t."""
    rows = torch.arange(len(targets), device=logits.device)
    others = logits.clone()
    others[rows, targets] = -torch.inf
    competitors = others.argmax(dim=1)
    return logits[rows, targets] - logits[rows, competitors], competitors


def margin_change(logit_change: torch.Tensor, targets: torch.Tensor,
                  competitors: torch.Tensor) -> torch.Tensor:
    """The change of ``z_t − z_c`` (competitors held fixed) for a change of the logits."""
    rows = torch.arange(len(targets), device=logit_change.device)
    return logit_change[rows, targets] - logit_change[rows, competitors]


@torch.no_grad()
def logits_of(model: nn.Module, X: Any, *, batch_size: int = 1024) -> torch.Tensor:
    """``model``'s logits (float64, on the CPU) for inputs ``X``, in eval mode, batch by batch."""
    parameter = next(model.parameters())
    X_t = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X))
    was_training = model.training
    model.eval()
    try:
        out = [model(X_t[i:i + batch_size].to(device=parameter.device, dtype=parameter.dtype))
               .double().cpu() for i in range(0, len(X_t), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def clean_test_scale(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean ``|z_y − max_{k ≠ y} z_k|`` over clean test points with their true labels ``y``."""
    margins, _ = target_margins(logits.double(), labels.to(logits.device))
    return float(margins.abs().mean())
