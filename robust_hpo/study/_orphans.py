"""Running trials left behind by dead workers: who owns each trial, and failing and retrying orphans.

Every trial records its owner — the :class:`ProcessIdentity` of the worker running it — in the
system attribute :data:`OWNER_ATTR`. On a journal file (:class:`OwnedJournalStorage`) the owner is
part of the record that creates the trial, so no trial is ever RUNNING without one (a trial popped
from the queue, a retry, gets it in the next write), and so on a database (:class:`OwnedCachedStorage`);
through the gRPC proxy :func:`with_owner` writes it first thing in the objective.

:func:`recover_orphans` fails each RUNNING trial whose owner is gone *on this machine* and enqueues
its configuration again — a WAITING trial with the same parameters, linked to the original the way
Optuna's ``RetryHeartbeatStaleTrialCallback`` links them (system attributes ``failed_trial``: the
first failed number, ``retry_history``: every failed number), at most ``max_retry`` times. Owners on
other machines cannot be checked and are left alone. Journal files have no heartbeat: this is how
their orphans are found, at once. RDB storages have Optuna's heartbeat
(:class:`robust_hpo.study._storage.Heartbeat`), which finds orphans on every machine after the grace
period — except a trial whose worker died before its first heartbeat (Optuna creates the trial, then
starts the heartbeat; on a busy SQLite file that can take seconds), which Optuna never fails. There
the owner rule runs too: at once for an owner gone on this machine (certain: no need to wait out the
grace period, e.g. after a run stopped by a storage failure), and for the ownerless retries below
only once RUNNING longer than twice the grace period, so the heartbeat acts first where it can.

One gap remains: taking a queued retry is two records (the state change, then the owner, a few
milliseconds apart), so a worker killed between them leaves a RUNNING retry without an owner. Such a
trial — a retry (it has ``failed_trial``), no owner, RUNNING for longer than ``grace_period`` — is
an orphan too. Trials without an owner that are not retries (created by plain Optuna or an older
robust_hpo) are never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage  # what optuna.create_study wraps RDB storages in
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.objective import RECORD_ATTR, RECORD_FORMAT
from robust_hpo.study._owner import ProcessIdentity

OWNER_ATTR = "robust_hpo:owner"
"""Trial system attribute: the worker running the trial (``ProcessIdentity.to_json()``)."""

FAILED_TRIAL_ATTR = "failed_trial"
RETRY_HISTORY_ATTR = "retry_history"
"""Optuna's retry links (``RetryHeartbeatStaleTrialCallback.retried_trial_number``/``retry_history``)."""


def _owned_template(owner: ProcessIdentity) -> FrozenTrial:
    """A new RUNNING trial carrying ``owner`` (what ``create_new_trial`` writes in one record)."""
    return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                       datetime_complete=None, params={}, distributions={}, user_attrs={},
                       system_attrs={OWNER_ATTR: owner.to_json()}, intermediate_values={}, trial_id=-1)


class OwnerStamping:
    """Storage mixin: a new trial carries its owner from the record that creates it, and a worker taking
    a WAITING trial (a retry) records itself right after."""

    owner: ProcessIdentity

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return super().create_new_trial(study_id, template_trial or _owned_template(self.owner))  # type: ignore[misc]

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        popped = super().set_trial_state_values(trial_id, state, values)  # type: ignore[misc]
        if popped and state == TrialState.RUNNING:  # this worker took a WAITING trial: it owns it now
            self.set_trial_system_attr(trial_id, OWNER_ATTR, self.owner.to_json())  # type: ignore[attr-defined]
        return popped


class OwnedJournalStorage(OwnerStamping, JournalStorage):
    """Optuna's :class:`JournalStorage` whose trials record their owner (:class:`OwnerStamping`)."""

    def __init__(self, backend: Any, *, owner: ProcessIdentity | None = None) -> None:
        self.owner = owner or ProcessIdentity.current()
        super().__init__(backend)


