"""The optuna-dashboard WSGI app and server for a study's storage.

optuna-dashboard 0.21 reads the study's metric names (``study.set_metric_names``) and the list-form
``constraints`` trial attribute, which the objective writes (see ``robust_hpo.objective``).
"""

from __future__ import annotations

from typing import Any

from optuna.storages import BaseStorage

from robust_hpo.errors import MissingDependencyError, ValidationError


def _import_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ModuleNotFoundError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("optuna-dashboard is not installed: pip install optuna-dashboard") from exc
    return optuna_dashboard


def dashboard_app(storage: BaseStorage) -> Any:
    """optuna-dashboard's WSGI application serving ``storage`` (``/api/studies`` lists studies)."""
    return _import_dashboard().wsgi(storage)


def serve_dashboard(storage: BaseStorage, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run optuna-dashboard on ``host:port`` until interrupted."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValidationError(f"port must be an integer in 1..65535, got {port!r}")
    _import_dashboard().run_server(storage, host=host, port=port)
