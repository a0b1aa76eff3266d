"""Which process owns something (a running trial, a journal lock), and whether that process is gone.

A :class:`ProcessIdentity` is the host name, a *machine* key, the process id and the process's start
time. The machine key joins the host name, the kernel's boot id and the pid namespace, so two
identities with the same key see the same process table: only then can liveness be decided (a
container with the host's name, a reboot, another machine all give another key). The start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot) tells a reused pid from its first owner.
Where ``/proc`` is absent (macOS, Windows) the key is the host name alone and liveness falls back to
``os.kill(pid, 0)`` without the start-time check.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

_PROC = "/proc"


@dataclass(frozen=True)
class ProcessIdentity:
    """A process: ``host`` (for people), ``machine`` (see the module docstring), ``pid``, ``started``
    (start time in clock ticks since boot; None where unknown)."""

    host: str
    machine: str
    pid: int
    started: int | None = None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        pid = os.getpid()
        return cls(host=_host(), machine=_machine(), pid=pid, started=_start_ticks(pid))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> ProcessIdentity | None:
        """The identity stored as :meth:`to_json`, or None when ``value`` is not one."""
        if not isinstance(value, dict):
            return None
        try:
            host, machine, pid = value["host"], value["machine"], value["pid"]
        except KeyError:
            return None
        started = value.get("started")
        if not (isinstance(host, str) and isinstance(machine, str) and isinstance(pid, int)
                and (started is None or isinstance(started, int))):
            return None
        return cls(host=host, machine=machine, pid=pid, started=started)

    def on_this_machine(self) -> bool:
        """Whether this process can tell if the owner is alive (same host, boot and pid namespace)."""
        return self.machine == _machine()

    def is_gone(self) -> bool:
        """True only when the process certainly no longer runs: on this machine, and its pid is
        unused, a zombie, or now belongs to a process started at another time. Owners on other
        machines are never declared gone."""
        if not self.on_this_machine() or os.name == "nt":  # Windows: kill(pid, 0) would signal it
            return False
        if self.pid == os.getpid():
            return False
        stat = _read_stat(self.pid)
        if stat is None:
            if os.path.isdir(_PROC):
                return True
            return not _signal_zero(self.pid)
        state, started = stat
        if state in ("Z", "X", "x"):
            return True
        return self.started is not None and started != self.started

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _host() -> str:
    return socket.gethostname() or "unknown-host"


@lru_cache(maxsize=1)
def _machine() -> str:
    parts = [_host()]
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id", encoding="ascii") as handle:
            parts.append(handle.read().strip())
        parts.append(os.readlink(f"{_PROC}/self/ns/pid"))
    except OSError:
        pass
    return "/".join(parts)


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``pid`` from ``/proc``; None when it has no entry."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    stat = _read_stat(pid)
    return stat[1] if stat is not None else None


def _signal_zero(pid: int) -> bool:
    """Whether a process ``pid`` exists (no ``/proc``): ``kill(pid, 0)`` succeeds or is refused."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True