class OwnedCachedStorage(OwnerStamping, _CachedStorage):
    """An :class:`RDBStorage` behind Optuna's trial cache (what ``optuna.create_study`` does with an RDB
    URL; Optuna's heartbeat passes through it) whose trials record their owner."""

    def __init__(self, backend: RDBStorage, *, owner: ProcessIdentity | None = None) -> None:
        self.owner = owner or ProcessIdentity.current()
        super().__init__(backend)


def with_owner(objective: Callable[[optuna.Trial], Any], owner: ProcessIdentity | None = None
               ) -> Callable[[optuna.Trial], Any]:
    """``objective`` preceded by one write of the owner (none when the storage already recorded it)."""
    record = (owner or ProcessIdentity.current()).to_json()

    def owned(trial: optuna.Trial) -> Any:
        if not isinstance(trial.storage, OwnerStamping):
            trial.storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, record)
        return objective(trial)

    return owned


def trial_owner(trial: FrozenTrial) -> ProcessIdentity | None:
    """The recorded owner of ``trial`` (None when it has none)."""
    return ProcessIdentity.from_json(trial.system_attrs.get(OWNER_ATTR))


def recover_orphans(study: optuna.Study, *, max_retry: int | None, grace_period: float | None = None,
                    min_running: float = 0.0, report: Callable[[str], None] | None = None
                    ) -> list[tuple[int, int | None]]:
    """Fail every RUNNING trial whose owner is gone on this machine (and every retry left without an
    owner for longer than ``grace_period`` seconds) and enqueue it again. A gone owner is certain, so
    its trials are recovered at once; the others only when RUNNING for more than ``min_running``
    seconds (the heartbeat's turn comes first on RDB storages).

    Returns ``(failed trial number, retry trial number or None)`` pairs; ``report`` receives one line
    per orphan. A trial another worker failed first is skipped (the storage refuses the second FAIL),
    so each orphan is retried once.
    """
    recovered: list[tuple[int, int | None]] = []
    now = datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        running = (now - trial.datetime_start).total_seconds() if trial.datetime_start is not None else 0.0
        owner = trial_owner(trial)
        if owner is not None:
            if not owner.is_gone():  # gone is certain (this machine): no need to wait for the heartbeat
                continue
            who = f"{owner.describe()}, which is gone"
        elif running <= min_running and min_running > 0:
            continue
        elif grace_period is not None and FAILED_TRIAL_ATTR in trial.system_attrs and running > grace_period:
            who = f"a worker that took this retry and stopped before recording itself (over {grace_period:g} s ago)"
        else:
            continue
        reason = f"WorkerLost: left RUNNING by {who}"
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, RECORD_ATTR, {"format": RECORD_FORMAT, "fail_reason": reason})
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker got there first
        retry = enqueue_retry(study, storage.get_trial(trial._trial_id), max_retry=max_retry)
        recovered.append((trial.number, retry))
        if report is not None:
            again = f"retried as trial {retry}" if retry is not None else f"not retried (max_retry={max_retry})"
            report(f"trial {trial.number} was left RUNNING by {who}: marked FAIL, {again}")
    return recovered


def enqueue_retry(study: optuna.Study, failed: FrozenTrial, *, max_retry: int | None) -> int | None:
    """A WAITING copy of ``failed``'s parameters linked to it (Optuna's retry attributes); its number,
    or None when the configuration was already retried ``max_retry`` times."""
    history = list(failed.system_attrs.get(RETRY_HISTORY_ATTR, [])) + [failed.number]
    if max_retry is not None and len(history) > max_retry:
        return None
    system_attrs = {FAILED_TRIAL_ATTR: failed.system_attrs.get(FAILED_TRIAL_ATTR, failed.number),
                    RETRY_HISTORY_ATTR: history}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=copy.deepcopy(failed.params),
        distributions=copy.deepcopy(failed.distributions), system_attrs=system_attrs))
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    mine = [t.number for t in waiting if t.system_attrs.get(RETRY_HISTORY_ATTR) == history]
    return mine[-1] if mine else None
