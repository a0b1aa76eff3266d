"""Trials of dead workers: owners are recorded (on a journal in the record that creates the trial),
and a RUNNING trial whose owner is gone on this machine is failed and its configuration retried, once,
linked to the original as Optuna's retry callback links them; live, remote and unknown owners are left
alone; the summary line counts every state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.cli import main
from robust_hpo.objective import trial_record
from robust_hpo.study import OWNER_ATTR, ProcessIdentity, StorageSpec, recover_orphans, summarize, trial_owner
from robust_hpo.testing import tiny_study_toml

REPO = Path(__file__).resolve().parents[2]

SMALL = tiny_study_toml('orphans', n_trials=2)


def _identity_of_exited_process() -> ProcessIdentity:
    code = "import json; from robust_hpo.study import ProcessIdentity; print(json.dumps(ProcessIdentity.current().to_json()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    identity = ProcessIdentity.from_json(json.loads(out))
    assert identity is not None
    return identity


def test_process_identity_liveness() -> None:
    me = ProcessIdentity.current()
    assert not me.is_gone() and me.on_this_machine()
    assert ProcessIdentity.from_json(me.to_json()) == me
    assert ProcessIdentity.from_json({"pid": "1"}) is None and ProcessIdentity.from_json(None) is None
    assert _identity_of_exited_process().is_gone()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = ProcessIdentity(host=me.host, machine=me.machine, pid=child.pid, started=_start_ticks(child.pid))
        assert not live.is_gone()
        if live.started is not None:  # the pid now belongs to a process started at another time: reused
            assert ProcessIdentity(host=me.host, machine=me.machine, pid=child.pid, started=live.started + 1).is_gone()
        # another machine's process is never declared gone, whatever its pid
        assert not ProcessIdentity(host="elsewhere", machine="elsewhere/boot", pid=child.pid, started=0).is_gone()
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: a zombie
        assert live.is_gone()
    finally:
        child.kill()
        child.wait()


def _start_ticks(pid: int) -> int | None:
    from robust_hpo.study._owner import _start_ticks as ticks

    return ticks(pid)


def _running_trial(study: optuna.Study, owner: ProcessIdentity | None, params: dict,
                   distributions: dict | None = None, *, started: datetime | None = None,
                   retry_of: int | None = None) -> int:
    """A RUNNING trial with ``params`` (and ``owner``), as a worker would have left it."""
    system_attrs = {OWNER_ATTR: owner.to_json()} if owner is not None else {}
    if retry_of is not None:
        system_attrs.update({"failed_trial": retry_of, "retry_history": [retry_of]})
    distributions = distributions or {"learner": CategoricalDistribution(["logistic", "ridge"]),
                                      "logistic.C": FloatDistribution(1e-3, 1e3, log=True)}
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, datetime_start=started or datetime.now(),
                           datetime_complete=None, params=params,
                           distributions={k: distributions[k] for k in params}, user_attrs={},
                           system_attrs=system_attrs, intermediate_values={}, trial_id=-1)
    trial_id = study._storage.create_new_trial(study._study_id, template)
    return study._storage.get_trial(trial_id).number


def test_orphans_are_failed_and_retried_once(tmp_path: Path) -> None:
    storage = StorageSpec(journal=tmp_path / "study.log").open()
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    dead, me = _identity_of_exited_process(), ProcessIdentity.current()
    remote = ProcessIdentity(host="other", machine="other/boot", pid=dead.pid, started=dead.started)
    params = {"learner": "logistic", "logistic.C": 2.5}
    orphan = _running_trial(study, dead, params)
    alive = _running_trial(study, me, {"learner": "ridge"})
    elsewhere = _running_trial(study, remote, {"learner": "ridge"})
    unknown = _running_trial(study, None, {"learner": "ridge"})
    lines: list[str] = []

    recovered = recover_orphans(study, max_retry=2, report=lines.append)
    assert len(recovered) == 1 and recovered[0][0] == orphan
    retry_number = recovered[0][1]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[orphan].state == TrialState.FAIL
    assert trial_record(trials[orphan]).fail_reason == f"WorkerLost: left RUNNING by {dead.describe()}, which is gone"
    for number in (alive, elsewhere, unknown):
        assert trials[number].state == TrialState.RUNNING
    retry = trials[retry_number]
    assert retry.state == TrialState.WAITING and retry.params == params
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == orphan  # Optuna's own link
    assert RetryHeartbeatStaleTrialCallback.retry_history(retry) == [orphan]
    assert OWNER_ATTR not in retry.system_attrs
    assert lines == [f"trial {orphan} was left RUNNING by {dead.describe()}, which is gone: marked FAIL, "
                     f"retried as trial {retry_number}"]
    # a second worker starting now finds nothing to do: each orphan is retried once
    other_worker = optuna.load_study(study_name="s", storage=StorageSpec(journal=tmp_path / "study.log").open())
    assert recover_orphans(other_worker, max_retry=2) == []
    assert summarize(study) == "5 trials: 0 complete, 1 failed, 3 running, 1 waiting"


def test_a_retry_left_without_owner_is_an_orphan_after_the_grace_period(tmp_path: Path) -> None:
    """Taking a queued retry is two records; a worker killed between them leaves an owner-less retry."""
    study = optuna.create_study(study_name="s", storage=StorageSpec(journal=tmp_path / "study.log").open())
    long_ago = datetime.now() - timedelta(seconds=120)
    stranded = _running_trial(study, None, {"learner": "ridge"}, started=long_ago, retry_of=0)
    fresh = _running_trial(study, None, {"learner": "ridge"}, retry_of=0)  # its owner record may be on its way
    foreign = _running_trial(study, None, {"learner": "ridge"}, started=long_ago)  # not ours: never touched
    assert recover_orphans(study, max_retry=3) == []  # without a grace period: no owner, no decision
    (failed, retry), = recover_orphans(study, max_retry=3, grace_period=60)
    assert failed == stranded
    states = {t.number: t.state for t in study.get_trials()}
    assert states[stranded] == TrialState.FAIL and states[fresh] == states[foreign] == TrialState.RUNNING
    assert states[retry] == TrialState.WAITING


def test_a_worker_taking_a_retry_owns_it_and_max_retry_stops_the_chain(tmp_path: Path) -> None:
    storage = StorageSpec(journal=tmp_path / "study.log").open()
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    dead = _identity_of_exited_process()
    orphan = _running_trial(study, dead, {"learner": "ridge"})
    (_, retry), = recover_orphans(study, max_retry=1)
    trial = study.ask()  # this worker pops the WAITING retry ...
    assert trial.number == retry
    assert trial_owner(study._storage.get_trial(trial._trial_id)) == ProcessIdentity.current()  # ... and owns it
    # the retry's worker dies too: with max_retry=1 its configuration is not retried again
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, dead.to_json())
    assert recover_orphans(study, max_retry=1) == [(retry, None)]
    failed = study._storage.get_trial(trial._trial_id)
    assert failed.state == TrialState.FAIL and RetryHeartbeatStaleTrialCallback.retry_history(failed) == [orphan]


def test_a_journal_trial_carries_its_owner_from_its_first_record(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    study = optuna.create_study(study_name="s", storage=StorageSpec(journal=path).open())
    n_lines = len(path.read_bytes().splitlines())
    trial = study.ask()
    records = [json.loads(line) for line in path.read_bytes().splitlines()[n_lines:]]
    assert len(records) == 1  # one write: the trial is created with its owner
    assert records[0]["system_attrs"][OWNER_ATTR] == ProcessIdentity.current().to_json()
    assert trial_owner(study._storage.get_trial(trial._trial_id)) == ProcessIdentity.current()
    # Optuna's own JournalStorage reads it as a plain RUNNING trial
    plain = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert plain.trials[0].state == TrialState.RUNNING and plain.trials[0].system_attrs[OWNER_ATTR]["pid"] == os.getpid()


def test_run_fails_and_retries_a_dead_workers_trial_before_starting(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    study_file = tmp_path / "orphans.toml"
    study_file.write_text(SMALL)
    out = tmp_path / "out"
    command = ["run", str(study_file), "--storage", str(out / "study.log"), "--no-progress"]
    assert main(command) == 0
    study = optuna.load_study(study_name="orphans", storage=StorageSpec(journal=out / "study.log").open())
    dead = _identity_of_exited_process()
    first = study.trials[0]
    params = dict(first.params)
    orphan = _running_trial(study, dead, params, first.distributions)
    capsys.readouterr()

    assert main([*command, "--n-trials", "1"]) == 0
    captured = capsys.readouterr()
    assert f"trial {orphan} was left RUNNING by {dead.describe()}, which is gone: marked FAIL, retried as trial" \
        in captured.err
    trials = optuna.load_study(study_name="orphans", storage=StorageSpec(journal=out / "study.log").open()).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE]
    retry = trials[3]
    assert retry.params == params and retry.system_attrs["failed_trial"] == orphan  # the same configuration
    assert trial_owner(retry) == ProcessIdentity.current()
    assert "4 trials: 3 complete, 1 failed" in captured.out


def test_on_a_database_a_trial_killed_before_its_first_heartbeat_is_recovered_by_its_owner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna's heartbeat never fails a trial that has no heartbeat yet (its worker died between creating
    it and starting the heartbeat thread): the owner rule does, at once when its owner is gone on this
    machine (certain, whatever the heartbeat says)."""
    study_file = tmp_path / "orphans.toml"
    study_file.write_text(SMALL)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    command = ["run", str(study_file), "--storage", url, "--output", str(tmp_path / "out"), "--no-progress",
               "--heartbeat-interval", "1", "--grace-period", "2"]
    assert main(command) == 0
    study = optuna.load_study(study_name="orphans", storage=StorageSpec(url=url).open())
    dead = _identity_of_exited_process()
    first = study.trials[0]
    old = _running_trial(study, dead, dict(first.params), first.distributions,
                         started=datetime.now() - timedelta(seconds=10))
    recent = _running_trial(study, dead, dict(first.params), first.distributions)  # its owner is gone: at once too
    capsys.readouterr()
    assert main([*command, "--n-trials", "1"]) == 0
    assert f"trial {old} was left RUNNING by {dead.describe()}, which is gone" in capsys.readouterr().err
    trials = optuna.load_study(study_name="orphans", storage=StorageSpec(url=url).open()).trials
    assert trials[old].state == TrialState.FAIL and trials[recent].state == TrialState.FAIL
    for orphan in (old, recent):
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == orphan]
        assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.WAITING)


def test_a_database_retry_copies_neither_the_constraint_nor_the_owner(tmp_path: Path) -> None:
    """Optuna's RetryHeartbeatStaleTrialCallback copied every attribute of the stale trial, so the
    retry's own set_constraint warned "The constraint value is ignored" and kept the stale value."""
    import warnings

    from robust_hpo.study._storage import Heartbeat

    url = f"sqlite:///{tmp_path / 'retry.db'}"
    study = optuna.create_study(storage=url, study_name="r")
    stale = study.ask()
    stale.suggest_float("x", 0, 1)
    stale.set_constraint("clean_accuracy", 0.5)
    stale.set_user_attr("robust_hpo", {"fail_reason": "old"})
    study.tell(stale, state=TrialState.FAIL)
    Heartbeat().retry_callback()(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.params == study.trials[0].params
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.user_attrs == {} and not any(k.startswith("constraints") for k in retry.system_attrs)
    taken = study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        taken.set_constraint("clean_accuracy", -0.1)
    assert taken.number == 1
