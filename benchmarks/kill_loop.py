"""Kill loops: several `robust-hpo run` workers on one study, each killed with SIGKILL at a random moment,
round after round; then one resume. Prints what the kills left behind and what the resume left.

Per storage (a fresh journal file, SQLite file or database each):

* each round starts ``--workers`` workers (``--n-trials`` large, heartbeat 1 s, grace period 3 s), waits
  until the study grows, then kills every worker at its own random moment within ``--window`` seconds
  (seeded by ``--seed``); after the round it counts the trials left RUNNING (orphans), a lock file left
  behind and a torn last record (journal);
* ``start s`` is how long a round's workers took from spawn to the study's first new record (median and
  maximum over rounds): a stale lock that made workers wait 30 s would show there;
* the resume (after the grace period) runs ``--resume-trials`` trials, then the study is read with
  Optuna's own storage classes: trials still RUNNING or WAITING, orphans failed (journal: ``WorkerLost``;
  RDB: failed by the heartbeat), retries and completed retries (Optuna's ``failed_trial`` link),
  duplicate configurations among completed trials (every worker has the same seed).

Run: ``python benchmarks/kill_loop.py [--storage journal sqlite postgres] [--rounds 10] [--workers 3]``
(``postgres`` starts a throwaway server with ``robust_hpo.testing.throwaway_postgres``; skipped when
PostgreSQL is not installed).

**Freeze loop** (``--freeze``, journal only): ``--workers`` workers run; each round waits until the
journal's lock file names one of them, freezes that worker (SIGSTOP) *while it holds the lock* for
``--freeze-seconds`` (default 13, past the 10 s grace period of locks of unknown owners), then
continues it (SIGCONT). At the end every worker is interrupted (SIGINT: exit 130 expected) and one
resume runs. Printed: rounds frozen while holding the lock, locks broken while their owner lived,
workers that ended otherwise than 130 or printed a traceback, torn records cut, whether the journal
is intact (every line a record that belongs) and loads in Optuna, and the trials the resume left
RUNNING. ``--code DIR`` runs the workers from another checkout (e.g. an older commit, extracted with
``git archive``) to compare. Run: ``python benchmarks/kill_loop.py --freeze [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from robust_hpo.objective import trial_record  # reads the reason a trial failed from its record

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "quickstart.toml"
GRACE = 3


def _plain_storage(kind: str, location: str) -> optuna.storages.BaseStorage:
    """Optuna's own storage class for the location (no robust_hpo code reads the results)."""
    if kind == "journal":
        return JournalStorage(JournalFileBackend(location))
    from robust_hpo.study._storage import postgres_driver_url

    return RDBStorage(postgres_driver_url(location))


def _trials(kind: str, location: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=_plain_storage(kind, location)).trials
    except KeyError:
        return []


def _n_records(kind: str, location: str, name: str) -> int:
    if kind == "journal":
        path = Path(location)
        return path.stat().st_size if path.exists() else 0
    return len(_trials(kind, location, name))


