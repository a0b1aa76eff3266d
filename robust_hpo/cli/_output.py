"""The output folder of a command, checked before any work: it can be created and written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from robust_hpo.errors import ValidationError

PROBE_BYTES = 4096
"""Bytes written (and removed) to prove the folder takes writes."""


def check_writable(folder: str | Path) -> Path:
    """``folder`` (absolute) when it exists as a folder or can be created, and a file can be written
    there; else a one-line :class:`ValidationError` naming it and why (a file in the way, no permission,
    a read-only file system, a full disk). Creates nothing that stays: a probe file is written with
    ``O_EXCL`` in the folder (or its nearest existing parent), synced, and removed."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        what = "the output folder" if existing == folder else f"its parent {existing}"
        raise ValidationError(f"output folder {folder} cannot be used: {what} is a file, not a folder; choose "
                              "another with --output")
    try:
        handle, probe = tempfile.mkstemp(prefix=".robust-hpo-probe-", dir=existing)
        try:
            os.write(handle, b"\0" * PROBE_BYTES)
            os.fsync(handle)
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        raise ValidationError(f"output folder {folder} is not writable: {exc.strerror or exc} (in {existing}); "
                              "choose another with --output") from None
    return folder
