"""How long a writer waits for a journal lock left by a process killed while holding it.

A child process takes the lock of a fresh journal file and is killed with SIGKILL while holding it;
then this process times one acquisition of the same lock:

* ``optuna (symlink lock, default)`` — Optuna's ``JournalFileSymlinkLock``: waits for its 30 s grace
  period (its warning is the only sign, and ``robust-hpo run`` used to silence it);
* ``robust_hpo (owner gone)`` — :class:`robust_hpo.study._journal.OwnedLock` finding its own kind of
  lock, whose owner is gone on this machine: broken at once;
* ``robust_hpo (Optuna's lock, no owner)`` — ``OwnedLock`` finding Optuna's owner-less symlink lock:
  broken once it has been unchanged for 10 s (``DEFAULT_LOCK_GRACE``).

Run: ``python benchmarks/stale_lock.py [--skip-optuna]`` (the Optuna case takes 30 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_HOLD = """
import os, sys, time
from optuna.storages.journal import JournalFileSymlinkLock
from robust_hpo.study._journal import OwnedLock
lock = OwnedLock(sys.argv[2]) if sys.argv[1] == "owned" else JournalFileSymlinkLock(sys.argv[2])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _leave_stale_lock(kind: str, journal: Path) -> None:
    """A child takes the lock of ``journal`` and is killed while holding it (``empty``: killed between
    creating the lock file and writing its owner, as a file left empty)."""
    if kind == "empty":
        Path(f"{journal}.lock").touch()
        return
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _HOLD, kind, str(journal)], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    child.send_signal(signal.SIGKILL)
    child.wait()


def _time_acquire(lock) -> float:
    start = time.perf_counter()
    lock.acquire()
    seconds = time.perf_counter() - start
    lock.release()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-optuna", action="store_true", help="skip Optuna's own lock (30 s)")
    args = parser.parse_args()
    from optuna.storages.journal import JournalFileSymlinkLock

    from robust_hpo.study._journal import OwnedLock

    rows = []
    with tempfile.TemporaryDirectory(prefix="stale_lock_") as folder:
        cases = [("robust_hpo (owner gone)", "owned", OwnedLock),
                 ("robust_hpo (killed before writing owner)", "empty", OwnedLock),
                 ("robust_hpo (Optuna's lock, no owner)", "symlink", OwnedLock)]
        if not args.skip_optuna:
            cases.insert(0, ("optuna (symlink lock, default)", "symlink", JournalFileSymlinkLock))
        for i, (label, left_by, waiter) in enumerate(cases):
            journal = Path(folder) / f"study{i}.log"
            journal.touch()
            _leave_stale_lock(left_by, journal)
            rows.append((label, _time_acquire(waiter(str(journal)))))
    for label, seconds in rows:
        print(f"{label:40s} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
