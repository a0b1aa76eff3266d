"""The β = 1 backdoor-accuracy estimate of a network: a short poisoned fine-tune of the clean network.

The influence slope's margins, extended linearly from β = 0 to β = 1, saturate at 0.9–1.0 for any
network trained beyond a few epochs (their derivatives are 30–500 per unit β while the real margin
curves flatten by β ≈ 0.1–0.3). What a user wants is the backdoor accuracy after training from
scratch on the in-place poisoned set. This module measures it cheaply instead:

    continue SGD from the clean network (same lr, momentum, weight decay, batch size) on clean ∪
    poison for s = ⌈STEPS_FRACTION · T⌉ steps (T = the clean training's steps), the poison points
    weighted β_ft = DOSE · T / s (≈ 2.25),

so the poison points receive DOSE = ¾ of the gradient "dose" (weight × epochs) they get in a full
poisoned training, in a third of its steps. The triggered test points' target margins
``z_target − max_{k≠target} z_k`` of the fine-tuned network are the estimate at β = 1.

How it was chosen (docs/networks.md; three digits grids, MLP and CNN, epochs 2–40, against the mean
of three from-scratch poisoned trainings): fine-tunes of half the epochs at β = 1, a quarter at
β = 2 and a third at β = 1.5 gave the same backdoor accuracy within ±0.05 on the MLP (the dose, not
the number of steps, decides). Dose ½ underestimated long trainings (mean |error| 0.05–0.08), the
full dose (a quarter at β = 4) overestimated short ones (0.09); ¾ gave 0.05–0.06. Lost: the linear
margins (0.32–0.42), a saturating margin model fitted to β = 0 (0.08–0.30, its time constant
differs between MLP and CNN), and fine-tune margins extrapolated linearly in time (0.30–0.47).
A third of the steps instead of a quarter (the same dose, β_ft = 2.25 instead of 3) ranked the CNN
candidates of four digits studies of our own (``nets_decision_quality --seed-offset 200`` and
``300``, 21 candidates, truth = mean of 4 fresh poisoned trainings) better: Spearman 0.915 / 0.873
against 0.830 / 0.521 for a quarter, mean |error| 0.079 / 0.086 against 0.082 / 0.072 (a quarter at
dose 0.6: 0.879 / 0.664; half the steps: 0.903, mean |error| 0.109, and two quarter-length
fine-tunes averaged: 0.855, both on the first two studies only).
Cost: ≈ (1 + m/n) / 3 of a clean training (one forward/backward pass per step over the clean batch
and its poison share together).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from robust_hpo.learners._torch_training import TrainingConfig, train_network
from robust_hpo.slope.networks import logits_of, target_margins

STEPS_FRACTION = 1 / 3
"""The fine-tune's share of the clean training's SGD steps (¼ until the CNN check below)."""

DOSE = 0.75
"""The poison points' weight × epochs in the fine-tune over that in a full poisoned training."""

SEED_OFFSET = 7919
"""The fine-tune's batch order is drawn from ``seed + SEED_OFFSET`` (not the training's own order)."""


def fine_tune_margins(model: nn.Module, config: TrainingConfig, X_clean: np.ndarray, y_clean: np.ndarray,
                      X_poison: np.ndarray, y_poison: np.ndarray, X_trigger: np.ndarray, y_trigger: np.ndarray,
                      *, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(target margins of the triggered points after the fine-tune, details). Labels are class indices.

    ``model`` (the clean network) is not modified. ``details``: ``estimate_steps``, ``estimate_weight``
    (β_ft), ``estimate_seconds``.
    """
    start = time.perf_counter()
    steps_per_epoch = config.steps_per_epoch(len(X_clean))
    total = config.epochs * steps_per_epoch
    steps = max(1, math.ceil(STEPS_FRACTION * total))
    weight = DOSE * total / steps
    tuned = train_network(lambda: model, config, X_clean, y_clean, seed=seed + SEED_OFFSET,
                          X_poison=X_poison, y_poison=y_poison, poison_weight=weight, start=model,
                          max_steps=steps, joint_batches=True)
    margins, _ = target_margins(logits_of(tuned, X_trigger), torch.from_numpy(np.asarray(y_trigger)))
    return margins.numpy(), {"estimate": "fine-tune", "estimate_steps": steps, "estimate_weight": weight,
                             "estimate_seconds": time.perf_counter() - start}
