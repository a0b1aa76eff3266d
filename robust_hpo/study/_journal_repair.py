"""``robust-hpo repair``: a damaged journal made readable again without losing a trial it could keep.

Optuna numbers trials by the order of their creation records, and every later record names its
trial by that number. Dropping a damaged *creation* line would shift every later trial's records
onto the wrong trial, so the repair keeps the numbering instead:

* a damaged line whose op code can still be read as a trial creation, or one that a later record
  shows was one (a record names a trial id no kept creation made), is **rebuilt in its place** as a
  creation record: the trial keeps its number and gets back everything its later records hold (its
  parameters, values, state). A rebuilt trial that is then still RUNNING, or COMPLETE without
  parameters (they were in the damaged line), is marked FAIL, with the reason in its record;
* a record glued after a torn one is recovered; other unreadable lines are dropped;
* a duplicated creation or state line and records naming a trial no record created are dropped; so
  are the records of a worker of another journal appended to this one (it writes to trials it
  neither created nor took), except its trial creations that a later trial of this journal needs
  for its number: those are kept as FAIL trials
  (:class:`~robust_hpo.study._journal_ledger.JournalLedger`);
* a torn last record is removed.

The original is first copied to a backup that never overwrites another (``<journal>.<UTC time with
microseconds>.bak``, created exclusively). The report names every line kept differently, dropped
or rebuilt, and why, and counts the trials per state.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

from robust_hpo.errors import MissingFileError, StorageError
from robust_hpo.objective import RECORD_ATTR, RECORD_FORMAT
from robust_hpo.study._journal import (
    DEFAULT_LOCK_GRACE,
    OwnedLock,
    _glued_record,
    _is_record,
    _json_or_none,
    check_journal_file,
)
from robust_hpo.study._journal_ledger import CREATE_TRIAL, REPAIR_WORKER, JournalLedger


REPAIRED_ATTR = "robust_hpo:repaired"
"""Trial system attribute of a trial whose damaged creation record the repair rebuilt."""

MAX_REASONS_SHOWN = 50
"""Lines :meth:`RepairReport.describe` names one by one (the report's ``reasons`` has them all)."""

_OP_HINT = re.compile(rb'"op_code"\s*:\s*(\d+)\s*,')
_STUDY_HINT = re.compile(rb'"study_id"\s*:\s*(\d+)\s*[,}]')


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_journal` did. ``kept``: records written; ``recovered``: lines whose record was
    glued after a torn one; ``dropped``: lines removed, each with its reason in ``reasons``;
    ``rebuilt``: lines of damaged trial creations rebuilt in place (reason in ``reasons`` too);
    ``torn_bytes``: size of the torn last record removed; ``trials``: per study, trials per state
    after the repair; ``backup``: the copy of the original (None when the journal was intact)."""

    path: Path
    kept: int
    recovered: tuple[int, ...]
    dropped: tuple[int, ...]
    torn_bytes: int
    backup: Path | None
    rebuilt: tuple[int, ...] = ()
    reasons: tuple[tuple[int, str], ...] = ()
    trials: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()

    def describe(self) -> str:
        """One paragraph: the summary line, then one line per line dropped or rebuilt, then the trials."""
        counts = "; ".join(f"study {name!r}: " + (", ".join(f"{n} {state}" for state, n in states) or "no trials")
                           for name, states in self.trials)
        if self.backup is None:
            return f"{self.path}: intact ({self.kept} records; {counts}); nothing to repair"
        parts = [f"kept {self.kept} records"]
        if self.recovered:
            parts.append(f"recovered {len(self.recovered)} record(s) glued to a torn one (lines "
                         f"{_numbers(self.recovered)})")
        if self.rebuilt:
            parts.append(f"rebuilt {len(self.rebuilt)} damaged trial creation(s) in place (lines "
                         f"{_numbers(self.rebuilt)})")
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} line(s) ({_numbers(self.dropped)})")
        if self.torn_bytes:
            parts.append(f"removed a torn last record ({self.torn_bytes} bytes)")
        lines = [f"{self.path}: repaired: {'; '.join(parts)}; the original is kept in {self.backup}"]
        lines += [f"  line {number}: {reason}" for number, reason in self.reasons[:MAX_REASONS_SHOWN]]
        if len(self.reasons) > MAX_REASONS_SHOWN:
            lines.append(f"  … {len(self.reasons) - MAX_REASONS_SHOWN} more lines (RepairReport.reasons lists all)")
        lines.append(f"  after the repair: {counts}")
        return "\n".join(lines)


def _numbers(values: tuple[int, ...], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")


@dataclass
class _Slot:
    """A damaged line of unknown kind: a trial creation if a later record needs one, else dropped."""

    number: int
    study_hint: int | None
    creations_before: int
    record: dict[str, Any] | None = None


class _Plan:
    """The repaired journal: records (or open slots) in order, and what happened to each line."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any] | _Slot] = []
        self.ledger = JournalLedger()
        self.reasons: dict[int, str] = {}
        self.dropped: list[int] = []
        self.recovered: list[int] = []
        self.rebuilt: dict[int, dict[str, Any]] = {}
        self.foreign_workers: dict[str, int] = {}
        """Workers of another journal -> the line that showed it."""
        self.lines: dict[int, int] = {}
        """id(record) -> its line number."""
        self.foreign_creations: set[int] = set()
        """id() of the creations of another journal's workers, kept as FAIL trials."""

    def drop(self, number: int, reason: str) -> None:
        self.dropped.append(number)
        self.reasons[number] = f"dropped: {reason}"

    def rebuild(self, slot: _Slot, why: str) -> None:
        """Turn ``slot`` into a creation record of the trial it must have created."""
        study = slot.study_hint if slot.study_hint in self.ledger.studies else None
        if study is None:
            before = self.ledger.trial_study[:slot.creations_before]
            study = before[-1] if before else min(self.ledger.studies, default=0)
        slot.record = {"op_code": CREATE_TRIAL, "worker_id": REPAIR_WORKER, "study_id": study,
                       "datetime_start": None, "system_attrs": {REPAIRED_ATTR: f"line {slot.number}"}}
        self.ledger.insert_creation(slot.creations_before, study)
        for later in self.items:  # the open slots after it now come after one more creation
            if isinstance(later, _Slot) and later.record is None and later.number > slot.number:
                later.creations_before += 1
        self.rebuilt[slot.number] = slot.record
        self.reasons[slot.number] = f"a damaged trial creation ({why}): rebuilt in place"

    def add_damaged(self, number: int, line: bytes) -> None:
        op = _OP_HINT.search(line)
        study = _STUDY_HINT.search(line)
        slot = _Slot(number, int(study.group(1)) if study else None, self.ledger.trials)
        if op is None:
            self.items.append(slot)  # decided by the records after it
        elif int(op.group(1)) == CREATE_TRIAL:
            self.items.append(slot)
            self.rebuild(slot, "its op code reads as one")
        else:
            self.drop(number, f"unreadable (a damaged record with op code {int(op.group(1))}, which creates nothing)")

    def add_record(self, number: int, record: dict[str, Any]) -> None:
        worker = record.get("worker_id")
        if worker in self.foreign_workers:
            self.add_foreign(number, record)
            return
        problem = self.ledger.problem(record)
        trial_id = record.get("trial_id")
        while problem is not None and isinstance(trial_id, int) and trial_id >= 0 and (
                "no earlier record created" in problem or self.ledger.foreign(problem)):
            # a damaged line of unknown kind before this record, which names a trial the kept creations
            # do not account for: it was that trial's creation
            slot = next((s for s in self.items if isinstance(s, _Slot) and s.record is None), None)
            if slot is None:
                break
            self.rebuild(slot, f"line {number} refers to a trial the kept creations do not account for")
            problem = self.ledger.problem(record)
        if problem is not None and self.ledger.foreign(problem):
            self.foreign_workers[str(worker)] = number
            self.disown(str(worker), number)
            self.add_foreign(number, record)
            return
        if problem is not None:
            self.drop(number, problem)
            return
        self.ledger.apply(record, number)
        self.items.append(record)
        self.lines[id(record)] = number

    def _fail_in_place(self, record: dict[str, Any], number: int, worker: str) -> None:
        """A creation by a worker of another journal: kept as a FAIL trial (numbering holds)."""
        first = self.foreign_workers[worker]
        reason = (f"RepairedJournal: created by worker {worker} of another journal (its records name trials it "
                  f"did not create, from line {first})")
        record.update({"state": TrialState.FAIL.value, "datetime_complete": record.get("datetime_start"),
                       "user_attrs": {RECORD_ATTR: {"format": RECORD_FORMAT, "fail_reason": reason}},
                       "params": {}, "distributions": {}, "values": None, "value": None})
        self.reasons[number] = (f"a trial created by worker {worker}, whose records from line {first} belong to "
                                "another journal: kept as a FAIL trial so that later trials keep their numbers")
        self.foreign_creations.add(id(record))

    def add_foreign(self, number: int, record: dict[str, Any]) -> None:
        """A record of a worker of another journal: its creations become FAIL trials, the rest is dropped."""
        worker = str(record.get("worker_id"))
        if record.get("op_code") == CREATE_TRIAL and record.get("study_id") in self.ledger.studies:
            self.ledger.apply(record, number)
            self._fail_in_place(record, number, worker)
            self.items.append(record)
            self.lines[id(record)] = number
            return
        self.drop(number, f"written by worker {worker}, whose records from line {self.foreign_workers[worker]} name "
                          "trials it neither created nor took (another journal appended to this one?)")

    def disown(self, worker: str, number: int) -> None:
        """Apply :meth:`add_foreign` to the records ``worker`` wrote before line ``number``."""
        kept: list[dict[str, Any] | _Slot] = []
        for item in self.items:
            if isinstance(item, dict) and item.get("worker_id") == worker:
                line = self.lines[id(item)]
                if item.get("op_code") == CREATE_TRIAL:
                    self._fail_in_place(item, line, worker)
                else:
                    self.drop(line, f"written by worker {worker}, whose records from line {number} name trials it "
                                    "neither created nor took (another journal appended to this one?)")
                    continue
            kept.append(item)
        self.items = kept

    def records(self) -> list[dict[str, Any]]:
        last_own = max((i for i, item in enumerate(self.items) if isinstance(item, _Slot) or (
            item.get("op_code") == CREATE_TRIAL and id(item) not in self.foreign_creations)), default=-1)
        for item in self.items[last_own + 1:]:  # no later trial needs their numbers: dropped
            if isinstance(item, dict) and id(item) in self.foreign_creations:
                self.drop(self.lines[id(item)], self.reasons[self.lines[id(item)]].replace(
                    "kept as a FAIL trial so that later trials keep their numbers", "no later trial needs its number"))
        tail = [item for item in self.items[last_own + 1:]
                if not (isinstance(item, dict) and id(item) in self.foreign_creations)]
        self.items = self.items[:last_own + 1] + tail
        result = []
        for item in self.items:
            if isinstance(item, _Slot):
                if item.record is None:
                    self.drop(item.number, "unreadable, and no later record needs it")
                    continue
                item = item.record
            result.append(item)
        return result


class _MemoryBackend(BaseJournalBackend):
    """Records in memory, for replaying a repair before it is written."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._records = records

    def read_logs(self, log_number_from: int) -> Any:
        yield from self._records[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:  # pragma: no cover - never written
        raise AssertionError("a repair replay writes nothing")


def _settle_rebuilt(plan: _Plan, records: list[dict[str, Any]]) -> None:
    """Mark FAIL (in their rebuilt creation record) the rebuilt trials that the later records do not
    complete: still RUNNING or WAITING, or COMPLETE without the parameters the damaged line held."""
    storage = JournalStorage(_MemoryBackend(records))
    trials = {t.system_attrs.get(REPAIRED_ATTR): t for s in storage.get_all_studies()
              for t in storage.get_all_trials(s._study_id, None) if REPAIRED_ATTR in t.system_attrs}
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    for number, record in plan.rebuilt.items():
        trial = trials.get(f"line {number}")
        if trial is None:
            continue
        if trial.state == TrialState.COMPLETE and trial.params:
            plan.reasons[number] += f" as trial {trial.number}, COMPLETE with its parameters and values"
            continue
        if trial.state.is_finished() and trial.state != TrialState.COMPLETE:
            plan.reasons[number] += f" as trial {trial.number}, {trial.state.name}"
            continue
        why = ("it was still running when the journal was damaged" if not trial.state.is_finished() else
               "its parameters were in the damaged line")
        reason = f"RepairedJournal: the record creating trial {trial.number} was damaged (line {number}); {why}"
        record.update({"state": TrialState.FAIL.value, "datetime_complete": now,
                       "user_attrs": {RECORD_ATTR: {"format": RECORD_FORMAT, "fail_reason": reason}}})
        plan.reasons[number] += f" as trial {trial.number}, marked FAIL ({why})"


def _trial_counts(records: list[dict[str, Any]]) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    storage = JournalStorage(_MemoryBackend(records))
    result = []
    for study in storage.get_all_studies():
        counts = Counter(t.state.name for t in storage.get_all_trials(study._study_id, None))
        result.append((study.study_name, tuple(sorted(counts.items()))))
    return tuple(result)


def _backup_path(path: Path, original: bytes) -> Path:
    """Write ``original`` to a new ``<journal>.<time>.bak`` that no other backup has: created
    exclusively, with microseconds and a counter, so two repairs never overwrite each other's."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    for attempt in range(1000):
        backup = path.with_name(f"{path.name}.{stamp}{f'-{attempt}' if attempt else ''}.bak")
        try:
            handle = os.open(backup, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(original)
                out.flush()
                os.fsync(out.fileno())
        except OSError:
            backup.unlink(missing_ok=True)
            raise
        return backup
    raise OSError(f"no free backup name next to {path}")  # pragma: no cover


def repair_journal(path: str | Path, *, lock_grace: float = DEFAULT_LOCK_GRACE) -> RepairReport:
    """Repair the journal at ``path`` in place (stop every worker first); see the module docstring.

    Under the journal lock: the backup, then the repaired records are written to a temporary file,
    renamed over the journal and replayed by Optuna's :class:`JournalStorage`; if that fails the
    original is restored and :class:`StorageError` raised. An intact journal is not touched.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no journal file at {path}")
    check_journal_file(path)  # never "repair" a file that is not a journal
    lock = OwnedLock(path, grace_period=lock_grace)
    lock.acquire()
    try:
        original = path.read_bytes()
        plan = _Plan()
        torn = 0
        for number, line in enumerate(original.splitlines(keepends=True), start=1):
            if not line.endswith(b"\n"):
                torn = len(line)
                continue
            if _is_record(line):
                plan.add_record(number, _json_or_none(line))
                continue
            glued = _glued_record(line)
            if glued is not None:
                plan.recovered.append(number)
                plan.reasons[number] = "recovered: the record glued after a torn one"
                plan.add_record(number, _json_or_none(glued))
            else:
                plan.add_damaged(number, line)
        records = plan.records()
        if not (plan.recovered or plan.dropped or plan.rebuilt or torn):
            return RepairReport(path=path, kept=len(records), recovered=(), dropped=(), torn_bytes=0, backup=None,
                                trials=_trial_counts(records))
        _settle_rebuilt(plan, records)
        try:
            backup = _backup_path(path, original)
        except OSError as exc:
            raise StorageError(f"cannot repair the journal {path}: its backup copy cannot be written "
                               f"({exc.strerror or exc}); nothing was changed") from None
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.repair")
        try:
            with open(temporary, "wb") as handle:
                handle.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot repair the journal {path}: {exc.strerror or exc}; nothing was changed "
                               f"(a copy is in {backup})") from None
        try:
            JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:
            os.replace(backup, path)
            raise StorageError(f"the journal {path} cannot be repaired automatically: after the repair Optuna "
                               f"still cannot replay it ({type(exc).__name__}: {exc}); it was left as it was") \
                from None
        return RepairReport(path=path, kept=len(records), recovered=tuple(plan.recovered),
                            dropped=tuple(sorted(plan.dropped)), torn_bytes=torn, backup=backup,
                            rebuilt=tuple(sorted(plan.rebuilt)), reasons=tuple(sorted(plan.reasons.items())),
                            trials=_trial_counts(records))
    finally:
        lock.release()
