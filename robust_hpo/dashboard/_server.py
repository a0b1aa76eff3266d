"""optuna-dashboard for a study's storage: the WSGI app (for tests and embedding) and a server.

The app is optuna-dashboard 0.21's own (``optuna_dashboard.wsgi``) behind
:class:`~robust_hpo.dashboard._feasible.FeasibleFront`, so its Best Trials are the feasible Pareto
front, each trial says whether it is feasible and the study note carries the recommendation. It
reads the study's metric names and the list-form ``constraints`` trial attribute, which the
objective writes (see ``robust_hpo.objective``); plain ``optuna-dashboard study.log`` keeps working.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from numbers import Integral
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import BaseStorage

from robust_hpo._validation import Interval, check
from robust_hpo.dashboard._feasible import FeasibleFront
from robust_hpo.errors import MissingDependencyError, ValidationError


def _import_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ModuleNotFoundError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("optuna-dashboard is not installed: pip install optuna-dashboard") from exc
    return optuna_dashboard


def dashboard_app(storage: BaseStorage, *, tolerances: Mapping[str, float] | None = None) -> Any:
    """The WSGI application serving ``storage`` (``/api/studies`` lists studies); ``tolerances``:
    the recommendation's accuracy tolerance per study name (default: each study's stored one)."""
    return FeasibleFront(_import_dashboard().wsgi(storage), storage, tolerances=tolerances)


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (the dashboard polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


def dashboard_server(storage: BaseStorage, *, host: str = "127.0.0.1", port: int = 8080,
                     tolerances: Mapping[str, float] | None = None) -> WSGIServer:
    """A bound (not yet serving) HTTP server for :func:`dashboard_app`; call ``serve_forever()``.

    A busy or forbidden port, or an unknown host, raises :class:`ValidationError` naming it.
    """
    check("port", port, [Interval(Integral, 0, 65535)], note="0: any free port")
    app = dashboard_app(storage, tolerances=tolerances)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except socket.gaierror as exc:
        raise ValidationError(f"--host {host!r}: not an address of this machine ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValidationError(f"port {port} on {host} is already in use (another dashboard?); "
                                  "choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise ValidationError(f"port {port} on {host} needs privileges; choose one above 1023 with --port") \
                from None
        raise ValidationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_dashboard(storage: BaseStorage, *, host: str = "127.0.0.1", port: int = 8080,
                    tolerances: Mapping[str, float] | None = None) -> None:
    """Serve :func:`dashboard_app` on ``host:port`` until interrupted."""
    server = dashboard_server(storage, host=host, port=port, tolerances=tolerances)
    try:
        server.serve_forever()
    finally:
        server.server_close()
