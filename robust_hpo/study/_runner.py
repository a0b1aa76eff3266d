"""From a study config to an Optuna study: data, attack, objective, sampler, storage; create or resume; run.

Seeds: ``[data] seed`` drives the data subsample and every learner fit, ``[attack] seed`` the poison
choice and trigger pattern (both are part of the problem, stored with the study), and the sampler
draws each trial with ``[study] seed`` (or ``--seed``) mixed with the trial's number
(:mod:`robust_hpo.study._sampling`): concurrent workers propose distinct configurations, a resumed run
does not replay earlier suggestions, and one worker from scratch is bit-reproducible.

Crashes: each trial records its owner; RDB storages run Optuna's heartbeat (``[study]
heartbeat_interval``, ``grace_period``, ``max_retry``), other storages fail and retry the trials of
workers gone on this machine before and during the run (:mod:`robust_hpo.study._orphans`).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from robust_hpo import __version__
from robust_hpo._validation import check, check_params
from robust_hpo.attacks import PoisonedSplit, poison_many
from robust_hpo.datasets import Dataset, load_dataset
from robust_hpo.errors import MissingFileError, RobustHPOError, StorageError, ValidationError, requires_torch
from robust_hpo.objective import (FAIL_EXCEPTIONS, USER_OBJECTIVE_ATTR, BackdoorSlopeObjective, check_shortlist,
                                  trial_record)
from robust_hpo.study._features import featurize_splits
from robust_hpo.study._location import StudyLocation, locate
from robust_hpo.study._orphans import recover_orphans, with_owner
from robust_hpo.study._problem import (
    PROBLEM_ATTR,
    content_differences,
    data_fingerprint,
    problem_differences,
    stored_problem,
)
from robust_hpo.study._sampling import build_sampler
from robust_hpo.study._settings import StudyConfig, StudySettings
from robust_hpo.study._storage import Heartbeat

def load_data(config: StudyConfig) -> Dataset:
    """The clean dataset ``[data]`` describes; errors name the file and section."""
    where = f"{config.path}: " if config.path is not None else ""
    try:
        dataset = load_dataset(config.data.dataset, **config.data.load_kwargs())
    except (RobustHPOError, ValueError, FileNotFoundError) as exc:
        raise _with_prefix(exc, f"{where}[data] ") from None
    binary = config.binary_learners()
    if binary and len(dataset.classes) != 2:  # classes not given: the dataset's own count
        raise ValidationError(
            f"{where}data.classes must name two classes for the learners {binary} (their exact slope is "
            f"binary only): {config.data.dataset!r} has {len(dataset.classes)} classes; name a pair, e.g. "
            f"classes = {list(dataset.classes[:2])}")
    return dataset


def check_output_folder(folder: str | Path) -> None:
    """:class:`ValidationError` when the output folder cannot be created or written (a file in the
    way, no write permission, a read-only file system); creates nothing."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ValidationError(f"output folder {folder} cannot be created: {existing} is not a folder; "
                              "choose another with --output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValidationError(f"output folder {folder} is not writable ({existing} does not allow writing); "
                              "choose another with --output")


def build_splits(config: StudyConfig, *, progress: bool = False, dataset: Dataset | None = None
                 ) -> dict[str, PoisonedSplit]:
    """Load ``[data]`` (unless ``dataset`` is given), poison it as the attacks say, and with
    ``[features]`` replace the (triggered) images by their features; errors name the file and section.

    :func:`robust_hpo.attacks.poison_many` on one shared clean set, keyed by attack name (for a single
    attack: in-place poisoning); the poison candidates are drawn with the first attack's ``seed``
    (each trigger uses its own).
    """
    where = f"{config.path}: " if config.path is not None else ""
    section = "[[attacks]]" if len(config.attacks) > 1 else "[attack]"
    if dataset is None:
        dataset = load_data(config)
    try:
        threats = [attack.threat_model() for attack in config.attacks]
        first = config.attacks[0]
        splits = dict(poison_many(dataset, threats, target=first.target, seed=first.seed).splits)
    except ValueError as exc:
        raise ValidationError(f"{where}{section} {exc}") from None
    if config.features is None:
        return splits
    try:
        return featurize_splits(splits, config.features, progress=progress)
    except ValueError as exc:
        raise ValidationError(f"{where}[features] {exc}") from None


