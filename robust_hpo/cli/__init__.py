"""``robust-hpo``: one command-line program for studies and their analysis.

One command table (:data:`COMMANDS`: ``run``, ``report``, ``dashboard``, ``curves``,
``deviation``, ``explain``, ``verify``, ``heatmap``, …), one :func:`main`. Every library error
(:class:`~robust_hpo.errors.RobustHPOError`, and ``ValueError``/``FileNotFoundError`` from the
libraries below), a storage failing mid-run (SQLite, PostgreSQL, the gRPC proxy) and a failed file
write (a full disk, a read-only folder) print ``robust-hpo: error: <one line>`` (passwords masked) and
exit with status 2; Ctrl-C at any moment — while the libraries load, in a trial, inside Optuna's bookkeeping —
prints one line and exits with 130; other exceptions keep their traceback.

The commands (and the libraries they need) are imported inside :func:`main`, so that an
interrupt while they load is handled like any other.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from robust_hpo import __version__
from robust_hpo.cli._args import PROG
from robust_hpo.errors import RobustHPOError

__all__ = ["COMMANDS", "PROG", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Command = Callable[[argparse._SubParsersAction], None]


def commands() -> tuple[Command, ...]:
    """Each entry adds one subcommand (its parser and handler) to the ``robust-hpo`` parser."""
    from robust_hpo.cli import _analysis, _study

    return (*_study.COMMANDS, *_analysis.COMMANDS)


def __getattr__(name: str) -> Any:
    if name == "COMMANDS":  # the command table, loaded on first use
        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Backdoor-robust hyperparameter optimisation with Optuna: maximise clean "
                               "accuracy, minimise the backdoor learning slope; analyse the trials.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in commands():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    previous_hook = threading.excepthook
    threading.excepthook = _thread_failure
    try:
        return _main(argv)
    finally:
        threading.excepthook = previous_hook


def _thread_failure(args: threading.ExceptHookArgs) -> None:
    """A storage failure in a background thread (Optuna's heartbeat) is one line, not a traceback; the
    main thread meets the same failure at its next write and ends the command."""
    from robust_hpo.study import mask_secrets, storage_failure

    line = storage_failure(args.exc_value) if args.exc_value is not None else None
    if line is None:
        threading.__excepthook__(args)
        return
    name = args.thread.name if args.thread is not None else "a background thread"
    print(f"{PROG}: {name}: {mask_secrets(line.split('. ', 1)[0])}", file=sys.stderr, flush=True)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return _interrupted()
    except (RobustHPOError, ValueError, FileNotFoundError) as exc:
        if _raised_by_interrupt(exc):
            return _interrupted()
        from robust_hpo.study import mask_secrets

        print(f"{PROG}: error: {mask_secrets(' '.join(mask_secrets(str(exc)).split()))}", file=sys.stderr)
        return 2
    except Exception as exc:
        if _raised_by_interrupt(exc):
            return _interrupted()
        line = _environment_failure(exc)
        if line is None:
            raise
        from robust_hpo.study import mask_secrets

        print(f"{PROG}: error: {mask_secrets(line)}", file=sys.stderr)
        return 2


def _environment_failure(exc: BaseException) -> str | None:
    """One line for a failure of the storage or the file system behind ``exc`` (its cause or context
    chain), or None: Optuna reports a storage that failed mid-run as ``UnboundLocalError``,
    ``AssertionError: Should not reach.`` or ``StorageInternalError`` around the database's error."""
    from robust_hpo.study import storage_failure

    storage = storage_failure(exc)
    if storage is not None:
        return storage
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.strerror:
            where = f" {current.filename}" if current.filename else ""
            return f"cannot write or read{where}: {current.strerror}"
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _interrupted() -> int:
    print(f"{PROG}: interrupted; finished trials are saved, rerun to resume", file=sys.stderr)
    return 130


def _raised_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a Ctrl-C was being handled (e.g. Optuna's ``_run_trial``
    fails with ``UnboundLocalError`` in its ``finally`` when the interrupt lands inside ``tell``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__context__ or current.__cause__
    return False
