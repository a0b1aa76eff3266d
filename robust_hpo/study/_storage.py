"""Where studies live: a local journal file by default, or any Optuna RDB storage URL.

``spec`` forms: ``None`` (the default journal file), a URL with ``://`` (``sqlite:///path.db``,
``postgresql://user:pw@host/db`` — needs the ``postgres`` extra, ``psycopg2`` — ``mysql://...``, any
SQLAlchemy URL Optuna's ``RDBStorage`` accepts; ``grpc://host:port`` for Optuna's gRPC storage proxy,
``grpc`` extra) or a path to a journal file (what ``optuna-dashboard PATH`` reads too).

Opening for writing (``create=True``) may create the storage; opening for reading never creates or
changes anything. RDB storages opened with :class:`Heartbeat` settings run Optuna's heartbeat: a
running trial whose worker stopped beating for ``grace_period`` seconds is failed by the next worker
that starts a trial, and its configuration is enqueued again (``RetryHeartbeatStaleTrialCallback``).
Journal files go through :mod:`robust_hpo.study._journal` (torn records, stale locks).
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage

from robust_hpo._validation import Interval, check
from robust_hpo.errors import MissingDependencyError, MissingFileError, StorageError, ValidationError
from robust_hpo.study._journal import check_journal_file, open_journal
from robust_hpo.study._orphans import OwnedCachedStorage, enqueue_retry

JOURNAL_FILE = "study.log"
"""Name of the default journal file inside the output folder."""

@dataclass(frozen=True)
class Heartbeat:
    """Optuna's heartbeat for RDB storages: each running trial records a beat every ``interval``
    seconds; one silent for ``grace_period`` seconds is failed and retried up to ``max_retry`` times
    per configuration (``None``: no limit; 0: failed, not retried)."""

    interval: int = 15
    grace_period: int = 60
    max_retry: int | None = 3

    def __post_init__(self) -> None:
        for key, value in (("heartbeat_interval", self.interval), ("grace_period", self.grace_period)):
            check(key, value, [Interval(Integral, 1, None)], note="seconds")
        if self.grace_period <= self.interval:
            raise ValidationError(f"grace_period ({self.grace_period} s) must exceed heartbeat_interval "
                                  f"({self.interval} s): a live worker would be taken for dead")
        check("max_retry", self.max_retry, [Interval(Integral, 0, None), None])

    def retry_callback(self) -> Any:
        """The retry callback for stale trials (``None`` when ``max_retry`` is 0): a WAITING copy of
        the trial's parameters linked as Optuna's ``RetryHeartbeatStaleTrialCallback`` links them
        (:func:`robust_hpo.study._orphans.enqueue_retry`, as journal orphans get) — but without the
        failed trial's other attributes, which Optuna's copies: its owner, its failure record and its
        constraint value (the retry's own ``set_constraint`` then warned "The constraint value is
        ignored" and kept the failed trial's)."""
        if self.max_retry == 0:
            return None
        return _RetryStale(self.max_retry)

    def rdb_arguments(self) -> dict[str, Any]:
        """``RDBStorage`` keyword arguments for these settings."""
        import inspect

        callback_key = ("heartbeat_stale_trial_callback"
                        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
                        else "failed_trial_callback")
        return {"heartbeat_interval": self.interval, "grace_period": self.grace_period,
                callback_key: self.retry_callback()}


@dataclass(frozen=True)
class _RetryStale:
    """``heartbeat_stale_trial_callback``: enqueue a retry of a stale trial (see Heartbeat.retry_callback)."""

    max_retry: int | None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        enqueue_retry(study, trial, max_retry=self.max_retry)


@dataclass(frozen=True)
class StorageSpec:
    """A resolved storage location: ``url`` for RDB storages, ``journal`` for a journal file."""

    url: str | None = None
    journal: Path | None = None
    default: bool = field(default=False, compare=False)
    """True for the journal robust_hpo chose itself (``<output root>/<name>/study.log``): an empty file
    there is the journal of a run killed before its first record, not someone else's file."""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.journal is None):
            raise ValidationError("give exactly one of url or journal")

    @classmethod
    def parse(cls, spec: str | None, *, default_journal: Path) -> StorageSpec:
        if spec is None:
            return cls(journal=Path(default_journal), default=True)
        if not isinstance(spec, str) or not spec.strip():
            raise ValidationError(f"storage must be a URL or a journal file path, got {spec!r}")
        if "://" in spec or _DSN.match(spec):
            remember_secrets(spec)
        if _DSN.match(spec):
            raise ValidationError(
                f"storage {mask_secrets(spec)!r} is a PostgreSQL key=value DSN, which is not a storage: give a "
                "URL such as postgresql://USER@HOST:5432/DBNAME (the password after USER: or in ~/.pgpass)")
        if "://" in spec:
            scheme = spec.split("://", 1)[0]
            if scheme == "grpc":
                grpc_address(spec)
            if scheme.startswith("redis"):
                raise ValidationError(f"storage {spec!r}: redis journals are not supported; use a journal file, "
                                 "sqlite:/// or postgresql:// URL")
            return cls(url=spec)
        return cls(journal=Path(spec))

    def describe(self) -> str:
        """Human-readable location, with any password in a URL masked."""
        if self.journal is not None:
            return f"journal file {self.journal}"
        return mask_secrets(str(self.url))

    def dashboard_argument(self) -> str:
        """What to pass to ``optuna-dashboard`` for this storage."""
        return str(self.journal) if self.journal is not None else str(self.url)

    def exists(self) -> bool:
        """False only for a journal file that has not been created yet (RDB URLs are assumed to exist)."""
        return self.journal is None or self.journal.is_file()

    def check(self) -> None:
        """Refuse, touching nothing, a journal path holding something other than an Optuna journal
        (:func:`robust_hpo.study._journal.check_journal_file`); URLs are checked when opened."""
        if self.journal is not None:
            check_journal_file(self.journal, allow_empty=self.default)

    def open(self, *, create: bool = True, heartbeat: Heartbeat | None = None) -> BaseStorage:
        """Open the storage: ``create=True`` may create it (a journal file and its folder, an SQLite
        file, Optuna's tables); ``create=False`` requires it to exist and creates nothing.
        ``heartbeat`` applies to RDB storages (journal files have none; see
        :mod:`robust_hpo.study._orphans`). Errors are :class:`StorageError` (or
        :class:`MissingFileError`) naming the file or the masked URL."""
        _OPENED.append(self.describe())
        if self.journal is not None:
            return open_journal(self.journal, create=create, allow_empty=self.default)  # refuses a file that is not a journal, untouched
        url = str(self.url)
        if _in_memory(url):
            raise ValidationError(f"storage {mask_secrets(url)} is an in-memory database: each process would have "
                                  "its own, nothing is saved and other workers cannot see it. Give a file, e.g. "
                                  "sqlite:///study.db")
        if url.startswith("grpc://"):
            return _open_grpc(url)
        if not create:
            _check_database_exists(url)
        return _open_rdb(url, create=create, heartbeat=heartbeat)