def check_data_content(study: optuna.Study, dataset: Dataset) -> None:
    """Refuse ``dataset`` when the study recorded other data (:func:`data_fingerprint`); the error
    names the arrays that differ. Studies without a recorded content are not checked."""
    stored = study.user_attrs.get(PROBLEM_ATTR)
    recorded = stored.get("content") if isinstance(stored, dict) else None
    differ = content_differences(recorded, data_fingerprint(dataset))
    if differ:
        raise StorageError(f"study {study.study_name!r} was created with other data ({'; '.join(differ)}); "
                           "point --data-root at the data it ran on")


def _with_prefix(exc: BaseException, prefix: str) -> BaseException:
    """``exc`` as a library error of its kind with ``prefix`` before its message."""
    if isinstance(exc, RobustHPOError):
        return type(exc)(f"{prefix}{exc}")
    if isinstance(exc, FileNotFoundError):
        return MissingFileError(f"{prefix}{exc}")
    return ValidationError(f"{prefix}{exc}")


def build_split(config: StudyConfig, attack: str | None = None) -> PoisonedSplit:
    """One attack's split (``attack`` = its name; default the first attack)."""
    splits = build_splits(config)
    if attack is None:
        return next(iter(splits.values()))
    if attack not in splits:
        raise ValidationError(f"attack must be one of {list(splits)}, got {attack!r}")
    return splits[attack]


def build_objective(config: StudyConfig, split: PoisonedSplit | dict[str, PoisonedSplit] | None = None, *,
                    progress: bool = False) -> BackdoorSlopeObjective:
    """The objective for ``config`` (building the splits if not given); learner fits use ``[data] seed``,
    families carry their ``[options.<learner>]``, attacks combine as ``[study] aggregate``, and the
    second objective is ``[study] objective``."""
    splits = split if split is not None else build_splits(config, progress=progress)
    return BackdoorSlopeObjective(splits, space=config.search.space(), families=config.families(),
                                  constraint=config.constraint, seed=config.data.seed,
                                  aggregate=config.study.aggregate, objective=config.study.objective)


def set_threads(threads: int | None, config: StudyConfig) -> bool:
    """Cap the process's CPU threads at ``threads`` (None: leave every pool as it is).

    The BLAS/OpenMP pools of numpy and scipy (each ships an OpenBLAS) are capped through
    threadpoolctl; torch's intra-op pool with ``torch.set_num_threads`` when torch is in use
    (already imported, or needed by ``[features]``) — a convex-only study never imports torch for
    it. Returns whether torch's count was set. Small problems run fastest on one thread: on the
    2-core development machine, scikit-learn's lbfgs logistic fit on MNIST 7-1 (1350 × 784) took
    ~12 ms with one BLAS thread and ~100-170 ms with two (docs/benchmarks.md).
    """
    if threads is None:
        return False
    check("threads", threads, StudySettings.constraints["threads"])
    threadpool_limits(limits=threads)
    if "torch" not in sys.modules and config.features is None:
        return False
    with requires_torch("[features] (pretrained network features)"):
        import torch

    torch.set_num_threads(threads)
    return True


def open_study(location: StudyLocation, *, objective: BackdoorSlopeObjective | None = None,
               problem: dict[str, Any] | None = None, sampler: BaseSampler | None = None,
               heartbeat: Heartbeat | None = None) -> optuna.Study:
    """Create or resume the study (``objective`` given), or load an existing one (``objective`` None:
    nothing is created). ``heartbeat`` applies to RDB storages.

    Resuming checks the stored directions and ``problem``; a mismatch raises :class:`StorageError`.
    """
    if objective is None and not location.storage.exists():
        raise MissingFileError(f"no study storage at {location.storage.journal}; run `robust-hpo run` first "
                                "or pass --storage")
    storage = location.storage.open(create=objective is not None, heartbeat=heartbeat)
    if objective is None:
        names = optuna.get_all_study_names(storage)
        if location.name not in names:
            raise ValidationError(f"no study named {location.name!r} in {location.storage.describe()}; "
                             f"it holds {names or 'no studies'}")
        return optuna.load_study(study_name=location.name, storage=storage, sampler=sampler)
    if location.name in optuna.get_all_study_names(storage):  # resuming: loading writes nothing
        study = optuna.load_study(study_name=location.name, storage=storage, sampler=sampler)
    else:  # load_if_exists: another worker may create it meanwhile
        study = optuna.create_study(storage=storage, study_name=location.name,
                                    directions=list(objective.directions), sampler=sampler, load_if_exists=True)
    if list(study.directions) != list(objective.directions):
        raise ValidationError(f"study {location.name!r} in {location.storage.describe()} has directions "
                         f"{[d.name for d in study.directions]}, not (MAXIMIZE, MINIMIZE); choose another name")
    if problem is not None:
        refuse_foreign_study(study, location)  # before anything is written to it
        stored = study.user_attrs.get(PROBLEM_ATTR)
        if stored is None:
            study.set_user_attr(PROBLEM_ATTR, problem)
            study.set_user_attr("robust_hpo:version", __version__)
        else:
            differ = problem_differences(stored, problem)
            if differ:
                root = (problem.get("location") or {}).get("data_root")
                hint = (f"; the data loaded{f' from {root}' if root else ''} are not the data the study was "
                        "created with" if any(d.startswith("[data] contents") for d in differ) else "")
                raise StorageError(f"study {location.name!r} in {location.storage.describe()} was created for a "
                                   f"different problem ({', '.join(differ)} differ{hint}); use another "
                                   "--study-name or the original study file and data")
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(list(objective.metric_names))
    return study


