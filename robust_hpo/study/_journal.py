"""Journal files that survive killed writers: torn records, stale locks, damaged lines.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON line per storage write
under a lock file (``<journal>.lock``). A writer killed mid-write (``kill -9``, a full disk) can leave

* a **torn last record** — bytes without their final newline. Optuna's reader skips it, but the next
  append would be glued onto it and every later read would fail (``Expecting ':' delimiter``).
  :class:`CheckedJournalBackend` checks the tail under the lock before *every* append: a torn tail is
  cut off (the removed bytes are kept in ``<journal>.torn-<time>`` and the cut is reported on
  stderr, naming the file). The torn bytes are a write no process ever completed — Optuna's reader
  never applied it — so cutting them changes nothing any process has seen.
* a **damaged line** inside the file (what appending after a torn record produced before this check,
  or any other damage) — :func:`open_journal` refuses it with a :class:`StorageError` naming the file,
  the line and the command that repairs it, ``robust-hpo repair <journal>`` (:mod:`robust_hpo.study._journal_repair`).
* a **stale lock** — the lock file of a killed writer. Optuna's locks wait 30 s, silently once its
  warnings are filtered. :class:`OwnedLock` (Optuna's ``O_EXCL`` lock-file protocol, so it excludes
  plain Optuna's symlink locks and theirs exclude it) writes its owner (:class:`ProcessIdentity`)
  into the lock file: a lock whose owner is gone on this machine is broken at once, one whose owner
  is alive on this machine never (a frozen or swapping writer is waited for), a lock still empty
  after :data:`EMPTY_LOCK_GRACE` seconds (its creator was killed between creating it and writing its
  owner) then, any other lock (remote or unknown owner) seen unchanged for ``grace_period`` seconds
  (default 10) then; each break and any wait over 2 s is reported on stderr, naming the lock file.
  Under the lock file, an ``flock`` on the journal keeps two robust_hpo writers apart even when a
  lock file was broken; a release removes only the caller's own lock file.
* **records that cannot belong** — a duplicated line, a second journal appended, a record of a trial
  never created (:mod:`robust_hpo.study._journal_ledger`): refused by the reader like a damaged line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # the lock interface JournalFileBackend takes
from optuna.storages.journal._storage import JournalOperation

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock file alone
    fcntl = None  # type: ignore[assignment]

from robust_hpo.errors import MissingFileError, StorageError, ValidationError
from robust_hpo.study._journal_ledger import JournalLedger
from robust_hpo.study._orphans import OwnedJournalStorage
from robust_hpo.study._owner import ProcessIdentity

LOCK_SUFFIX = ".lock"
"""Optuna's lock-file suffix (``optuna.storages.journal._file.LOCK_FILE_SUFFIX``)."""

DEFAULT_LOCK_GRACE = 10.0
"""Seconds a lock of unknown or remote owner may stay unchanged before it is broken."""

WAIT_REPORT_AFTER = 2.0
"""Seconds of waiting for a live lock before saying so on stderr."""
_TAIL_CHUNK = 1 << 16
# The start of every record Optuna writes: json.dumps({"op_code": ..., "worker_id": ..., ...}).
_RECORD_START = re.compile(rb'\{"op_code":\d+,"worker_id":"')


def _stderr(message: str) -> None:
    print(f"robust-hpo: {message}", file=sys.stderr, flush=True)


