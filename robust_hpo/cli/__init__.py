"""``robust-hpo``: one command-line program for studies and their analysis.

One command table (:data:`COMMANDS`: ``run``, ``report``, ``dashboard``, ``curves``,
``deviation``, ``explain``, ``verify``, ``heatmap``), one :func:`main`. Every library error
(:class:`~robust_hpo.errors.RobustHPOError`, and ``ValueError``/``FileNotFoundError`` from the
libraries below) prints ``robust-hpo: error: <one line>`` and exits with status 2; Ctrl-C exits
with 130; other exceptions keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from robust_hpo import __version__
from robust_hpo.cli import _analysis, _study
from robust_hpo.cli._args import PROG
from robust_hpo.errors import RobustHPOError

__all__ = ["COMMANDS", "PROG", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (*_study.COMMANDS, *_analysis.COMMANDS)
"""Each entry adds one subcommand (its parser and handler) to the ``robust-hpo`` parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Backdoor-robust hyperparameter optimisation with Optuna: maximise clean "
                               "accuracy, minimise the backdoor learning slope; analyse the trials.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (RobustHPOError, ValueError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished trials are saved, rerun to resume", file=sys.stderr)
        return 130