def refuse_foreign_study(study: optuna.Study, location: StudyLocation, *, analysis: bool = False) -> None:
    """:class:`StorageError` when ``study`` was not created by robust_hpo: it has trials or attributes
    but no robust_hpo problem (``PROBLEM_ATTR``), or one that is not a problem. Its trials are not
    robust_hpo's, so none is added to it and none is recommended. An empty study without attributes
    passes (robust_hpo creates the study, then records its problem, before its first trial). With
    ``analysis=True`` (reading, not adding trials) a study scored by your own objective
    (:func:`robust_hpo.objective.score_trial`, attribute ``USER_OBJECTIVE_ATTR``) passes too.
    """
    n_trials = len(study.get_trials(deepcopy=False))  # before the attributes: a worker records its problem first
    attrs = study.user_attrs  # one read (each access asks the storage, and another worker may write meanwhile)
    stored = attrs.get(PROBLEM_ATTR)
    if isinstance(stored, dict) or (stored is None and not n_trials and not attrs):
        return
    if analysis and stored is None and isinstance(attrs.get(USER_OBJECTIVE_ATTR), dict):
        return
    why = (f"its {PROBLEM_ATTR!r} attribute is not a robust_hpo problem" if stored is not None else
           f"it has no {PROBLEM_ATTR!r} attribute" + (f", only {sorted(attrs)}" if attrs else ""))
    raise StorageError(f"study {location.name!r} in {location.storage.describe()} was not created by robust_hpo "
                       f"({why}; it holds {n_trials} trials): robust-hpo neither adds trials to it nor recommends "
                       "one of them. Choose another name (--study-name) or storage")


@dataclass(frozen=True)
class RunOutcome:
    """What ``run_study`` did: the study, how many trials this process ran and how long it took.

    ``n_before``/``n_after`` count the study's trials before and after; with concurrent workers on the
    same storage ``n_after - n_before`` can exceed ``n_run``.
    """

    study: optuna.Study
    location: StudyLocation
    n_before: int
    n_run: int
    n_after: int
    wall_seconds: float
    sampler_seed: int
    recovered: tuple[tuple[int, int | None], ...] = ()


