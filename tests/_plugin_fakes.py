"""Fakes for the plugin tests: learner families with hand-computable scores and a tiny PoisonedSplit.

``FakeFamily``: predicts ``classes[1]`` when an image's mean pixel is ≥ ``threshold`` (else
``classes[0]``); its backdoor derivative is ``-C`` (so influence = -C/m and slope = (2/π)·atan(C/m));
``fit`` raises ``ValueError`` when ``C > fail_above``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from robust_hpo.attacks import PoisonedSplit
from robust_hpo.learners._base import register_family
from robust_hpo.slope import SlopeResult


class FakeFitted:
    fit_seconds = 0.0

    def __init__(self, C: float, threshold: float, classes: tuple[int, int]) -> None:
        self.C, self.threshold, self.classes = C, threshold, classes

    def predict(self, X: np.ndarray) -> np.ndarray:
        means = np.asarray(X).reshape(len(X), -1).mean(axis=1)
        return np.where(means >= self.threshold, self.classes[1], self.classes[0])

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray) -> SlopeResult:
        return SlopeResult.from_derivative(-self.C, n_poison=len(y_poison), n_clean=0,
                                           n_trigger=len(y_trigger), method="fake", loss="none")


class FakeFamily:
    def __init__(self, name: str, *, fail_above: float | None = None,
                 space: Mapping[str, BaseDistribution] | None = None) -> None:
        self.name = name
        self.fail_above = fail_above
        self._space = dict(space) if space is not None else {
            "C": FloatDistribution(1e-2, 1e2, log=True), "threshold": FloatDistribution(0.0, 1.0)}
        self.fit_calls: list[dict[str, Any]] = []

    def search_space(self) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FakeFitted:
        self.fit_calls.append(dict(params))
        C = float(params.get("C", 1.0))
        if self.fail_above is not None and C > self.fail_above:
            raise ValueError(f"C={C:.3g} is too large for {self.name}")
        classes = tuple(int(c) for c in np.unique(y_clean))
        return FakeFitted(C, float(params.get("threshold", 0.5)), classes)  # type: ignore[arg-type]


def expected_slope(C: float, m: int) -> float:
    """The fake's normalised slope, by hand: −(2/π)·atan(−C/m)."""
    return -2.0 / math.pi * math.atan(-C / m)


def expected_accuracy(split: PoisonedSplit, threshold: float) -> float:
    correct = 0
    for image, label in zip(split.X_test, split.y_test, strict=True):
        predicted = split.classes[1] if float(np.mean(image)) >= threshold else split.classes[0]
        correct += int(predicted == label)
    return correct / len(split.y_test)


def tiny_split(seed: int = 0, *, n: int = 40, n_test: int = 30, trigger_value: float = 1.0,
               classes: tuple[int, int] = (3, 8)) -> PoisonedSplit:
    """Dark images of classes[0], bright of classes[1] (4×4, one channel); a corner-pixel trigger."""
    rng = np.random.default_rng(seed)
    a, b = classes

    def images(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.where(np.arange(count) % 2 == 0, a, b).astype(np.int64)
        centre = np.where(y == a, 0.3, 0.7)[:, None, None, None]
        X = np.clip(centre + rng.normal(0.0, 0.15, size=(count, 1, 4, 4)), 0.0, 1.0).astype(np.float32)
        return X, y

    X_train, y_train = images(n)
    X_test, y_test = images(n_test)
    m = max(1, n // 10)
    chosen = np.arange(m)

    def trigger(X: np.ndarray) -> np.ndarray:
        X = X.copy()
        X[:, :, -1, -1] = trigger_value
        return X

    flip = {a: b, b: a}
    return PoisonedSplit(
        X_clean=X_train[m:], y_clean=y_train[m:],
        X_poison=trigger(X_train[chosen]), y_poison=np.array([flip[int(v)] for v in y_train[chosen]]),
        poison_indices=chosen, X_test=X_test, y_test=y_test,
        X_trigger=trigger(X_test), y_trigger=np.array([flip[int(v)] for v in y_test]),
        classes=classes, attack={"trigger": {"name": "corner", "value": np.float32(trigger_value)},
                                 "fraction": m / n, "pixels": (3, 3)},
    )


FAKE = register_family(FakeFamily("fake"))
FLAKY = register_family(FakeFamily("flaky", fail_above=1.0))
NET = register_family(FakeFamily("fake_net", space={
    "epochs": IntDistribution(1, 50), "width": IntDistribution(8, 512, log=True),
    "C": FloatDistribution(1e-2, 1e2, log=True)}))