def _in_memory(url: str) -> bool:
    """Whether ``url`` is an SQLite in-memory database (``sqlite://``, ``sqlite:///:memory:``, ``mode=memory``)."""
    if not url.startswith("sqlite"):
        return False
    rest = url.split("://", 1)[1] if "://" in url else ""
    database = rest[1:] if rest.startswith("/") else rest
    return database in ("", ":memory:") or database.startswith(":memory:") or "mode=memory" in database


_OPENED: list[str] = []
"""The storages this process opened (described, passwords masked), most recent last."""


def storage_failure(exc: BaseException) -> str | None:
    """One line for a storage that failed while in use, found in ``exc``'s cause/context chain (a
    database error, Optuna's ``StorageInternalError``, a gRPC error), naming the storage last
    opened; None when no storage error is behind ``exc``."""
    import optuna.exceptions

    kinds: list[type[BaseException]] = [optuna.exceptions.StorageInternalError]
    try:
        import sqlalchemy.exc

        kinds.append(sqlalchemy.exc.SQLAlchemyError)
    except ImportError:  # pragma: no cover - sqlalchemy ships with optuna
        pass
    try:
        import grpc

        kinds.append(grpc.RpcError)
    except ImportError:
        pass
    seen: set[int] = set()
    current: BaseException | None = exc
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        if isinstance(current, tuple(kinds)):
            found = current
            if not isinstance(current, optuna.exceptions.StorageInternalError):
                break  # the database's own error says most
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if found is None:
        return None
    reason = _short_reason(found)
    where = f"storage {_OPENED[-1]}" if _OPENED else "the study storage"
    return mask_secrets(f"{where} failed: {reason}. Trials finished before are saved; once the storage answers "
                        "again, run the same command: the trial that was running is failed and retried")


