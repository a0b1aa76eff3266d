"""``robust-hpo run | report | dashboard``: create or resume a study, report it, serve its dashboard."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from robust_hpo.cli._args import (
    PROG,
    add_override_arguments,
    fraction,
    n_jobs,
    non_negative_int,
    overrides,
    positive_float,
    positive_int,
    seed,
)
from robust_hpo.cli._output import check_writable
from robust_hpo.cli._resolve import add_study_arguments, resolve_storage, resolve_study
from robust_hpo.errors import MissingDependencyError, ValidationError
from robust_hpo.objective import DEFAULT_TOLERANCE
from robust_hpo.study import (
    StorageSpec,
    StudySettings,
    load_study_config,
    locate,
    mask_secrets,
    print_failure,
    print_note,
    repair_journal,
    report_study,
    run_study,
)


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="create or resume a study and optimise it",
        description="Create (or resume) the study described by STUDY.toml, run trials with a progress bar, "
                    "then print the Pareto front and a recommendation and write pareto.html and trials.csv.")
    add_study_arguments(parser, file_required=True)
    parser.add_argument("--n-trials", type=positive_int, metavar="N", help="trials to add (default: [study])")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="stop after this long (or after the trial count, whichever comes first)")
    parser.add_argument("--n-jobs", type=n_jobs, metavar="J", help="parallel trials in this process (threads)")
    parser.add_argument("--seed", type=seed, metavar="S", help="sampler seed, 0 to 2**32 - 1 (default: [study] seed)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="cap CPU threads: numpy/scipy BLAS pools, and torch when in use (default: [study] threads)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    crashes = parser.add_argument_group(
        "crashed workers", "RDB storages (sqlite://, postgresql://): a running trial whose worker stops its "
                           "heartbeat for the grace period is failed and its configuration retried; journal "
                           "files: trials of workers gone on this machine are failed and retried")
    crashes.add_argument("--heartbeat-interval", type=positive_int, metavar="SECONDS",
                         help="seconds between a running trial's heartbeats (default: [study] heartbeat_interval, "
                              f"else {StudySettings.heartbeat_interval})")
    crashes.add_argument("--grace-period", type=positive_int, metavar="SECONDS",
                         help="a trial without a heartbeat for this long is failed (default: [study] grace_period, "
                              f"else {StudySettings.grace_period})")
    crashes.add_argument("--max-retry", type=non_negative_int, metavar="N",
                         help="retries of a crashed trial's configuration; 0: none (default: [study] max_retry, "
                              f"else {StudySettings.max_retry})")
    add_override_arguments(parser)
    parser.set_defaults(handler=_run)


_CRASH_KEYS = ("heartbeat_interval", "grace_period", "max_retry")


def _run(args: argparse.Namespace) -> int:
    crash_settings = {f"study.{key}": getattr(args, key) for key in _CRASH_KEYS if getattr(args, key) is not None}
    config = load_study_config(args.study, overrides={**overrides(args), **crash_settings})
    check_writable(locate(config, storage=args.storage, study_name=args.study_name, output=args.output).output)
    outcome = run_study(config, storage=args.storage, study_name=args.study_name, output=args.output,
                        n_trials=args.n_trials, timeout=args.timeout, n_jobs=args.n_jobs, seed=args.seed,
                        progress=not args.no_progress, on_failure=print_failure, threads=args.threads,
                        on_recovery=print_note)
    resumed = f" (resumed: {outcome.n_before} trials before)" if outcome.n_before else ""
    print(f"ran {outcome.n_run} trials in {outcome.wall_seconds:.1f} s{resumed}; storage: "
          f"{outcome.location.storage.describe()}")
    report = report_study(outcome.study, outcome.location.output, tolerance=config.report.tolerance,
                          storage=outcome.location.storage.describe())
    print(report.render())
    print(f"Dashboard:   {PROG} dashboard {args.study}"
          + (f" --storage {mask_secrets(args.storage)}" if args.storage else "")
          + (f"   (or: optuna-dashboard {outcome.location.storage.dashboard_argument()})"
             if outcome.location.storage.journal is not None else ""))
    return 0


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", aliases=["pareto"], help="Pareto front and recommendation of an existing study",
        description="Print the Pareto front and the recommendation of an existing study and (re)write its "
                    "pareto.html and trials.csv. Name the study by its file, or by --storage (and "
                    "--study-name when the storage holds several).")
    add_study_arguments(parser)
    parser.add_argument("--tolerance", type=fraction, metavar="T",
                        help=f"clean accuracy the recommendation may give up (default: the study's [report] "
                             f"tolerance, else {DEFAULT_TOLERANCE})")
    add_override_arguments(parser)
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    resolved = resolve_study(args)
    check_writable(resolved.location.output)
    tolerance = args.tolerance if args.tolerance is not None else resolved.tolerance
    print(report_study(resolved.study, resolved.location.output, tolerance=tolerance,
                       storage=resolved.location.storage.describe()).render())
    return 0


def _add_dashboard(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="launch optuna-dashboard on a study's storage",
        description="Serve optuna-dashboard on the storage of STUDY.toml (or --storage) until Ctrl-C. Its Best "
                    "Trials are the feasible Pareto front (as `report` prints it), each trial has the rows "
                    "'feasible' and 'pareto_front', and the study note starts with the recommendation.")
    add_study_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=non_negative_int, default=8080,
                        help="port (default: 8080; 0: any free port, printed)")
    parser.add_argument("--tolerance", type=fraction, metavar="T",
                        help="clean accuracy the recommendation may give up (default: the study's [report] "
                             f"tolerance, else {DEFAULT_TOLERANCE})")
    parser.add_argument("--allow-writes", action="store_true",
                        help="let the dashboard change the storage (save notes, delete studies...); without it "
                             "the dashboard is read-only (it has no authentication)")
    parser.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    import optuna

    from robust_hpo.dashboard import dashboard_server, exposed_warning

    spec = resolve_storage(args)
    storage = spec.open(create=False)
    tolerances: dict[str, float] = {}
    if args.study is not None or args.tolerance is not None:
        names = optuna.get_all_study_names(storage)
        if args.study is not None:
            config = load_study_config(args.study, overrides=overrides(args))
            tolerances[args.study_name or config.study.name] = config.report.tolerance
        if args.tolerance is not None:
            tolerances = {name: args.tolerance for name in names}
    server = dashboard_server(storage, host=args.host, port=args.port, tolerances=tolerances,
                              allow_writes=args.allow_writes)
    warning = exposed_warning(args.host, allow_writes=args.allow_writes)
    if warning is not None:
        print(f"{PROG}: {warning}", file=sys.stderr, flush=True)
    print(f"optuna-dashboard on {spec.describe()}: http://{args.host}:{server.server_port}/ "
          f"({'writable' if args.allow_writes else 'read-only'}; Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"{PROG}: dashboard stopped", file=sys.stderr)
        return 130
    finally:
        server.server_close()
    return 0


def _add_repair(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair", help="repair a damaged journal file (stop every worker first)",
        description="Repair a journal file that a killed or disk-full write damaged: a full backup copy "
                    "(JOURNAL.<time>.bak, never overwriting another) is kept, a damaged trial creation is rebuilt "
                    "in place (trial numbers hold), a record glued after a torn one is recovered, unreadable, "
                    "duplicated or appended lines and a torn last record are removed, each named with its reason, "
                    "and the result must load in Optuna. An intact journal is left untouched. A torn last record "
                    "alone is repaired by `run` itself.")
    parser.add_argument("journal", metavar="JOURNAL", type=Path, help="the journal file (e.g. OUTPUT/study.log)")
    parser.set_defaults(handler=_repair)


def _repair(args: argparse.Namespace) -> int:
    print(repair_journal(args.journal).describe())
    return 0


def _add_storage_proxy(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "storage-proxy", help="serve an RDB storage to many workers through Optuna's gRPC storage proxy",
        description="Run optuna.storages.run_grpc_proxy_server on --storage (sqlite:/// or postgresql://; "
                    "journal files are not supported by the proxy) until Ctrl-C. Workers then use "
                    "--storage grpc://HOST:PORT: one database connection pool and a trial cache for all of "
                    "them. Needs pip install 'robust_hpo[grpc]'.")
    parser.add_argument("--storage", metavar="URL", required=True, help="the RDB storage to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=13000, help="port (default: 13000)")
    parser.set_defaults(handler=_storage_proxy)


def _storage_proxy(args: argparse.Namespace) -> int:
    import optuna

    spec = StorageSpec.parse(args.storage, default_journal=Path(args.storage))
    if spec.url is None or spec.url.startswith("grpc://"):
        raise ValidationError(f"storage-proxy serves an RDB storage (sqlite:///, postgresql://), not "
                              f"{spec.describe()}")
    try:
        from optuna.storages import run_grpc_proxy_server

        import grpc  # noqa: F401 - the server needs it
    except ImportError as exc:
        raise MissingDependencyError("storage-proxy needs gRPC: pip install 'robust_hpo[grpc]'") from exc
    storage = optuna.storages.get_storage(spec.open())  # Optuna's cached RDB storage, as its docs advise
    print(f"gRPC storage proxy for {spec.describe()} on {args.host}:{args.port}; workers use "
          f"--storage grpc://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            run_grpc_proxy_server(storage, host=args.host, port=args.port)
    except KeyboardInterrupt:
        print(f"{PROG}: storage proxy stopped", file=sys.stderr)
        return 130
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_run, _add_report, _add_dashboard,
                                                                      _add_repair, _add_storage_proxy)
