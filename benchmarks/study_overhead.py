"""Optuna + storage + bookkeeping time as a share of trial time, on a study file (default: the quickstart).

The study's objective is built once (data loading excluded), then ``--n-trials`` trials run with the
study's sampler on each storage, each in a fresh folder: in memory (no storage cost, reference), the
default journal file, SQLite and — when a throwaway server can be started (PostgreSQL 15 binaries
and psycopg2, as the tests do) — PostgreSQL. Per storage:

    trial time = wall time of study.optimize / trials
    compute    = fit + predict + slope seconds measured inside the objective
    overhead   = trial time − compute   (sampler, storage writes and reads, user attributes, constraint)
    share      = overhead / trial time  (target ≤ 10 % with the default journal storage)

``writes/trial`` counts the storage's write calls per trial (trial creation, parameters, attributes,
values; each a fsync'd journal append or a database transaction); ``objective`` counts the
objective's own (its user attribute and constraint writes; target ≤ 4). When the MNIST test split
is present (``--mnist-root``, default ``../shared/datasets/mnist`` beside the repository), the same
study is also measured on the paper's protocol (MNIST 7-1, 1500 train / 500 test, 3×3 BadNets), whose
trials are ~30× longer than the digits quickstart's.
The study file's ``[study] threads`` is applied as ``robust-hpo run`` applies it.
Run: ``python benchmarks/study_overhead.py [--study studies/quickstart.toml] [--n-trials 60]``.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from threadpoolctl import threadpool_info

from robust_hpo.objective import FAIL_EXCEPTIONS, BackdoorSlopeObjective, Evaluation
from robust_hpo.study import StorageSpec, StudyConfig, build_sampler, build_splits, load_study_config, set_threads
from robust_hpo.testing import PostgresUnavailable, throwaway_postgres

WRITES = ("create_new_trial", "set_trial_param", "set_trial_user_attr", "set_trial_system_attr",
          "set_trial_state_values", "set_trial_intermediate_value")
"""The storage methods that write a trial (counted per call)."""

_PRIVATE_WRITES = {"_create_new_trial": "create_new_trial", "_set_trial_param": "set_trial_param"}
"""What Optuna's cache in front of an RDB storage calls instead of the public methods."""

OBJECTIVE_WRITES = ("set_trial_user_attr", "set_trial_system_attr")
"""The writes the objective itself makes (its record and constraint); the rest are Optuna's."""

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
    writes: dict[str, int] | None

    @property
    def share(self) -> float:
        return (self.wall - self.compute) / self.wall

    def per_trial(self, methods: tuple[str, ...]) -> float | None:
        if self.writes is None:
            return None
        return sum(self.writes.get(m, 0) for m in methods) / self.trials


def count_writes(storage: Any) -> dict[str, int]:
    """Wrap ``storage``'s write methods (on the instance) to count their calls; a write method calling
    another (``create_new_trial`` → ``_create_new_trial``) counts once."""
    counts: dict[str, int] = {}
    depth = [0]
    names = {name: name for name in WRITES}
    names.update({private: public for private, public in _PRIVATE_WRITES.items() if hasattr(storage, private)})
    for name, counted_as in names.items():
        method = getattr(storage, name)

        def counted(*args: Any, _method: Any = method, _name: str = counted_as, **kwargs: Any) -> Any:
            if depth[0] == 0:
                counts[_name] = counts.get(_name, 0) + 1
            depth[0] += 1
            try:
                return _method(*args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(storage, name, counted)
    return counts


def measure(label: str, storage: Any, objective: TimedObjective, sampler_name: str, n_trials: int) -> Measurement:
    objective.compute_seconds = 0.0
    study = optuna.create_study(storage=storage, directions=list(objective.directions),
                                sampler=build_sampler(sampler_name, 0))
    writes = count_writes(storage) if storage is not None else None
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, catch=FAIL_EXCEPTIONS)
    wall = time.perf_counter() - start
    return Measurement(label, n_trials, wall, objective.compute_seconds, writes)


def paper_mnist(config: StudyConfig, root: Path) -> StudyConfig:
    """``config`` on the paper's MNIST protocol: pair 7-1, 1500 train / 500 test, 3×3 BadNets."""
    data = replace(config.data, dataset="mnist", classes=(7, 1), n_train=1500, n_test=500, root=str(root))
    attack = replace(config.attacks[0], params={**config.attacks[0].params, "size": 3})
    return replace(config, data=data, attacks=(attack,))


