"""Where a study lives (its storage) and where its outputs go (its output folder): two separate things.

* The **output root** is ``$ROBUST_HPO_OUTPUT_ROOT``, else ``robust_hpo_output`` in the working
  directory (:func:`output_root`).
* The **default storage** of study ``NAME`` is the journal file ``<root>/NAME/study.log``. A study
  file's ``[study] storage`` or ``--storage`` names another one; ``--output`` never moves it.
* The **output folder** (figures, tables) is ``--output`` when given — the same meaning in every
  command. Otherwise ``<root>/NAME/`` for a study in its default journal, and
  ``<root>/NAME/<storage>/`` for the same name in any other storage (``sqlite-x.db-1a2b3c4d``: kind,
  file or database name, and a hash of the location), so two studies never overwrite each other's files.

Study names become folder names: :func:`check_study_name` refuses path separators, ``..``, control
characters and names longer than 128 characters, so outputs stay under the root.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import optuna

from robust_hpo.errors import MissingFileError, ValidationError
from robust_hpo.study._settings import StudyConfig
from robust_hpo.study._storage import JOURNAL_FILE, StorageSpec

__all__ = [
    "OUTPUT_ROOT",
    "OUTPUT_ROOT_ENV",
    "StudyLocation",
    "check_study_name",
    "locate",
    "locate_storage",
    "output_root",
    "storage_folder_name",
]

OUTPUT_ROOT = Path("robust_hpo_output")
"""Default output root, relative to the working directory."""

OUTPUT_ROOT_ENV = "ROBUST_HPO_OUTPUT_ROOT"
"""Environment variable naming another output root."""

MAX_NAME_LENGTH = 128


def output_root() -> Path:
    """The output root, absolute: ``$ROBUST_HPO_OUTPUT_ROOT`` or ``./robust_hpo_output``."""
    root = os.environ.get(OUTPUT_ROOT_ENV) or str(OUTPUT_ROOT)
    return Path(root).expanduser().absolute()


def check_study_name(name: object, *, source: str = "study name") -> str:
    """``name`` if it can be a folder name under the output root; else a ``ValidationError``."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{source} must be a non-empty string, got {name!r}")
    bad = sorted({c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad or ".." in name or name.strip() == "." or len(name) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"{source} {name!r} cannot name an output folder: use at most {MAX_NAME_LENGTH} characters without "
            "path separators (/ or \\), '..' or control characters (or give --output for an existing study)")
    return name


@dataclass(frozen=True)
class StudyLocation:
    """Where a study lives: its name, output folder (absolute) and storage."""

    name: str
    output: Path
    storage: StorageSpec


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:40] or "storage"


def storage_folder_name(spec: StorageSpec) -> str:
    """The sub-folder name for outputs of a study in ``spec`` (not its default journal):
    ``<kind>-<file or database>-<8 hex digits of the location's hash>``; no password enters it."""
    if spec.journal is not None:
        where = str(Path(spec.journal).expanduser().absolute())
        kind, base = "journal", Path(where).name
    else:
        url = str(spec.url)
        scheme, _, rest = url.partition("://")
        kind = scheme.split("+", 1)[0]
        host_db = rest.rpartition("@")[2]
        if kind == "sqlite":
            path = host_db[1:] if host_db.startswith("/") else host_db
            where = f"sqlite:{Path(path).expanduser().absolute()}" if path and path != ":memory:" else url
            base = Path(path).name or "memory"
        else:
            credentials = rest.rpartition("@")[0]
            where = f"{scheme}://{credentials.split(':', 1)[0]}@{host_db}"
            base = host_db.split("?", 1)[0].rstrip("/").rpartition("/")[2] or host_db
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    return f"{_slug(kind)}-{_slug(base)}-{digest}"


def _folder(name: str, spec: StorageSpec, output: str | Path | None) -> Path:
    if output is not None:
        return Path(output).expanduser().absolute()
    home = output_root() / name
    default = home / JOURNAL_FILE
    if spec.journal is not None and Path(spec.journal).expanduser().absolute() == default:
        return home
    return home / storage_folder_name(spec)


def locate(config: StudyConfig, *, storage: str | None = None, study_name: str | None = None,
           output: str | Path | None = None) -> StudyLocation:
    """A study named by its file: command-line values win over the file's.

    The storage is ``storage``, else ``[study] storage``, else ``<root>/<name>/study.log``; the
    output folder as the module docstring says.
    """
    name = check_study_name(study_name if study_name is not None else config.study.name,
                            source="--study-name" if study_name is not None else "[study] name")
    spec = StorageSpec.parse(storage if storage is not None else config.study.storage,
                             default_journal=output_root() / name / JOURNAL_FILE)
    return StudyLocation(name=name, output=_folder(name, spec, output), storage=spec)


def locate_storage(storage: str, *, study_name: str | None = None,
                   output: str | Path | None = None) -> StudyLocation:
    """A study known only by its storage (no study file): the named one, or the storage's only study.

    A journal path must exist; with several studies and no ``study_name`` the error lists them. A
    stored name that cannot be a folder name (a study made elsewhere) needs ``output``.
    """
    spec = StorageSpec.parse(storage, default_journal=Path(storage))
    if not spec.exists():
        raise MissingFileError(f"no study storage at {spec.journal}")
    name = study_name
    if name is None:
        names = optuna.get_all_study_names(spec.open(create=False))
        if len(names) != 1:
            raise ValidationError(f"{spec.describe()} holds {len(names)} studies {names}; choose one with --study-name")
        name = names[0]
    if output is None:  # the name becomes a folder under the root
        check_study_name(name, source="--study-name" if study_name is not None else "the stored study's name")
    return StudyLocation(name=name, output=_folder(name, spec, output), storage=spec)
