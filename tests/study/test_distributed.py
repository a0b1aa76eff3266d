"""The issue's "done when" for many workers: four `robust-hpo run` processes on one PostgreSQL study, one
killed with SIGKILL in the middle of a trial. After the heartbeat grace period its trial is FAIL and its
configuration retried; every worker's trials are accounted for; no configuration ran twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from robust_hpo.objective import trial_record
from robust_hpo.study import trial_owner
from robust_hpo.study._storage import postgres_driver_url
from robust_hpo.testing import tiny_study_toml

REPO = Path(__file__).resolve().parents[2]

STUDY = tiny_study_toml('crash', learners=("logistic", "ridge", "linear_svm"), n_train=80, n_test=40)

N_TRIALS = 12
GRACE = 3


def _victims_running_trial(storage: RDBStorage, pid: int) -> optuna.trial.FrozenTrial | None:
    try:
        study_id = storage.get_study_id_from_name("crash")
    except KeyError:  # not created yet
        return None
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial_owner(trial)
        if owner is not None and owner.pid == pid and _has_heartbeat(storage, trial._trial_id):
            return trial
    return None


def _has_heartbeat(storage: RDBStorage, trial_id: int) -> bool:
    """Whether the trial's first heartbeat is recorded (a worker killed before it is the owner rule's
    case, tested in tests/study/test_orphans.py; here the heartbeat's)."""
    with storage.engine.connect() as connection:
        row = connection.execute(sqlalchemy.text("SELECT 1 FROM trial_heartbeats WHERE trial_id = :id"),
                                 {"id": trial_id}).first()
    return row is not None


@pytest.mark.slow
def test_four_workers_one_killed_mid_trial(postgres_url: str, tmp_path: Path) -> None:
    study_file = tmp_path / "crash.toml"
    study_file.write_text(STUDY)
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study_file), "--storage", postgres_url,
               "--output", str(tmp_path / "out"), "--no-progress", "--heartbeat-interval", "1",
               "--grace-period", str(GRACE)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([*command, "--n-trials", str(N_TRIALS)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    victim, survivors = workers[0], workers[1:]
    storage = RDBStorage(postgres_driver_url(postgres_url))
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        if _victims_running_trial(storage, victim.pid) is None:
            time.sleep(0.05)
            continue
        victim.send_signal(signal.SIGSTOP)  # frozen: its trial cannot finish while we look
        killed = _victims_running_trial(storage, victim.pid)
        if killed is None:
            victim.send_signal(signal.SIGCONT)
        else:
            victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    killed_at = time.monotonic()
    assert killed is not None, "the victim never had a running trial"
    outputs = [worker.communicate(timeout=300) for worker in survivors]
    for worker, (stdout, stderr) in zip(survivors, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert f"ran {N_TRIALS} trials" in stdout

    # one more worker once the grace period has certainly passed (the others may have finished before)
    time.sleep(max(0.0, killed_at + GRACE + 1 - time.monotonic()))
    last = subprocess.run([*command, "--n-trials", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert last.returncode == 0, last.stderr

    trials = optuna.load_study(study_name="crash", storage=storage).trials
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    dead = trials[killed.number]
    # failed by the heartbeat (no reason) or, its owner being certainly gone on this machine, by the owner rule
    assert dead.state == TrialState.FAIL and (trial_record(dead).fail_reason or "WorkerLost").startswith("WorkerLost")
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert dead.params.items() <= retries[0].params.items()  # the same configuration, completed by another worker
    assert trial_owner(retries[0]).pid != victim.pid

    # totals: each survivor N trials, the last worker 1, the victim k finished + the killed one
    per_pid = Counter(trial_owner(t).pid for t in trials)
    for worker in survivors:
        assert per_pid[worker.pid] == N_TRIALS
    victim_done = [t for t in trials if trial_owner(t).pid == victim.pid and t.number != killed.number]
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in victim_done)
    assert len(trials) == 3 * N_TRIALS + 1 + len(victim_done) + 1
    assert all(t.state == TrialState.COMPLETE or trial_record(t).fail_reason for t in trials if t is not dead)
    # no duplicates: all four workers had the same seed, yet no configuration ran twice
    configurations = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
    assert len(configurations) == len(set(configurations))
