"""argparse value types and argument groups shared by the ``robust-hpo`` subcommands."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PROG = "robust-hpo"
"""The program name in usage lines and error messages."""


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected.replace(" ", "_")
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "a non-negative integer")
seed = _checked(int, lambda v: 0 <= v <= 2**32 - 1, "an integer in [0, 4294967295] (NumPy's seed range)")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
non_negative_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
fraction = _checked(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def n_jobs(text: str) -> int:
    """A positive number of parallel jobs, or -1 for one per core."""
    return -1 if text.strip() == "-1" else positive_int(text)


def assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a dotted KEY; VALUE read as a TOML value (``3``, ``0.5``, ``true``,
    ``[1, 2]``, ``"text"``), or as the bare string when it is not one (``none``, ``DEFAULT``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or "." not in key or not all(key.split(".")):
        raise argparse.ArgumentTypeError(f"expected SECTION.KEY=VALUE (e.g. features.weights=none), got {text!r}")
    try:
        parsed: Any = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    except RecursionError:
        raise argparse.ArgumentTypeError(f"{key}: the value is nested too deeply to read") from None
    return key, parsed


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-root`` and ``--set SECTION.KEY=VALUE`` for commands that read a study file."""
    parser.add_argument("--data-root", metavar="DIR", type=Path,
                        help="data directory, overriding the file's [data] root")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", type=assignment, action="append", default=[],
                        dest="overrides",
                        help="override one study-file value before validation, e.g. --set features.weights=none "
                             "or --set data.n_train=200 (repeatable; VALUE is read as TOML, else as text)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` values, then ``--data-root`` (absolute, so not relative to the study file)."""
    result = dict(getattr(args, "overrides", []) or [])
    if getattr(args, "data_root", None) is not None:
        result["data.root"] = str(args.data_root.expanduser().resolve())
    return result
