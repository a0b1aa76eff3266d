"""The issue's journal chaos test: `robust-hpo run` killed with SIGKILL at random moments (seeded), then a
resume: no RUNNING trial is left, every trial a kill interrupted is failed and retried once, the journal
loads with Optuna's own JournalStorage, no lock file is left, and a torn last record is repaired (cut,
kept in a backup, reported on stderr naming the file)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from robust_hpo.objective import trial_record
from robust_hpo.testing import tiny_study_toml

REPO = Path(__file__).resolve().parents[2]

STUDY = tiny_study_toml('chaos', learners=("logistic", "ridge", "linear_svm"), n_train=80, n_test=40)

KILLS = 5


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.slow
def test_repeated_sigkill_then_resume(tmp_path: Path) -> None:
    study_file = tmp_path / "chaos.toml"
    study_file.write_text(STUDY)
    out = tmp_path / "out"
    journal = out / "study.log"
    # grace period 2 s: a retry whose worker died between taking it and recording itself counts as orphaned
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study_file), "--storage", str(journal),
               "--output", str(out), "--no-progress", "--heartbeat-interval", "1", "--grace-period", "2", "--max-retry", "10"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(2024)
    interrupted: set[int] = set()  # trials a kill left RUNNING (the next worker fails and retries them)
    last_round: set[int] = set()
    for _ in range(KILLS):
        interrupted |= last_round
        before = _size(journal)
        worker = subprocess.Popen([*command, "--n-trials", "500"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while _size(journal) <= before and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker is optimising once it writes
        time.sleep(rng.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        after = optuna.load_study(study_name="chaos", storage=JournalStorage(JournalFileBackend(str(journal))))
        last_round = {t.number for t in after.trials if t.state == TrialState.RUNNING}

    # the last kill tore its final write
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn = data[start:start + (len(data) - start) // 2]
    journal.write_bytes(data[:start] + torn)
    # the last kill's RUNNING trials, as the torn journal reads (a torn creation record: that trial never was)
    cut = [t.number for t in optuna.load_study(study_name="chaos", storage=JournalStorage(
        JournalFileBackend(str(journal)))).trials if t.state == TrialState.RUNNING]

    time.sleep(2.5)  # past the grace period
    resume = subprocess.run([*command, "--n-trials", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert resume.returncode == 0, resume.stderr
    assert f"{journal}: removed a torn last record ({len(torn)} bytes" in resume.stderr
    assert next(out.glob("study.log.torn-*")).read_bytes() == torn
    assert not Path(f"{journal}.lock").exists()

    study = optuna.load_study(study_name="chaos", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    orphans = [t for t in trials if (trial_record(t).fail_reason or "").startswith("WorkerLost")]
    assert sorted(t.number for t in orphans) == sorted(interrupted | set(cut)), resume.stderr
    for number in cut:  # left by the last kill (or by the cut): the resume reports them
        assert f"trial {number} was left RUNNING by " in resume.stderr
    for orphan in orphans:  # each retried once, with its configuration ...
        direct = [t for t in trials if RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] == [orphan.number]]
        assert len(direct) == 1 and orphan.params.items() <= direct[0].params.items()
    originals = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    for original in originals:  # ... until it completed (a retry killed in turn is retried again)
        chain = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == original]
        assert [t.state for t in chain].count(TrialState.COMPLETE) == 1
    unexplained = [(t.number, t.state.name, t.user_attrs, t.system_attrs) for t in trials
                   if t.state != TrialState.COMPLETE and not trial_record(t).fail_reason]
    assert not unexplained, (unexplained, resume.stderr)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="RLIMIT_FSIZE simulates a full disk")
def test_a_full_disk_stops_the_run_naming_the_journal_and_the_next_run_repairs_it(tmp_path: Path) -> None:
    """The issue's worst case: a disk-full run tore its last record and every later run failed."""
    import resource

    study_file = tmp_path / "chaos.toml"
    study_file.write_text(STUDY)
    out = tmp_path / "out"
    journal = out / "study.log"
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study_file), "--storage", str(journal),
               "--output", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([*command, "--n-trials", "2"], check=True, capture_output=True, env=env, timeout=300)
    limit = journal.stat().st_size + 4321  # room for a few trials, then "no space": writes stop midway

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: write() fails

    full = subprocess.run([*command, "--n-trials", "100"], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=full_disk)
    assert full.returncode == 2
    assert f"robust-hpo: error: writing to the journal {journal} failed: File too large" in full.stderr
    assert "Traceback" not in full.stderr and "Should not reach" not in full.stderr
    torn = not journal.read_bytes().endswith(b"\n")

    resume = subprocess.run([*command, "--n-trials", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert resume.returncode == 0, resume.stderr
    assert (f"{journal}: removed a torn last record" in resume.stderr) == torn
    trials = optuna.load_study(study_name="chaos", storage=JournalStorage(JournalFileBackend(str(journal)))).trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 4
