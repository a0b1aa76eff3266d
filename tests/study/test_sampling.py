"""Sampler seeds: workers sharing a storage and a seed propose distinct configurations; one worker with a
fixed seed is bit-reproducible from scratch; a resumed study does not replay its suggestions."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from robust_hpo.study import StorageSpec, TrialSeededSampler, build_sampler, load_study_config, run_study, trial_seed

STUDY = """
[study]
name = "seeds"
n_trials = 12
seed = 7
sampler = "{sampler}"

[data]
dataset = "digits"
classes = [3, 8]
n_train = 60
n_test = 30

[attack]
size = 2

[search]
learners = ["logistic", "ridge", "linear_svm"]
"""


def _config(tmp_path: Path, sampler: str = "tpe"):
    path = tmp_path / f"{sampler}.toml"
    path.write_text(STUDY.format(sampler=sampler))
    return load_study_config(path)


def _configurations(study: optuna.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return x + y, x - y


def _interleaved_workers(tmp_path: Path, sampler_for_worker) -> list[tuple]:
    """Two workers (two storages on one journal file, the same seed) taking turns, 10 trials each."""
    path = tmp_path / "shared.log"
    workers = [optuna.create_study(study_name="s", storage=StorageSpec(journal=path).open(), load_if_exists=True,
                                   directions=["maximize", "minimize"], sampler=sampler_for_worker())
               for _ in range(2)]
    for _ in range(10):
        for worker in workers:
            worker.optimize(_objective, n_trials=1)
    return _configurations(workers[0])


def test_workers_with_the_same_seed_propose_distinct_configurations(tmp_path: Path) -> None:
    configurations = _interleaved_workers(tmp_path / "a", lambda: build_sampler("tpe", 0))
    assert len(configurations) == 20 and len(set(configurations)) == 20
    # the scheme it replaces (each process seeded with seed + trials it found: 0 for both) duplicates
    (tmp_path / "b").mkdir()
    naive = _interleaved_workers(tmp_path / "b", lambda: optuna.samplers.TPESampler(seed=0))
    assert len(set(naive)) < len(naive)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_one_worker_from_scratch_is_bit_reproducible(tmp_path: Path, sampler: str) -> None:
    config = _config(tmp_path, sampler)
    runs = [run_study(config, storage=str(tmp_path / f"run{i}" / "study.log"), progress=False).study
            for i in range(2)]
    first, second = ([(t.params, t.values, t.state) for t in study.trials] for study in runs)
    assert first == second and len(first) == 12


def test_a_resumed_study_does_not_replay_its_suggestions(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run_study(config, output=tmp_path / "out", n_trials=6, progress=False)
    study = run_study(config, output=tmp_path / "out", n_trials=6, progress=False).study
    configurations = _configurations(study)
    assert len(configurations) == 12 and len(set(configurations)) == 12


def test_parallel_threads_keep_their_own_samplers(tmp_path: Path) -> None:
    outcome = run_study(_config(tmp_path), output=tmp_path / "out", n_jobs=2, progress=False)
    configurations = _configurations(outcome.study)
    assert len(configurations) == 12 and len(set(configurations)) == 12
    sampler = outcome.study.sampler
    assert isinstance(sampler, TrialSeededSampler) and sampler._by_trial == {}  # released after each trial


def test_trial_seeds() -> None:
    seeds = {trial_seed(0, n) for n in range(1000)} | {trial_seed(1, n) for n in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**32 for s in seeds)
    assert trial_seed(3, 5) == trial_seed(3, 5)
