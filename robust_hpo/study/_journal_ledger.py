"""Records that cannot belong to a journal: duplicated lines, a second journal appended, dangling trials.

Optuna numbers studies and trials by the order of their creation records and replays every other
record onto the trial id it names, skipping silently what does not fit. So a creation record
written twice (a copied line) makes a phantom RUNNING trial, a second journal appended to the first
re-creates its study (skipped) and adds its trials to the first one's, and a record naming a trial
no record created is dropped. :class:`JournalLedger` follows the records in order (what Optuna's
replay would create) and names the first one that cannot belong:

* a creation or state record (op codes 0, 4, 6 — they carry a name or a microsecond time stamp, so
  no two genuine ones are equal) identical to an earlier one;
* a trial record naming a trial id no earlier record created;
* a worker writing a parameter or an intermediate value (op codes 5, 7) of a trial it neither
  created nor took from the queue: what the workers of a second journal appended
  to this one do, numbering trials their own way. (A study created a second time is no sign alone:
  workers started together on a new journal race to create it, and Optuna ignores the losers'
  records; failing another worker's orphan writes only a state and a user attribute, a dashboard
  notes and attributes.)

Used by the reader (:class:`robust_hpo.study._journal.CheckedJournalBackend`) and by ``repair``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

CREATE_STUDY, DELETE_STUDY, CREATE_TRIAL = 0, 1, 4
STAMPED_OPS = frozenset({0, 4, 6})
"""Op codes whose records never repeat: a study's name, or a microsecond time stamp."""
TRIAL_OPS = frozenset({5, 6, 7, 8, 9})
"""Op codes of records that name a trial by its id."""
OWNER_OPS = frozenset({5, 7})
"""Op codes only the worker running a trial writes (parameters, intermediate values)."""
SET_STATE, RUNNING = 6, 0  # TrialState.RUNNING
REPAIR_WORKER = "robust-hpo-repair"
"""``worker_id`` of the records ``robust-hpo repair`` writes (a rebuilt creation: its trial's own
records were written by a worker the repair cannot know)."""
ANY_WORKER = "*"
"""In :attr:`JournalLedger.runners`: the trial's creator is unknown (a creation rebuilt by repair)."""


def canonical(record: dict[str, Any]) -> bytes:
    """A digest of ``record``'s content, independent of key order."""
    return hashlib.sha1(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).digest()


@dataclass
class JournalLedger:
    """What the records seen so far created: studies (id -> name), the trial count, stamped records."""

    studies: dict[int, str] = field(default_factory=dict)
    next_study: int = 0
    trials: int = 0
    trial_study: list[int] = field(default_factory=list)
    seen: dict[bytes, int] = field(default_factory=dict)
    workers: set[str] = field(default_factory=set)
    runners: dict[int, set[str]] = field(default_factory=dict)
    """Per trial id: the workers that created it or took it (state RUNNING)."""
    second_creations: dict[str, int] = field(default_factory=dict)
    """Worker -> line where it created an existing study again (a race, or an appended journal)."""

    def problem(self, record: dict[str, Any]) -> str | None:
        """Why ``record`` cannot be the next record of this journal, or None when it can."""
        op = record.get("op_code")
        if op in STAMPED_OPS:
            first = self.seen.get(canonical(record))
            if first is not None:
                return f"it repeats line {first} (a duplicated line)"
        trial_id = record.get("trial_id")
        if op in TRIAL_OPS and isinstance(trial_id, int) and not 0 <= trial_id < self.trials:
            return f"it refers to trial id {trial_id}, which no earlier record created"
        worker = record.get("worker_id")
        runners = self.runners.get(trial_id, ()) if isinstance(trial_id, int) else ()
        if op in OWNER_OPS and isinstance(trial_id, int) and worker not in runners and ANY_WORKER not in runners:
            appended = self.second_creations.get(str(worker))
            where = (f"; that worker created the study again at line {appended}: another journal appended there?"
                     if appended is not None else "")
            return f"its worker writes to trial id {trial_id}, which it neither created nor took{where}"
        return None

    def insert_creation(self, position: int, study: int) -> None:
        """Count a creation record put back before the ``position``-th creation seen (a repair): the
        trial ids from there on move up by one; the new trial's creator is unknown."""
        self.runners = {(k + 1 if k >= position else k): v for k, v in self.runners.items()}
        self.runners[position] = {ANY_WORKER}
        self.trials += 1
        self.trial_study.insert(position, study)

    def foreign(self, problem: str) -> bool:
        """Whether ``problem`` (from :meth:`problem`) marks a worker of another journal."""
        return "neither created nor took" in problem

    def apply(self, record: dict[str, Any], number: int) -> None:
        """Take ``record`` (line ``number``) into account, as Optuna's replay would."""
        op = record.get("op_code")
        if op in STAMPED_OPS:
            self.seen.setdefault(canonical(record), number)
        worker = record.get("worker_id")
        if isinstance(worker, str):
            self.workers.add(worker)
        if op == CREATE_STUDY:
            if record.get("study_name") not in self.studies.values():
                self.studies[self.next_study] = str(record.get("study_name"))
                self.next_study += 1
            elif isinstance(worker, str):
                self.second_creations.setdefault(worker, number)
        elif op == DELETE_STUDY:
            self.studies.pop(record.get("study_id"), None)  # type: ignore[arg-type]
        elif op == CREATE_TRIAL and record.get("study_id") in self.studies:
            self.runners[self.trials] = {ANY_WORKER if worker == REPAIR_WORKER else str(worker)}
            self.trials += 1
            self.trial_study.append(int(record["study_id"]))
        elif op == SET_STATE and record.get("state") == RUNNING and isinstance(record.get("trial_id"), int):
            self.runners.setdefault(record["trial_id"], set()).add(str(worker))
