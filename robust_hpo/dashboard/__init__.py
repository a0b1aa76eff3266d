"""optuna-dashboard on a study's storage whose Best Trials are the feasible Pareto front: the WSGI app
(for tests and embedding), a bound server and a blocking one."""

from __future__ import annotations

from robust_hpo.dashboard._feasible import FEASIBLE_ROW, FRONT_ROW, FeasibleFront, feasibility, strip_generated
from robust_hpo.dashboard._server import ReadOnly, dashboard_app, dashboard_server, exposed_warning, serve_dashboard

__all__ = ["FEASIBLE_ROW", "FRONT_ROW", "FeasibleFront", "ReadOnly", "dashboard_app", "dashboard_server",
           "exposed_warning", "feasibility", "serve_dashboard", "strip_generated"]
