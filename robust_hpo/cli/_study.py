"""``robust-hpo run | report | dashboard``: create or resume a study, report it, serve its dashboard."""

from __future__ import annotations

import argparse
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
)
from robust_hpo.errors import MissingFileError, ValidationError
from robust_hpo.objective import DEFAULT_TOLERANCE
from robust_hpo.study import (
    OUTPUT_ROOT,
    StorageSpec,
    StudyLocation,
    load_study_config,
    locate,
    locate_storage,
    open_study,
    print_failure,
    report_study,
    run_study,
)


def _add_location_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage: a journal file path (default: OUTPUT/study.log), "
                             "sqlite:///file.db or postgresql://user:password@host/db")
    parser.add_argument("--study-name", metavar="NAME", help="study name (default: [study] name)")
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help=f"output folder (default: {OUTPUT_ROOT}/<study name>)")


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="create or resume a study and optimise it",
        description="Create (or resume) the study described by STUDY.toml, run trials with a progress bar, "
                    "then print the Pareto front and a recommendation and write pareto.html and trials.csv.")
    parser.add_argument("study", metavar="STUDY.toml", type=Path, help="study file")
    _add_location_arguments(parser)
    parser.add_argument("--n-trials", type=positive_int, metavar="N", help="trials to add (default: [study])")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="stop after this long (or after the trial count, whichever comes first)")
    parser.add_argument("--n-jobs", type=n_jobs, metavar="J", help="parallel trials in this process (threads)")
    parser.add_argument("--seed", type=non_negative_int, metavar="S", help="sampler seed (default: [study] seed)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="cap CPU threads: numpy/scipy BLAS pools, and torch when in use (default: [study] threads)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    add_override_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_study_config(args.study, overrides=overrides(args))
    outcome = run_study(config, storage=args.storage, study_name=args.study_name, output=args.output,
                        n_trials=args.n_trials, timeout=args.timeout, n_jobs=args.n_jobs, seed=args.seed,
                        progress=not args.no_progress, on_failure=print_failure, threads=args.threads)
    resumed = f" (resumed: {outcome.n_before} trials before)" if outcome.n_before else ""
    print(f"ran {outcome.n_run} trials in {outcome.wall_seconds:.1f} s{resumed}; storage: "
          f"{outcome.location.storage.describe()}")
    report = report_study(outcome.study, outcome.location.output, tolerance=config.report.tolerance)
    print(report.render())
    print(f"Dashboard:   {PROG} dashboard {args.study}"
          + (f" --storage {args.storage}" if args.storage else "")
          + (f" --output {args.output}" if args.output and not args.storage else "")
          + (f"   (or: optuna-dashboard {outcome.location.storage.dashboard_argument()})"
             if outcome.location.storage.journal is not None else ""))
    return 0


def _existing_location(args: argparse.Namespace) -> tuple[StudyLocation, float | None]:
    """The study named by a study file and/or ``--storage``/``--study-name``; and the file's tolerance."""
    if args.study is not None:
        config = load_study_config(args.study, overrides=overrides(args))
        location = locate(config, storage=args.storage, study_name=args.study_name, output=args.output)
        return location, config.report.tolerance
    if args.storage is None:
        raise ValidationError("give a study file (STUDY.toml) or --storage")
    return locate_storage(args.storage, study_name=args.study_name, output=args.output), None


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", aliases=["pareto"], help="Pareto front and recommendation of an existing study",
        description="Print the Pareto front and the recommendation of an existing study and (re)write its "
                    "pareto.html and trials.csv. Name the study by its file, or by --storage (and "
                    "--study-name when the storage holds several).")
    parser.add_argument("study", metavar="STUDY.toml", type=Path, nargs="?", help="study file")
    _add_location_arguments(parser)
    parser.add_argument("--tolerance", type=fraction, metavar="T",
                        help=f"clean accuracy the recommendation may give up (default: [report] tolerance "
                             f"or {DEFAULT_TOLERANCE})")
    add_override_arguments(parser)
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    location, file_tolerance = _existing_location(args)
    tolerance = args.tolerance if args.tolerance is not None else (
        file_tolerance if file_tolerance is not None else DEFAULT_TOLERANCE)
    study = open_study(location)
    print(report_study(study, location.output, tolerance=tolerance).render())
    return 0


def _add_dashboard(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="launch optuna-dashboard on a study's storage",
        description="Serve optuna-dashboard on the storage of STUDY.toml (or --storage) until Ctrl-C.")
    parser.add_argument("study", metavar="STUDY.toml", type=Path, nargs="?", help="study file")
    _add_location_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=8080, help="port (default: 8080)")
    parser.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from robust_hpo.dashboard import serve_dashboard

    if args.study is None and args.storage is None:
        raise ValidationError("give a study file (STUDY.toml) or --storage")
    if args.study is not None:
        spec = locate(load_study_config(args.study), storage=args.storage, study_name=args.study_name,
                      output=args.output).storage
    else:
        spec = StorageSpec.parse(args.storage, default_journal=Path(args.storage))
    if not spec.exists():
        raise MissingFileError(f"no study storage at {spec.journal}; run `{PROG} run` first")
    print(f"optuna-dashboard on {spec.describe()}: http://{args.host}:{args.port}/ (Ctrl-C to stop)")
    serve_dashboard(spec.open(), host=args.host, port=args.port)
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_run, _add_report, _add_dashboard)