def _short_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper: the driver's own message
    code = getattr(exc, "code", None)
    if callable(code) and callable(getattr(exc, "details", None)):  # grpc.RpcError
        try:
            return f"gRPC {code().name}: {exc.details()}"  # type: ignore[attr-defined]
        except Exception:  # pragma: no cover - a malformed RpcError
            pass
    text = str(orig if orig is not None else exc) or type(exc).__name__
    return f"{type(orig if orig is not None else exc).__name__}: {' '.join(text.split())[:300]}"


def postgres_driver_url(url: str) -> str:
    """``postgres[ql]://`` -> ``postgresql+psycopg2://`` when only psycopg2 (the ``postgres`` extra) is
    installed: SQLAlchemy ≥ 2.1 picks psycopg 3 for a bare ``postgresql://``. Other URLs are unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


GRPC_SCHEME = "grpc://"
"""``grpc://host:port``: workers reach one storage through Optuna's gRPC storage proxy
(``robust-hpo storage-proxy``, :func:`optuna.storages.run_grpc_proxy_server`)."""


def grpc_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``grpc://host:port`` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "grpc" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValidationError(f"storage {url!r}: expected grpc://HOST:PORT (a robust-hpo storage-proxy)")
    return parts.hostname, port


GRPC_CONNECT_TIMEOUT = 10.0
"""Seconds a worker waits for the gRPC storage proxy to answer."""


def _open_grpc(url: str) -> BaseStorage:
    host, port = grpc_address(url)
    timeout = GRPC_CONNECT_TIMEOUT
    try:
        from optuna.storages import GrpcStorageProxy

        import grpc  # noqa: F401 - GrpcStorageProxy imports it lazily
    except ImportError as exc:
        raise MissingDependencyError(f"storage {url} needs gRPC: pip install 'robust_hpo[grpc]'") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=timeout)
    except ConnectionError:
        proxy.close()
        raise StorageError(f"storage {url}: no gRPC storage proxy answers at {host}:{port} within {timeout:g} s; "
                           f"start one with `robust-hpo storage-proxy --storage URL --port {port}`") from None
    return proxy


def _check_database_exists(url: str) -> None:
    """An SQLite URL for reading must name an existing file (connecting would create an empty one)."""
    if not url.startswith("sqlite"):
        return
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception:  # an unparsable URL is reported by the open itself
        return
    if database and database != ":memory:" and not database.startswith("file:") and not Path(database).is_file():
        raise MissingFileError(f"no SQLite database at {database} (storage {mask_secrets(url)}); "
                               "run `robust-hpo run` first or check the path")


def _open_rdb(url: str, *, create: bool = True, heartbeat: Heartbeat | None = None) -> BaseStorage:
    """``RDBStorage(url)`` behind Optuna's trial cache, trials recording their owner (OwnedCachedStorage)."""
    try:
        import sqlalchemy.exc
    except ModuleNotFoundError as exc:  # pragma: no cover - sqlalchemy ships with optuna
        raise MissingDependencyError(f"storage {mask_secrets(url)} needs SQLAlchemy: pip install sqlalchemy") \
            from exc
    kwargs: dict[str, Any] = {} if create else {"skip_table_creation": True}
    if heartbeat is not None:
        kwargs.update(heartbeat.rdb_arguments())
    try:
        if not create and not _has_optuna_tables(postgres_driver_url(url)):
            raise StorageError(f"storage {mask_secrets(url)} holds no Optuna studies (no Optuna tables); "
                               "run `robust-hpo run` first or check the URL")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return OwnedCachedStorage(_rdb_with_schema_retry(postgres_driver_url(url), sqlalchemy.exc, kwargs))
    except ImportError as exc:  # Optuna re-raises a missing driver as a plain ImportError
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        name = getattr(cause, "name", None) or str(cause)
        hint = " (pip install 'robust_hpo[postgres]')" if url.startswith("postgres") else ""
        raise MissingDependencyError(f"storage {mask_secrets(url)}: missing database driver {name!r}{hint}") \
            from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        reason = " ".join(str(exc).split())
        raise StorageError(mask_secrets(f"storage {url} cannot be opened: {reason[:300]}")) from None