def run_study(config: StudyConfig, *, storage: str | None = None, study_name: str | None = None,
              output: str | Path | None = None, n_trials: int | None = None, timeout: float | None = None,
              n_jobs: int | None = None, seed: int | None = None, progress: bool = True,
              on_failure: Callable[[FrozenTrial], None] | None = None, threads: int | None = None,
              heartbeat: Heartbeat | None = None, on_recovery: Callable[[str], None] | None = None
              ) -> RunOutcome:
    """Validate everything, create or resume the study, and optimise it.

    ``None`` arguments fall back to the study file; with both a trial count and a timeout the run
    stops at whichever comes first (Optuna's rule). Trials failing with one of ``FAIL_EXCEPTIONS``
    are recorded as FAILED (``fail_reason`` in the trial's record) and the study continues; ``on_failure`` is
    called with each. Optuna's own per-trial log lines are silenced during the run. ``threads``
    (default ``[study] threads``) sets torch's intra-op threads when torch is in use. ``heartbeat``
    (default: ``[study]``'s settings) applies to RDB storages; on the others, trials left RUNNING by
    workers gone on this machine are failed and retried (``max_retry``) before and during the run,
    each reported to ``on_recovery``.
    """
    n_trials = config.study.n_trials if n_trials is None else n_trials
    timeout = config.study.timeout if timeout is None else timeout
    n_jobs = config.study.n_jobs if n_jobs is None else n_jobs
    seed = config.study.seed if seed is None else seed
    check_params({"n_trials": n_trials, "timeout": timeout, "n_jobs": n_jobs, "seed": seed},
                 StudySettings.constraints)
    heartbeat = config.study.heartbeat() if heartbeat is None else heartbeat
    location = locate(config, storage=storage, study_name=study_name, output=output)
    location.storage.check()  # a journal path holding something else is refused before anything is loaded
    check_output_folder(location.output)
    set_threads(config.study.threads if threads is None else threads, config)
    # data, attack and search space are checked before any storage
    dataset = load_data(config)
    objective = build_objective(config, build_splits(config, progress=progress, dataset=dataset))
    problem = stored_problem(config, content=data_fingerprint(dataset))
    finished: list[int] = []
    recovered: list[tuple[int, int | None]] = []
    callbacks = [_counting_callback(finished, on_failure)]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = open_study(location, objective=objective, problem=problem, heartbeat=heartbeat)
        recover = _orphan_recovery(heartbeat, on_recovery)
        recovered += recover(study)
        callbacks.append(lambda study, trial: recovered.extend(recover(study)))
        n_before = len(study.get_trials(deepcopy=False))
        study.sampler = build_sampler(config.study.sampler, seed)
        start = time.perf_counter()
        try:
            study.optimize(with_owner(objective), n_trials=n_trials, timeout=timeout, n_jobs=n_jobs,
                           catch=FAIL_EXCEPTIONS, callbacks=callbacks, show_progress_bar=progress)
        except (OSError, AssertionError) as exc:
            raise _storage_failure(exc, location) from None
        check_shortlist(study, objective, config.report.tolerance)  # networks: the first candidates on poison
        wall = time.perf_counter() - start
    finally:
        optuna.logging.set_verbosity(verbosity)
    return RunOutcome(study=study, location=location, n_before=n_before, n_run=len(finished),
                      n_after=len(study.get_trials(deepcopy=False)), wall_seconds=wall, sampler_seed=seed,
                      recovered=tuple(recovered))


def _storage_failure(exc: BaseException, location: StudyLocation) -> BaseException:
    """The storage error behind ``exc``: Optuna turns a failed final write of a trial into
    ``AssertionError: Should not reach.`` (its ``_run_trial`` finds the trial still RUNNING); the
    :class:`StorageError` (or ``OSError``) it hides names the storage. Other errors are returned as is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StorageError):
            return seen
        if isinstance(seen, OSError):
            return StorageError(f"storage {location.storage.describe()}: {seen.strerror or seen}")
        seen = seen.__cause__ or seen.__context__
    return exc


def _counting_callback(finished: list[int], on_failure: Callable[[FrozenTrial], None] | None
                       ) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Records the numbers of the trials this process ran; reports each failed one."""
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        finished.append(trial.number)
        if trial.state == TrialState.FAIL and on_failure is not None:
            on_failure(trial)
    return callback


def _orphan_recovery(heartbeat: Heartbeat, report: Callable[[str], None] | None
                     ) -> Callable[[optuna.Study], list[tuple[int, int | None]]]:
    """Fail and retry the trials of dead workers (before the run and after each trial): Optuna's
    heartbeat check first where the storage has one, then the owner rule of :func:`recover_orphans`
    (on heartbeat storages only for trials RUNNING longer than twice the grace period: those whose
    worker died before its first heartbeat)."""
    def recover(study: optuna.Study) -> list[tuple[int, int | None]]:
        min_running = 0.0
        if is_heartbeat_enabled(study._storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            min_running = 2.0 * heartbeat.grace_period
        return recover_orphans(study, max_retry=heartbeat.max_retry, grace_period=heartbeat.grace_period,
                               min_running=min_running, report=report)
    return recover


def print_note(message: str) -> None:
    """One line on stderr (through tqdm so a progress bar stays intact)."""
    from tqdm import tqdm

    tqdm.write(f"robust-hpo: {message}", file=sys.stderr)


def print_failure(trial: FrozenTrial) -> None:
    """One line on stderr per failed trial (through tqdm so a progress bar stays intact)."""
    from tqdm import tqdm

    reason = trial_record(trial).fail_reason or "no reason recorded"
    tqdm.write(f"trial {trial.number} failed: {reason}", file=sys.stderr)