def kill_loop(kind: str, location: str, output: Path, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    name = "quickstart"
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(args.study), "--storage", location,
               "--output", str(output), "--no-progress", "--heartbeat-interval", "1", "--grace-period", str(GRACE),
               "--max-retry", "100"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    orphans_after_kill, locks_left, torn_left, starts, breaks = [], 0, 0, [], 0
    for _ in range(args.rounds):
        before = _n_records(kind, location, name)
        spawned = time.monotonic()
        workers = [subprocess.Popen([*command, "--n-trials", "100000"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=env) for _ in range(args.workers)]
        while _n_records(kind, location, name) <= before and time.monotonic() - spawned < 300:
            time.sleep(0.02)
        starts.append(time.monotonic() - spawned)
        for delay, worker in sorted((rng.uniform(0, args.window), w) for w in workers):
            time.sleep(max(0.0, spawned + starts[-1] + delay - time.monotonic()))
            worker.send_signal(signal.SIGKILL)
        for worker in workers:
            _, err = worker.communicate()
            breaks += err.count("broke the stale lock file")
        orphans_after_kill.append(sum(t.state == TrialState.RUNNING for t in _trials(kind, location, name)))
        if kind == "journal":
            locks_left += Path(f"{location}.lock").exists()
            torn_left += not Path(location).read_bytes().endswith(b"\n")
    time.sleep(GRACE + 1)
    resumed = time.monotonic()
    resume = subprocess.run([*command, "--n-trials", str(args.resume_trials)], capture_output=True, text=True,
                            env=env)
    resume_seconds = time.monotonic() - resumed
    trials = _trials(kind, location, name)
    states = Counter(t.state for t in trials)
    lost = [t for t in trials if t.state == TrialState.FAIL  # WorkerLost, or failed by the heartbeat (no reason)
            and (trial_record(t).fail_reason or "WorkerLost").startswith("WorkerLost")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) is not None]
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
    return {
        "storage": kind, "kills": args.rounds * args.workers, "orphans": sum(orphans_after_kill),
        "locks left": locks_left if kind == "journal" else "-", "locks broken": breaks if kind == "journal" else "-",
        "torn": torn_left if kind == "journal" else "-",
        "start s (med/max)": f"{statistics.median(starts):.1f}/{max(starts):.1f}",
        "resume rc": resume.returncode, "resume s": f"{resume_seconds:.1f}", "trials": len(trials),
        "RUNNING left": states[TrialState.RUNNING], "WAITING left": states[TrialState.WAITING],
        "orphans failed": len(lost), "retries": len(retries),
        "retries done": sum(t.state == TrialState.COMPLETE for t in retries),
        "duplicates": len(complete) - len(set(complete)),
    }


def _lock_holder(lock: Path) -> int | None:
    """The pid named in the journal's lock file, or None."""
    import json

    try:
        return int(json.loads(lock.read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def freeze_loop(location: str, output: Path, args: argparse.Namespace) -> dict[str, object]:
    """See the module docstring (``--freeze``)."""
    from robust_hpo.study import scan_journal

    code = Path(args.code).resolve() if args.code else REPO
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(args.study), "--storage", location,
               "--output", str(output), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    lock = Path(f"{location}.lock")
    workers = [subprocess.Popen([*command, "--n-trials", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=code) for _ in range(args.workers)]  # cwd: -m puts it first
    by_pid = {w.pid: w for w in workers}
    held_frozen = 0
    try:
        while not Path(location).exists() or Path(location).stat().st_size == 0:
            time.sleep(0.05)
        for _ in range(args.rounds):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pid = _lock_holder(lock)
                if pid in by_pid and by_pid[pid].poll() is None:
                    by_pid[pid].send_signal(signal.SIGSTOP)
                    held_frozen += _lock_holder(lock) == pid  # still its lock once stopped
                    time.sleep(args.freeze_seconds)
                    by_pid[pid].send_signal(signal.SIGCONT)
                    break
                time.sleep(0.0005)
            time.sleep(1.0)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
            worker.send_signal(signal.SIGINT)
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    resume = subprocess.run([*command, "--n-trials", str(args.resume_trials)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    damage = scan_journal(location)
    try:
        trials = _trials("journal", location, "quickstart")
        loads = "yes"
    except Exception as exc:  # plain Optuna cannot read it
        trials, loads = [], f"no ({type(exc).__name__})"
    return {
        "code": "this checkout" if code == REPO else str(code), "rounds": args.rounds,
        "frozen holding lock": held_frozen,
        "live locks broken": sum(e.count("broke the stale lock file") - e.count("is gone)") for e in errors),
        "workers failed": sum(w.returncode != 130 or "Traceback" in e for w, e in zip(workers, errors)),
        "torn cut": sum(e.count("removed a torn last record") for e in errors),
        "journal intact": "yes" if damage.intact else f"no ({len(damage.damaged_lines)} damaged lines)",
        "Optuna loads": loads, "resume rc": resume.returncode,
        "RUNNING left": sum(t.state == TrialState.RUNNING for t in trials),
        "trials": len(trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", nargs="+", choices=["journal", "sqlite", "postgres"],
                        default=["journal", "sqlite", "postgres"])
    parser.add_argument("--study", type=Path, default=STUDY)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0, help="kills fall within this many seconds")
    parser.add_argument("--resume-trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--freeze", action="store_true", help="the freeze loop (journal) instead of the kill loop")
    parser.add_argument("--freeze-seconds", type=float, default=13.0)
    parser.add_argument("--code", help="run the workers from this checkout (default: this one)")
    args = parser.parse_args()
    rows = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kill_loop_")))
        if args.freeze:
            print(f"freeze loop: {args.rounds} rounds × {args.freeze_seconds:g} s, {args.workers} workers ...", flush=True)
            rows.append(freeze_loop(str(folder / "journal" / "study.log"), folder / "out-freeze", args))
        for kind in ([] if args.freeze else args.storage):
            if kind == "journal":
                location = str(folder / "journal" / "study.log")
            elif kind == "sqlite":
                location = f"sqlite:///{folder / 'study.db'}"
            else:
                from robust_hpo.testing import PostgresUnavailable, throwaway_postgres

                try:
                    location = stack.enter_context(throwaway_postgres())("kill_loop")
                except PostgresUnavailable as exc:
                    print(f"postgres: skipped ({exc})")
                    continue
            print(f"{kind}: {args.rounds} rounds × {args.workers} workers ...", flush=True)
            rows.append(kill_loop(kind, location, folder / f"out-{kind}", args))
    if rows:
        header = list(rows[0])
        widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            print("  ".join(str(row[h]).rjust(w) for h, w in zip(header, widths, strict=True)))


if __name__ == "__main__":
    main()