def run_all(label: str, config: StudyConfig, n_trials: int, folder_root: Path | None,
            postgres: str | None) -> None:
    objective = TimedObjective(build_splits(config), space=config.search.space(), families=config.families(),
                               constraint=config.constraint, seed=config.data.seed,
                               aggregate=config.study.aggregate, objective=config.study.objective)
    sampler = config.study.sampler
    with tempfile.TemporaryDirectory(dir=folder_root) as folder:
        rows = [
            measure("in-memory", None, objective, sampler, n_trials),
            measure("journal", StorageSpec(journal=Path(folder) / "study.log").open(), objective, sampler, n_trials),
            measure("sqlite", StorageSpec(url=f"sqlite:///{folder}/study.db").open(), objective, sampler, n_trials),
        ]
        if postgres is not None:
            rows.append(measure("postgresql", StorageSpec(url=postgres).open(), objective, sampler, n_trials))
    print(f"\n{label}: sampler {sampler}, {n_trials} trials per storage, files in "
          f"{folder_root or tempfile.gettempdir()}")
    print(f"{'storage':<11} {'trial ms':>9} {'compute ms':>11} {'overhead ms':>12} {'share':>7} "
          f"{'writes/trial':>13} {'objective <=4':>14}")
    for row in rows:
        per = 1000.0 / row.trials
        total, own = row.per_trial(WRITES), row.per_trial(OBJECTIVE_WRITES)
        print(f"{row.storage:<11} {row.wall * per:9.1f} {row.compute * per:11.1f} "
              f"{(row.wall - row.compute) * per:12.1f} {row.share:7.1%} "
              f"{'-' if total is None else f'{total:.1f}':>13} {'-' if own is None else f'{own:.1f}':>14}")
    by_name = {row.storage: row for row in rows}
    reference = by_name["in-memory"]
    for row in rows[1:]:
        extra = (row.wall - row.compute) / row.trials - (reference.wall - reference.compute) / reference.trials
        print(f"{row.storage}: {extra * 1000 / row.per_trial(WRITES):.2f} ms per write "
              f"(storage overhead beyond in-memory / writes)")
    print(f"{label}: overhead share journal {by_name['journal'].share:.1%} (target ≤ 10 %), "
          f"sqlite {by_name['sqlite'].share:.1%}, in-memory {by_name['in-memory'].share:.1%}"
          + (f", postgresql {by_name['postgresql'].share:.1%}" if "postgresql" in by_name else "")
          + f"; objective writes/trial {max(r.per_trial(OBJECTIVE_WRITES) or 0 for r in rows):.1f} (target ≤ 4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "quickstart.toml")
    parser.add_argument("--n-trials", type=int, default=60)
    parser.add_argument("--journal-dir", type=Path, default=None,
                        help="folder for the journal/SQLite files (default: a temporary folder)")
    parser.add_argument("--mnist-root", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist",
                        help="MNIST folder for the paper-protocol measurement")
    parser.add_argument("--mnist-trials", type=int, default=30)
    parser.add_argument("--no-postgres", action="store_true", help="skip the throwaway PostgreSQL server")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    config = load_study_config(args.study)
    set_threads(config.study.threads, config)  # as `robust-hpo run` does
    pools = ", ".join(f"{p['internal_api']}×{p['num_threads']}" for p in threadpool_info())
    print(f"BLAS threads: {pools} ([study] threads = {config.study.threads})")
    with contextlib.ExitStack() as stack:
        postgres = None
        if not args.no_postgres:
            try:
                postgres = stack.enter_context(throwaway_postgres())("study_overhead")
            except PostgresUnavailable as exc:
                print(f"({exc}: postgresql row skipped)")
        run_all(args.study.name, config, args.n_trials, args.journal_dir, postgres)
        if args.mnist_root is not None and args.mnist_root.is_dir():
            run_all("paper protocol (MNIST 7-1, 1500/500)", paper_mnist(config, args.mnist_root),
                    args.mnist_trials, args.journal_dir, postgres)
        else:
            print(f"\n(MNIST not found at {args.mnist_root}; paper-protocol measurement skipped)")


if __name__ == "__main__":
    main()
