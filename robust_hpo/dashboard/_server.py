"""optuna-dashboard for a study's storage: the WSGI app (for tests and embedding) and a server.

The app is optuna-dashboard 0.21's own (``optuna_dashboard.wsgi``) behind
:class:`~robust_hpo.dashboard._feasible.FeasibleFront`, so its Best Trials are the feasible Pareto
front, each trial says whether it is feasible and the study note carries the recommendation. It
reads the study's metric names and the list-form ``constraints`` trial attribute, which the
objective writes (see ``robust_hpo.objective``); plain ``optuna-dashboard study.log`` keeps working.

The dashboard has no authentication, and optuna-dashboard's API writes (``POST /api/studies`` creates,
``DELETE /api/studies/<id>`` erases a study, ``PUT .../note``, ``POST .../user-attrs``, artifacts…). So
the app is **read-only** unless ``allow_writes=True``: only ``GET`` and ``HEAD`` reach it, anything
else is answered ``403`` with the reason (:class:`ReadOnly`). The server answers each connection in
its own thread, so an idle or slow client never stops it answering others; :func:`exposed_warning`
is what ``robust-hpo dashboard`` prints when bound beyond this machine.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from numbers import Integral
from typing import Any
import ipaddress
import json
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
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


READ_METHODS = frozenset({"GET", "HEAD"})
"""The HTTP methods a read-only dashboard serves."""


class ReadOnly:
    """WSGI middleware passing only ``GET``/``HEAD`` requests to ``app``; any other method gets
    ``403 Forbidden`` with a JSON ``reason`` (what optuna-dashboard's page shows) and never reaches it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in READ_METHODS:
            return self.app(environ, start_response)
        body = json.dumps({"reason": f"this dashboard is read-only: {method} {environ.get('PATH_INFO', '')} "
                                     "refused (start it with --allow-writes to change studies)"}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def dashboard_app(storage: BaseStorage, *, tolerances: Mapping[str, float] | None = None,
                  allow_writes: bool = False) -> Any:
    """The WSGI application serving ``storage`` (``/api/studies`` lists studies); ``tolerances``:
    the recommendation's accuracy tolerance per study name (default: each study's stored one);
    ``allow_writes``: let requests change the storage (notes, attributes, deleting studies) —
    read-only by default (:class:`ReadOnly`)."""
    app = FeasibleFront(_import_dashboard().wsgi(storage), storage, tolerances=tolerances)
    return app if allow_writes else ReadOnly(app)


def is_local(host: str) -> bool:
    """Whether ``host`` (an address or a name) listens on this machine only (a loopback address)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def exposed_warning(host: str, *, allow_writes: bool) -> str | None:
    """The warning for a dashboard bound to ``host``: None on a loopback address."""
    if not allow_writes and is_local(host):
        return None
    if is_local(host):
        return ("warning: --allow-writes: any program on this machine can change or delete the studies "
                "through the dashboard")
    where = f"--host {host} makes the dashboard reachable from other machines, without authentication"
    if allow_writes:
        return f"warning: {where}, and --allow-writes lets anyone who reaches it change or delete the studies"
    return f"warning: {where} (read-only: anyone who reaches it can read the studies)"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per connection: an idle client never blocks the others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (the dashboard polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


def dashboard_server(storage: BaseStorage, *, host: str = "127.0.0.1", port: int = 8080,
                     tolerances: Mapping[str, float] | None = None, allow_writes: bool = False) -> WSGIServer:
    """A bound (not yet serving), threaded HTTP server for :func:`dashboard_app` (read-only unless
    ``allow_writes``); call ``serve_forever()``.

    A busy or forbidden port, or an unknown host, raises :class:`ValidationError` naming it.
    """
    check("port", port, [Interval(Integral, 0, 65535)], note="0: any free port")
    app = dashboard_app(storage, tolerances=tolerances, allow_writes=allow_writes)
    try:
        return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
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
                    tolerances: Mapping[str, float] | None = None, allow_writes: bool = False) -> None:
    """Serve :func:`dashboard_app` on ``host:port`` until interrupted."""
    server = dashboard_server(storage, host=host, port=port, tolerances=tolerances, allow_writes=allow_writes)
    try:
        server.serve_forever()
    finally:
        server.server_close()