def _has_optuna_tables(url: str) -> bool:
    """Whether the database holds Optuna's tables (looked up without creating anything)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("version_info")
    finally:
        engine.dispose()


_SCHEMA_RACE = ("already exists", "duplicate", "unique constraint failed", "database is locked")
"""What a database says when another process is creating Optuna's schema at the same moment (SQLite:
"table studies already exists", "UNIQUE constraint failed: alembic_version.version_num")."""


def _rdb_with_schema_retry(url: str, errors: Any, kwargs: dict[str, Any], attempts: int = 8) -> RDBStorage:
    """``RDBStorage(url)``, retried when another process is creating the same schema at that moment.

    Workers started together on a fresh database race to create Optuna's tables; the loser sees
    "already exists" (a duplicate table, type or version row). Once the winner commits, a new attempt
    finds the schema and succeeds.
    """
    for attempt in range(attempts):
        try:
            return RDBStorage(url, **kwargs)
        except (errors.IntegrityError, errors.ProgrammingError, errors.OperationalError) as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not any(sign in text for sign in _SCHEMA_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# user:password@ in a URL (greedy to the token's last "@", so a password holding "@" is masked whole)
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)[^\s]*@")
# password=… in a URL query or a libpq key=value DSN, quoted or not
_KEY_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^&;\s'\"]*)")
# a libpq DSN ("host=db user=bob password=…"): given as --storage it would otherwise be a journal path
_DSN = re.compile(r"(?i)^\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode)\s*=")


_SECRETS: set[str] = set()
"""Passwords seen in storage locations this process parsed (:func:`remember_secrets`), masked
wherever they appear — also where no URL surrounds them (a driver's "invalid literal for int()")."""

MIN_SECRET_LENGTH = 4
"""Shorter passwords are masked by the URL patterns only (masking every "ab" in a message would
garble it and still tell the password)."""


def remember_secrets(location: str) -> None:
    """Note the password(s) in ``location`` (a storage URL or DSN), so :func:`mask_secrets` masks them
    everywhere: ``user:PASSWORD@`` (any characters, spaces and newlines too), ``user:PASSWORD`` with no
    ``@host`` (a non-numeric "port"), and ``password=...``."""
    from urllib.parse import unquote

    found: list[str] = []
    scheme, sep, rest = location.partition("://")
    if sep:
        if "@" in rest:
            userinfo = rest[:rest.rfind("@")]
            if ":" in userinfo:
                found.append(userinfo.split(":", 1)[1])
        else:
            netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
            port = netloc.rpartition(":")[2] if ":" in netloc else ""
            if port and not port.isdigit():
                found.append(port)
    found += [m.group(3).strip("'\"") for m in _KEY_PASSWORD.finditer(location)]
    for secret in found:
        for form in (secret, unquote(secret)):
            for variant in (form, " ".join(form.split())):
                if len(variant) >= MIN_SECRET_LENGTH:
                    _SECRETS.add(variant)


def mask_secrets(text: str) -> str:
    """``text`` with every password replaced by ``***``: ``scheme://user:***@host``, ``password=***``
    in URL queries and libpq key=value DSNs (quoted or not), and every password of a storage location
    parsed before (:func:`remember_secrets`) wherever it appears. Applied to every storage location
    and error message robust-hpo prints."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _NO_HOST_PASSWORD.sub(_mask_port, text)
    return _KEY_PASSWORD.sub(r"\1\2***", text)


# scheme://user:SOMETHING with no "@": SOMETHING is a password unless it is a port number
_NO_HOST_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)([^/?#@\s]+)(?=[/?#\s'\"]|$)", re.IGNORECASE)


def _mask_port(match: re.Match[str]) -> str:
    return match.group(0) if match.group(2).isdigit() or match.group(2) == "***" else f"{match.group(1)}***"