def repair_command(path: str | Path) -> str:
    """The command that repairs the journal at ``path``."""
    return f"robust-hpo repair {path}"


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back for the duration, so that an interrupt never leaves a lock taken nor a record
    half-written: while it lasts, SIGINT is only recorded; when it ends the previous handler runs for
    it (Python's raises ``KeyboardInterrupt`` there). Main thread only — where Python runs signal
    handlers and raises ``KeyboardInterrupt``; elsewhere a no-op. (Blocking the signal with
    ``pthread_sigmask`` would not do: the kernel then delivers it to another thread, e.g. a BLAS one,
    and Python still raises it in the main thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    _HELD.append(held)
    try:
        yield
    finally:
        del _HELD[next(i for i in range(len(_HELD) - 1, -1, -1) if _HELD[i] is held)]
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(signal.SIGINT, held[0])


_HELD: list[list[Any]] = []
"""The interrupts held back by the active :func:`interrupts_deferred` blocks (main thread only)."""


def _stop_waiting_if_interrupted() -> None:
    """In a wait for the lock, before anything is taken: a Ctrl-C held back meanwhile ends the wait
    with ``KeyboardInterrupt`` (a frozen holder is waited for indefinitely; Ctrl-C must still work)."""
    if threading.current_thread() is threading.main_thread() and any(_HELD):
        for held in _HELD:
            held.clear()
        raise KeyboardInterrupt


EMPTY_LOCK_GRACE = 2.0
"""Seconds after which a lock file still empty (created with ``O_EXCL``, owner not yet written — a
live process writes it at once) is broken: its creator was killed in between."""


class OwnedLock(BaseJournalFileLock):
    """The journal's lock: an ``flock`` on the journal file itself, then the lock file.

    * The **flock** (the kernel's, on the journal's open file) is released only when its holder
      releases it or dies; a frozen (SIGSTOP), swapping or paused holder keeps it. It is what makes
      two robust_hpo writers exclusive even where the lock file has been broken (a lock file of a
      remote or unknown owner is broken after its grace period), so the torn-tail check never sees
      a record another writer is still writing. After taking it, the journal's inode is checked (a
      repair renames a new file over the journal; the flock is then taken again on that one).
    * The **lock file** ``<journal>.lock`` (Optuna's ``O_EXCL`` protocol: it excludes plain Optuna's
      symlink locks and theirs exclude it) holds its owner (:class:`ProcessIdentity`). A lock whose
      owner is gone on this machine is broken at once; one whose owner is *alive on this machine* is
      never broken, however long it is held; one still empty :data:`EMPTY_LOCK_GRACE` seconds after
      this process first saw it so (its creator died before writing its owner) is broken then; any
      other (an owner on another machine, plain Optuna's symlink) once this process has seen it
      unchanged for ``grace_period`` seconds. Ages are measured on this process's monotonic clock,
      from when it first saw the lock, never from file times.
    * :meth:`release` removes only the lock file this object created (same inode); one found
      replaced is left to its holder and reported.

    ``report`` receives each message (default: stderr): each break, a wait over ``report_after`` s.
    """

    def __init__(self, journal: str | Path, *, grace_period: float = DEFAULT_LOCK_GRACE,
                 report: Callable[[str], None] = _stderr, report_after: float = WAIT_REPORT_AFTER) -> None:
        if not grace_period > 0:
            raise ValidationError(f"grace_period must be a positive number of seconds, got {grace_period!r}")
        self.journal = Path(journal)
        self.path = Path(f"{journal}{LOCK_SUFFIX}")
        self.grace_period = float(grace_period)
        self._report = report
        self._report_after = report_after
        self._identity = ProcessIdentity.current().to_json()
        self._owner = b""  # what this object wrote into the lock file it holds (its identity and a token)
        self._held_inode: int | None = None
        self._flock: int | None = None

    def acquire(self) -> bool:
        started = time.monotonic()
        self._take_flock(started)
        try:
            self._take_lock_file(started)
        except BaseException:
            self._drop_flock()
            raise
        return True

    def _take_flock(self, started: float) -> None:
        """Hold ``flock(LOCK_EX)`` on the journal file (none while it does not exist yet)."""
        delay, reported = 0.001, False
        while fcntl is not None:
            try:  # writable where possible: NFS emulates flock with fcntl locks, which need it
                try:
                    handle = os.open(self.journal, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
                except PermissionError:
                    handle = os.open(self.journal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                return  # nothing written yet: nothing a second writer could tear
            except OSError as exc:
                raise StorageError(f"cannot open the journal {self.journal}: {exc.strerror}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                _stop_waiting_if_interrupted()
                if not reported and time.monotonic() - started > self._report_after:
                    self._report(f"waiting for the journal {self.journal}: another process on this machine is "
                                 "writing it (or is frozen while writing); it is never taken from a live process")
                    reported = True
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except OSError:  # a file system without flock: the lock file alone
                os.close(handle)
                return
            try:
                same = os.fstat(handle).st_ino == os.stat(self.journal).st_ino
            except OSError:
                same = False
            if same:
                self._flock = handle
                return
            os.close(handle)  # the journal was replaced (a repair) meanwhile: lock the new one

    def _drop_flock(self) -> None:
        if self._flock is not None:
            handle, self._flock = self._flock, None
            os.close(handle)  # closing releases the flock

    def _take_lock_file(self, started: float) -> None:
        delay, reported = 0.001, False
        seen: dict[tuple[int, int, int], float] = {}  # (inode, mtime_ns, size) -> first seen (monotonic)
        while True:
            taken = False
            try:
                with interrupts_deferred():  # created and owned, or not at all
                    self._owner = json.dumps({**self._identity, "token": uuid.uuid4().hex}).encode()
                    handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    taken = True
                    try:
                        os.write(handle, self._owner)
                        self._held_inode = os.fstat(handle).st_ino
                    finally:
                        os.close(handle)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:
                    owner, key, empty = holder
                    now = time.monotonic()
                    unchanged = now - seen.setdefault(key, now)
                    stale = self._staleness(owner, unchanged, empty)
                    if stale is not None and self._break(key[0]):
                        self._report(f"broke the stale lock file {self.path} ({stale})")
                        continue
                    if not reported and now - started > self._report_after:
                        self._report(self._waiting(owner, now - started))
                        reported = True
                _stop_waiting_if_interrupted()
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except BaseException as exc:  # the write failed, or a Ctrl-C held back meanwhile: give the lock back
                if taken:
                    with contextlib.suppress(OSError):
                        os.unlink(self.path)
                self._held_inode = None
                if isinstance(exc, OSError):
                    raise StorageError(f"cannot take the lock file {self.path}: {exc.strerror}") from None
                raise
            return

    def _waiting(self, owner: ProcessIdentity | None, waited: float) -> str:
        who = owner.describe() if owner is not None else "an unknown process"
        if owner is not None and owner.on_this_machine():
            rule = "it is never broken while its owner lives"
        else:
            rule = f"it is broken once unchanged for {self.grace_period:g} s"
        return f"waiting for the lock file {self.path}, held by {who} (waited {waited:.0f} s); {rule}"

    def release(self) -> None:
        """Remove the lock file this object created, then give the flock back. A lock file found
        replaced (broken by another process and taken again) is left to its holder and reported."""
        try:
            self._release_lock_file()
        finally:
            self._drop_flock()

    def _release_lock_file(self) -> None:
        inode, self._held_inode = self._held_inode, None
        if inode is None:
            raise RuntimeError(f"release() of the lock file {self.path} without acquire()")
        moved = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.released")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            self._report(f"the lock file {self.path} was removed by another process while this one held it")
            return
        if _is_ours(moved, inode, self._owner):
            os.unlink(moved)
            return
        try:  # not ours: give it back to its holder
            os.link(moved, self.path, follow_symlinks=False)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.unlink(moved)
        self._report(f"the lock file {self.path} had been broken by another process and taken again while this "
                     "one held it; the new holder's lock was left in place")

    def _holder(self) -> tuple[ProcessIdentity | None, tuple[int, int, int], bool] | None:
        """(owner or None, (inode, mtime_ns, size), empty) of the current lock; None if it just vanished."""
        try:
            stat = os.lstat(self.path)
            owner = None
            if not os.path.islink(self.path):  # plain Optuna's lock is a symlink without an owner
                with open(self.path, "rb") as handle:
                    content = handle.read(4096)
                owner = ProcessIdentity.from_json(_json_or_none(content))
                empty = not content
            else:
                empty = False
        except OSError:
            return None
        return owner, (stat.st_ino, stat.st_mtime_ns, stat.st_size), empty

    def _staleness(self, owner: ProcessIdentity | None, unchanged: float, empty: bool) -> str | None:
        """Why the lock (seen unchanged by this process for ``unchanged`` s) may be broken, or None."""
        if empty:  # created, its owner not yet written: microseconds for a live process
            return f"empty for {unchanged:.1f} s: its creator died before writing its owner" \
                if unchanged >= EMPTY_LOCK_GRACE else None
        if owner is not None and owner.on_this_machine():
            return f"its owner, {owner.describe()}, is gone" if owner.is_gone() else None
        if unchanged >= self.grace_period:
            who = (f"{owner.describe()} on another machine" if owner is not None else "an unknown process")
            return f"held by {who}, unchanged for {unchanged:.0f} s"
        return None

    def _break(self, inode: int) -> bool:
        """Remove the lock judged stale (inode ``inode``); False when it had changed meanwhile."""
        moved = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, moved)
        except OSError:
            return False
        try:
            if os.lstat(moved).st_ino != inode:  # a fresh lock taken since: put it back if the name is free
                try:
                    os.link(moved, self.path, follow_symlinks=False)
                except OSError:
                    pass
                return False
            return True
        finally:
            try:
                os.unlink(moved)
            except OSError:
                pass


def _is_ours(path: Path, inode: int, content: bytes) -> bool:
    """Whether the lock file at ``path`` is the one created with ``inode`` and ``content`` (inode
    numbers are reused at once; the content holds a token unique to each acquisition)."""
    try:
        if os.lstat(path).st_ino != inode or os.path.islink(path):
            return False
        with open(path, "rb") as handle:
            return handle.read(len(content) + 1) == content
    except OSError:
        return False


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


UNSYNCED_OPERATIONS = frozenset({JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR,
                                 JournalOperation.SET_TRIAL_SYSTEM_ATTR,
                                 JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE})
"""Records of a RUNNING trial appended without ``fsync`` (with the creation of a trial that starts
RUNNING): the trial's next state record (or any other record) syncs them with it, since ``fsync``
flushes the whole file."""
_RUNNING = 0  # optuna.trial.TrialState.RUNNING, as the journal records it


def _needs_sync(log: Any) -> bool:
    """Whether appending ``log`` must be fsync'd: everything except a running trial's own records."""
    if not isinstance(log, dict):
        return True
    op = log.get("op_code")
    if op == JournalOperation.CREATE_TRIAL:
        return log.get("state", _RUNNING) != _RUNNING  # no state: a plain ask(), RUNNING
    return op not in UNSYNCED_OPERATIONS


class CheckedJournalBackend(JournalFileBackend):
    """Optuna's journal file backend that never appends after a torn or damaged last record.

    Before each append, under the lock: a last line without its newline is cut off (kept in
    ``<journal>.torn-<time>``, reported on stderr); a complete last line that is not a record raises
    :class:`StorageError` naming the file and :func:`repair_command`. Write errors (a full disk)
    are :class:`StorageError` naming the file.

    Durability: every append reaches the kernel before it returns (a killed process loses nothing
    it wrote). Appends that create or finish something — a study, its attributes, a waiting
    (enqueued) trial, a trial's state and values — are also ``fsync``-ed, which flushes every
    earlier line of the file with them; a running trial's own records — its creation, parameters
    and attributes (:data:`UNSYNCED_OPERATIONS`, 8 of a network trial's 9 writes, each fsync
    2–4 ms) — are not. So a power loss can lose only the newest
    parameters/attributes of trials still RUNNING — trials that are recovered as orphans anyway —
    never a finished trial's record; a torn tail it leaves is cut as above.
    """

    def __init__(self, path: str | Path, *, lock_grace: float = DEFAULT_LOCK_GRACE,
                 report: Callable[[str], None] = _stderr) -> None:
        self.path = Path(path)
        self._report = report
        self._ledger = JournalLedger()
        self._checked_upto = 0
        super().__init__(str(self.path), lock_obj=OwnedLock(self.path, grace_period=lock_grace, report=report))

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's reader, refusing a record that cannot belong to this journal (a duplicated line,
        a second journal appended, a record of a trial never created; see :class:`JournalLedger`)
        with a :class:`StorageError` naming the file, the line and the repair command."""
        for number, record in enumerate(super().read_logs(log_number_from), start=log_number_from):
            if number >= self._checked_upto:
                problem = self._ledger.problem(record) if isinstance(record, dict) else "it is not a record"
                if problem is not None:
                    raise StorageError(
                        f"the journal {self.path} is damaged: line {number + 1} cannot belong to it: {problem}. "
                        f"Stop every worker, then run `{repair_command(self.path)}` (it keeps a backup copy)")
                self._ledger.apply(record, number + 1)
                self._checked_upto = number + 1
            yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        sync = any(_needs_sync(log) for log in logs)
        with interrupts_deferred():  # a Ctrl-C neither tears the record nor leaves the lock taken
            self._append(data, sync=sync)

    def _append(self, data: bytes, *, sync: bool = True) -> None:
        self._lock.acquire()
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                self._check_tail(handle)
                _write_all(handle, data)
                if sync:
                    os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as exc:
            raise StorageError(f"writing to the journal {self.path} failed: {exc.strerror or exc}") from None
        finally:
            self._lock.release()

    def _check_tail(self, handle: int) -> None:
        size = os.fstat(handle).st_size
        if size == 0:
            return
        last, start = _last_line(handle, size)
        if not last.endswith(b"\n"):
            self._cut(handle, start, last)
        elif not _is_record(last):
            raise StorageError(
                f"the journal {self.path} ends with a damaged record (byte {start}: {_preview(last)}); "
                f"nothing was written. Stop every worker, then run `{repair_command(self.path)}`")

    def _cut(self, handle: int, start: int, torn: bytes) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        backup = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        try:
            _write_new(backup, torn)
        except OSError as exc:
            raise StorageError(
                f"the journal {self.path} ends with a torn record ({len(torn)} bytes from a killed or "
                f"disk-full write) and its backup {backup} cannot be written ({exc.strerror}); nothing "
                f"was written. Free space, then run `{repair_command(self.path)}`") from None
        os.ftruncate(handle, start)
        os.fsync(handle)
        self._report(f"{self.path}: removed a torn last record ({len(torn)} bytes, from a write that was "
                     f"killed or ran out of space; no process had read it); the bytes are kept in {backup}")


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` and sync it; on failure (a full disk) nothing is left."""
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        _write_all(handle, data)
        os.fsync(handle)
    except BaseException:
        os.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(handle)


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(handle, view)
        if written <= 0:  # pragma: no cover - os.write raises on error
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _last_line(handle: int, size: int) -> tuple[bytes, int]:
    """The file's last line (with its newline, if any) and its byte offset."""
    end = size
    if os.pread(handle, 1, size - 1) == b"\n":
        end = size - 1  # look for the newline before the final one
    chunks: list[bytes] = []
    position = end
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        chunk = os.pread(handle, step, position)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            chunks.append(chunk[newline + 1:])
            start = position + newline + 1
            break
        chunks.append(chunk)
    else:
        start = 0
    line = b"".join(reversed(chunks)) + (b"\n" if end < size else b"")
    return line, start


def _is_record(line: bytes) -> bool:
    value = _json_or_none(line)
    return isinstance(value, dict) and "op_code" in value


def _preview(line: bytes, limit: int = 60) -> str:
    text = line.rstrip(b"\n").decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass(frozen=True)
class JournalDamage:
    """What a scan of a journal found: damaged complete lines (1-based numbers) and a torn tail."""

    damaged_lines: tuple[int, ...]
    torn_tail_bytes: int

    @property
    def intact(self) -> bool:
        return not self.damaged_lines and not self.torn_tail_bytes


def scan_journal(path: str | Path) -> JournalDamage:
    """Read every line of the journal at ``path``: which are not records, and the torn tail's size."""
    damaged: list[int] = []
    torn = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                torn = len(line)
            elif not _is_record(line):
                damaged.append(number)
    return JournalDamage(damaged_lines=tuple(damaged), torn_tail_bytes=torn)


def check_journal_file(path: str | Path, *, allow_empty: bool = False) -> None:
    """Refuse an existing ``path`` that is not an Optuna journal file, before anything touches it.

    A journal's first line is an Optuna record (``{"op_code":…,"worker_id":…}``), complete or torn
    by a killed first write. Anything else — a directory, a device or pipe, an SQLite database, text,
    binary data, an empty file — raises :class:`StorageError` naming the file and saying nothing was
    written (no record, no lock file). An empty file modified in the last
    :data:`FRESH_EMPTY_SECONDS` may be a journal another worker has just created: it is re-read
    for up to :data:`FRESH_EMPTY_WAIT` seconds before being refused. ``allow_empty``: an empty file
    passes (the default journal in robust_hpo's own output folder, left empty by a run killed before
    its first record). A missing path passes.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    untouched = "nothing was written to it"
    if path.is_dir():
        raise StorageError(f"storage {path} is a directory, not an Optuna journal file; {untouched}. "
                           "Give a file path (a new file starts a new journal)")
    if not path.is_file():
        raise StorageError(f"storage {path} is not a regular file (a device, pipe or broken link), not an "
                           f"Optuna journal file; {untouched}")
    head = _read_head(path)
    if not head and allow_empty:
        return
    deadline = time.monotonic() + FRESH_EMPTY_WAIT
    while not head and time.time() - _mtime(path) < FRESH_EMPTY_SECONDS and time.monotonic() < deadline:
        time.sleep(0.05)
        head = _read_head(path)
    if head.startswith(_SQLITE_HEADER):
        raise StorageError(f"storage {path} is an SQLite database, not an Optuna journal file; {untouched}. "
                           f"Pass sqlite:///{path.resolve()} to use the database")
    if not head:
        raise StorageError(f"storage {path} is an empty file, not an Optuna journal file; {untouched}. "
                           "Give a new path (robust-hpo creates the journal), or delete the file first")
    if not _starts_like_journal(head):
        first_line = head.split(b"\n", 1)[0] + b"\n"
        raise StorageError(f"storage {path} exists and is not an Optuna journal file (its first line "
                           f"{_preview(first_line, 40)} is not a journal record); {untouched}. Give a new "
                           "path, or the journal of a robust-hpo study")


FRESH_EMPTY_SECONDS = 10.0
"""An empty file younger than this may be a journal another worker is creating (see check_journal_file)."""

FRESH_EMPTY_WAIT = 3.0
"""Seconds :func:`check_journal_file` waits for such a file to receive its first record."""

_SQLITE_HEADER = b"SQLite format 3\x00"
_HEAD_BYTES = 1 << 20


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise StorageError(f"storage {path} cannot be read: {exc.strerror or exc}") from None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _starts_like_journal(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) begins with an Optuna record, complete or torn."""
    first, newline, _ = head.partition(b"\n")
    if newline:
        record = _json_or_none(first)
        return isinstance(record, dict) and type(record.get("op_code")) is int \
            and isinstance(record.get("worker_id"), str)
    start = b'{"op_code":'
    return first.startswith(start) or start.startswith(first)  # a first record cut by a killed write


def open_journal(path: str | Path, *, create: bool, lock_grace: float = DEFAULT_LOCK_GRACE,
                 allow_empty: bool = False) -> JournalStorage:
    """Optuna's :class:`JournalStorage` (:class:`OwnedJournalStorage`: trials record their owner) on
    the journal file ``path`` with :class:`CheckedJournalBackend`.

    ``create=False`` (reading) requires the file and writes nothing. A file that is not a journal is
    refused untouched (:func:`check_journal_file`; ``allow_empty`` as there). A damaged journal raises
    :class:`StorageError` naming the file, the first damaged line and the repair command.
    """
    path = Path(path)
    check_journal_file(path, allow_empty=allow_empty)
    if not create and not path.is_file():
        raise MissingFileError(f"no study storage at {path}; run `robust-hpo run` first or pass --storage")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder of the journal {path}: {exc.strerror}") from None
    try:
        return OwnedJournalStorage(CheckedJournalBackend(path, lock_grace=lock_grace))
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a line Optuna cannot parse or replay (JSONDecodeError, KeyError, ...)
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: BaseException) -> StorageError:
    try:
        damage = scan_journal(path)
        where = f"line {damage.damaged_lines[0]} is not a journal record" if damage.damaged_lines else \
            f"Optuna cannot replay it ({type(exc).__name__}: {exc})"
    except OSError:
        where = f"{type(exc).__name__}: {exc}"
    return StorageError(f"the journal {path} is damaged: {where}. Stop every worker, then run "
                        f"`{repair_command(path)}` (it keeps a backup copy)")


def _glued_record(line: bytes) -> bytes | None:
    """The complete record that follows a torn prefix on ``line``, if any."""
    for match in _RECORD_START.finditer(line, 1):
        candidate = line[match.start():]
        if _is_record(candidate):
            return candidate
    return None
