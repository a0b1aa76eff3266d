"""Where studies live: a local journal file by default, or any Optuna RDB storage URL.

``spec`` forms: ``None`` (the default journal file), a URL with ``://`` (``sqlite:///path.db``,
``postgresql://user:pw@host/db`` — needs the ``postgres`` extra, ``psycopg2`` — ``mysql://...``, any
SQLAlchemy URL Optuna's ``RDBStorage`` accepts) or a
path to a journal file (what ``optuna-dashboard PATH`` reads too).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_FILE = "study.log"
"""Name of the default journal file inside the output folder."""

_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class StorageSpec:
    """A resolved storage location: ``url`` for RDB storages, ``journal`` for a journal file."""

    url: str | None = None
    journal: Path | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.journal is None):
            raise ValueError("give exactly one of url or journal")

    @classmethod
    def parse(cls, spec: str | None, *, default_journal: Path) -> StorageSpec:
        if spec is None:
            return cls(journal=Path(default_journal))
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"storage must be a URL or a journal file path, got {spec!r}")
        if "://" in spec:
            scheme = spec.split("://", 1)[0]
            if scheme.startswith("redis"):
                raise ValueError(f"storage {spec!r}: redis journals are not supported; use a journal file, "
                                 "sqlite:/// or postgresql:// URL")
            return cls(url=spec)
        return cls(journal=Path(spec))

    def describe(self) -> str:
        """Human-readable location, with any password in a URL masked."""
        if self.journal is not None:
            return f"journal file {self.journal}"
        return _mask_password(str(self.url))

    def dashboard_argument(self) -> str:
        """What to pass to ``optuna-dashboard`` for this storage."""
        return str(self.journal) if self.journal is not None else str(self.url)

    def exists(self) -> bool:
        """False only for a journal file that has not been created yet (RDB URLs are assumed to exist)."""
        return self.journal is None or self.journal.is_file()

    def open(self) -> BaseStorage:
        """Open (creating a journal file and its folder if needed); bad URLs raise ``ValueError``."""
        if self.journal is not None:
            if self.journal.is_dir():
                raise ValueError(f"storage {self.journal} is a directory; expected a journal file path")
            if self.journal.is_file() and _has_sqlite_header(self.journal):
                raise ValueError(f"storage {self.journal} is an SQLite database; pass sqlite:///{self.journal}")
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(self.journal)))
        return _open_rdb(str(self.url))


def postgres_driver_url(url: str) -> str:
    """``postgres[ql]://`` -> ``postgresql+psycopg2://`` when only psycopg2 (the ``postgres`` extra) is
    installed: SQLAlchemy ≥ 2.1 picks psycopg 3 for a bare ``postgresql://``. Other URLs are unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def _open_rdb(url: str) -> RDBStorage:
    try:
        import sqlalchemy.exc
    except ModuleNotFoundError as exc:  # pragma: no cover - sqlalchemy ships with optuna
        raise ValueError(f"storage {_mask_password(url)} needs SQLAlchemy: pip install sqlalchemy") from exc
    try:
        return _rdb_with_schema_retry(postgres_driver_url(url), sqlalchemy.exc)
    except ImportError as exc:  # Optuna re-raises a missing driver as a plain ImportError
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        name = getattr(cause, "name", None) or str(cause)
        hint = " (pip install 'robust_hpo[postgres]')" if url.startswith("postgres") else ""
        raise ValueError(f"storage {_mask_password(url)}: missing database driver {name!r}{hint}") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        reason = " ".join(str(exc).split())
        raise ValueError(f"storage {_mask_password(url)} cannot be opened: {reason[:300]}") from None


def _rdb_with_schema_retry(url: str, errors: Any, attempts: int = 5) -> RDBStorage:
    """``RDBStorage(url)``, retried when another process is creating the same schema at that moment.

    Workers started together on a fresh database race to create Optuna's tables; the loser sees
    "already exists" (a duplicate table, type or version row). Once the winner commits, a new attempt
    finds the schema and succeeds.
    """
    for attempt in range(attempts):
        try:
            return RDBStorage(url)
        except (errors.IntegrityError, errors.ProgrammingError) as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not ("already exists" in text or "duplicate" in text):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _has_sqlite_header(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
