"""Samplers seeded per trial: distinct proposals from concurrent workers, bit-identical reruns of one.

A study's sampler is seeded with ``[study] seed`` (or ``--seed``). Seeding each *process* with it
makes concurrent workers on one storage propose the same configurations (they see the same history
and draw the same numbers); mixing in a worker identity (host, pid) would make every rerun differ.
:class:`TrialSeededSampler` instead gives each trial its own sampler, seeded with
``SeedSequence([seed, trial number])``: trial numbers are unique within a study, so workers draw
distinct numbers, and a single worker from scratch creates trials 0, 1, 2, … with the same seeds and
the same history every time — the same study, bit for bit. A resumed study continues with new trial
numbers, hence new draws.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.errors import ValidationError

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def sampler_factory(name: str) -> Callable[[int | None], BaseSampler]:
    """``seed -> sampler`` for ``"tpe"`` (Optuna's default), ``"nsga2"``, ``"gp"`` or ``"random"``."""
    if name == "tpe":
        return lambda seed: optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return lambda seed: optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        # Conditional parameters are sampled independently by design; do not warn about it.
        return lambda seed: optuna.samplers.GPSampler(seed=seed, deterministic_objective=True,
                                                      warn_independent_sampling=False)
    if name == "random":
        return lambda seed: optuna.samplers.RandomSampler(seed=seed)
    raise ValidationError(f"sampler must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {name!r}")


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number`` in a study seeded with ``seed`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Each trial sampled by its own ``factory(trial_seed(seed, trial.number))`` (thread-safe: trials
    running in parallel threads have separate samplers)."""

    def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int) -> None:
        self._factory = factory
        self.seed = seed
        self._by_trial: dict[int, BaseSampler] = {}
        self._lock = threading.Lock()

    def _sampler(self, trial: FrozenTrial) -> BaseSampler:
        with self._lock:
            sampler = self._by_trial.get(trial._trial_id)
            if sampler is None:
                sampler = self._by_trial[trial._trial_id] = self._factory(trial_seed(self.seed, trial.number))
            return sampler

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._sampler(trial).after_trial(study, trial, state, values)
        with self._lock:
            self._by_trial.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:  # the seeds come from the trial numbers; nothing to reseed
        pass


def build_sampler(name: str, seed: int | None) -> BaseSampler:
    """The study's sampler: ``name`` seeded per trial from ``seed`` (:class:`TrialSeededSampler`), or
    one unseeded sampler when ``seed`` is None."""
    factory = sampler_factory(name)
    return factory(None) if seed is None else TrialSeededSampler(factory, seed)
