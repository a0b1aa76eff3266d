"""optuna-dashboard on a study's storage: the WSGI app (for tests and embedding) and a blocking server."""

from __future__ import annotations

from robust_hpo.dashboard._server import dashboard_app, serve_dashboard

__all__ = ["dashboard_app", "serve_dashboard"]
