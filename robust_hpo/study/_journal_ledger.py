"""Records that cannot belong to a journal: duplicated lines, a second journal appended, dangling trials.

Optuna numbers studies and trials by the order of their creation records and replays every other
record onto the trial id it names, skipping silently what does not fit. So a creation record
written twice (a copied line) makes a phantom RUNNING trial, a second journal appended to the first
re-creates its study (skipped) and adds its trials to the first one's, and a record naming a trial
no record created is dropped. :class:`JournalLedger` follows the records in order (what Optuna's
replay would create) and names the first one that cannot belong:

* a creation or state record (op codes 0, 4, 6 — they carry a name or a microsecond time stamp, so
  no two genuine ones are equal) identical to an earlier one;
* the creation of a study whose name is already live (two journals concatenated);
* a trial record naming a trial id no earlier record created.

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

    def problem(self, record: dict[str, Any]) -> str | None:
        """Why ``record`` cannot be the next record of this journal, or None when it can."""
        op = record.get("op_code")
        if op in STAMPED_OPS:
            first = self.seen.get(canonical(record))
            if first is not None:
                return f"it repeats line {first} (a duplicated line)"
        if op == CREATE_STUDY and record.get("study_name") in self.studies.values():
            return (f"it creates the study {record.get('study_name')!r} a second time (another journal "
                    "appended to this one?)")
        trial_id = record.get("trial_id")
        if op in TRIAL_OPS and isinstance(trial_id, int) and not 0 <= trial_id < self.trials:
            return f"it refers to trial id {trial_id}, which no earlier record created"
        return None

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
        elif op == DELETE_STUDY:
            self.studies.pop(record.get("study_id"), None)  # type: ignore[arg-type]
        elif op == CREATE_TRIAL and record.get("study_id") in self.studies:
            self.trials += 1
            self.trial_study.append(int(record["study_id"]))
