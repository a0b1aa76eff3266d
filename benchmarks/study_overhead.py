"""Optuna + storage + bookkeeping time as a share of trial time, on a study file (default: the quickstart).

The study's objective is built once (data loading excluded), then ``--n-trials`` trials run with the
study's sampler on each storage, each in a fresh folder: in memory (no storage cost, reference), the
default journal file, and SQLite. Per storage:

    trial time = wall time of study.optimize / trials
    compute    = fit + predict + slope seconds measured inside the objective
    overhead   = trial time − compute   (sampler, storage writes and reads, user attributes, constraint)
    share      = overhead / trial time  (target ≤ 10 % with the default journal storage)

``writes/trial`` counts the journal's log lines (one fsync'd append each). When the MNIST test split
is present (``--mnist-root``, default ``../shared/datasets/mnist`` beside the repository), the same
study is also measured on the paper's protocol (MNIST 7-1, 1500 train / 500 test, 3×3 BadNets), whose
trials are ~30× longer than the digits quickstart's.
The study file's ``[study] threads`` is applied as ``robust-hpo run`` applies it.
Run: ``python benchmarks/study_overhead.py [--study studies/quickstart.toml] [--n-trials 60]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from threadpoolctl import threadpool_info

from robust_hpo.objective import FAIL_EXCEPTIONS, BackdoorSlopeObjective, Evaluation
from robust_hpo.study import StorageSpec, StudyConfig, build_sampler, build_split, load_study_config, set_threads

REPO = Path(__file__).resolve().parents[1]


class TimedObjective(BackdoorSlopeObjective):
    """The study's objective, adding up the compute seconds of every evaluation."""

    compute_seconds = 0.0

    def evaluate_config(self, learner: str, params: Any) -> Evaluation:
        evaluation = super().evaluate_config(learner, params)
        self.compute_seconds += (evaluation.fit_seconds + evaluation.predict_seconds
                                 + sum(evaluation.slope_seconds.values()))
        return evaluation


@dataclass
class Measurement:
    storage: str
    trials: int
    wall: float
    compute: float
    writes: float | None

    @property
    def share(self) -> float:
        return (self.wall - self.compute) / self.wall


def measure(label: str, storage: Any, objective: TimedObjective, sampler_name: str, n_trials: int,
            journal: Path | None) -> Measurement:
    objective.compute_seconds = 0.0
    study = optuna.create_study(storage=storage, directions=list(objective.directions),
                                sampler=build_sampler(sampler_name, 0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, catch=FAIL_EXCEPTIONS)
    wall = time.perf_counter() - start
    writes = None
    if journal is not None:
        with journal.open("rb") as handle:
            writes = sum(1 for _ in handle) / n_trials
    return Measurement(label, n_trials, wall, objective.compute_seconds, writes)


def paper_mnist(config: StudyConfig, root: Path) -> StudyConfig:
    """``config`` on the paper's MNIST protocol: pair 7-1, 1500 train / 500 test, 3×3 BadNets."""
    data = replace(config.data, dataset="mnist", classes=(7, 1), n_train=1500, n_test=500, root=str(root))
    attack = replace(config.attacks[0], params={**config.attacks[0].params, "size": 3})
    return replace(config, data=data, attacks=(attack,))


def run_all(label: str, config: StudyConfig, n_trials: int, folder_root: Path | None) -> None:
    objective = TimedObjective(build_split(config), space=config.search.space(),
                               constraint=config.constraint, seed=config.data.seed)
    sampler = config.study.sampler
    with tempfile.TemporaryDirectory(dir=folder_root) as folder:
        journal = Path(folder) / "study.log"
        rows = [
            measure("in-memory", None, objective, sampler, n_trials, None),
            measure("journal", StorageSpec(journal=journal).open(), objective, sampler, n_trials, journal),
            measure("sqlite", StorageSpec(url=f"sqlite:///{folder}/study.db").open(), objective, sampler,
                    n_trials, None),
        ]
    print(f"\n{label}: sampler {sampler}, {n_trials} trials per storage, files in "
          f"{folder_root or tempfile.gettempdir()}")
    print(f"{'storage':<10} {'trial ms':>9} {'compute ms':>11} {'overhead ms':>12} {'share':>7} {'writes/trial':>13}")
    for row in rows:
        per = 1000.0 / row.trials
        writes = f"{row.writes:.1f}" if row.writes is not None else "-"
        print(f"{row.storage:<10} {row.wall * per:9.1f} {row.compute * per:11.1f} "
              f"{(row.wall - row.compute) * per:12.1f} {row.share:7.1%} {writes:>13}")
    by_name = {row.storage: row for row in rows}
    print(f"{label}: overhead share journal {by_name['journal'].share:.1%} (target ≤ 10 %), "
          f"sqlite {by_name['sqlite'].share:.1%}, in-memory {by_name['in-memory'].share:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "quickstart.toml")
    parser.add_argument("--n-trials", type=int, default=60)
    parser.add_argument("--journal-dir", type=Path, default=None,
                        help="folder for the journal/SQLite files (default: a temporary folder)")
    parser.add_argument("--mnist-root", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist",
                        help="MNIST folder for the paper-protocol measurement")
    parser.add_argument("--mnist-trials", type=int, default=30)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    config = load_study_config(args.study)
    set_threads(config.study.threads, config)  # as `robust-hpo run` does
    pools = ", ".join(f"{p['internal_api']}×{p['num_threads']}" for p in threadpool_info())
    print(f"BLAS threads: {pools} ([study] threads = {config.study.threads})")
    run_all(args.study.name, config, args.n_trials, args.journal_dir)
    if args.mnist_root is not None and args.mnist_root.is_dir():
        run_all("paper protocol (MNIST 7-1, 1500/500)", paper_mnist(config, args.mnist_root),
                args.mnist_trials, args.journal_dir)
    else:
        print(f"\n(MNIST not found at {args.mnist_root}; paper-protocol measurement skipped)")


if __name__ == "__main__":
    main()
