"""The one way every command finds its study: ``STUDY.toml`` and/or ``--storage``/``--study-name``/``--output``.

* With a study file: the study it names (``[study] name`` and storage, unless ``--study-name`` or
  ``--storage`` say otherwise); the file's problem must be the one stored with the study, section
  by section (else the trials would be analysed on another problem).
* With ``--storage`` alone: the storage's only study (or ``--study-name``), and its problem rebuilt
  from what the study stored (:func:`robust_hpo.study.config_from_problem`): data, every attack,
  features, options, search space, constraint, aggregate and report tolerance. A study scored by
  your own objective (:func:`robust_hpo.objective.score_trial`) has no problem to rebuild
  (``config`` None): ``report`` reads it; the analysis commands need its data, from a study file.

``--data-root`` and ``--set SECTION.KEY=VALUE`` apply to either. ``--output DIR`` is the folder for
the command's files and nothing else: it never changes where the storage is looked up (the default
journal is ``<root>/<study name>/study.log``; see :mod:`robust_hpo.study._location`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from robust_hpo.cli._args import PROG, overrides
from robust_hpo.errors import MissingFileError, StorageError, ValidationError
from robust_hpo.objective import DEFAULT_TOLERANCE, USER_OBJECTIVE_ATTR
from robust_hpo.study import (
    OUTPUT_ROOT,
    OUTPUT_ROOT_ENV,
    PROBLEM_ATTR,
    StorageSpec,
    StudyConfig,
    StudyLocation,
    config_from_problem,
    load_study_config,
    locate,
    locate_storage,
    open_study,
    output_root,
    problem_differences,
    refuse_foreign_study,
    stored_problem,
)


@dataclass(frozen=True)
class ResolvedStudy:
    """An existing study, its location, and its problem as settings (from the file or the storage)."""

    config: StudyConfig | None
    location: StudyLocation
    study: optuna.Study
    from_file: bool

    @property
    def tolerance(self) -> float:
        """The study's ``[report] tolerance`` (the default one when neither file nor study sets it)."""
        return self.config.report.tolerance if self.config is not None else DEFAULT_TOLERANCE


def add_study_arguments(parser: argparse.ArgumentParser, *, file_required: bool = False) -> None:
    """``STUDY.toml`` and the location flags (``--storage``, ``--study-name``, ``--output``)."""
    parser.add_argument("study", metavar="STUDY.toml", type=Path, nargs=None if file_required else "?",
                        help="study file" if file_required else
                        "study file (or give --storage alone: the study's stored problem is used)")
    parser.add_argument("--storage", metavar="URL",
                        help=f"Optuna storage: a journal file path (default: {OUTPUT_ROOT}/<study name>/study.log), "
                             "sqlite:///file.db or postgresql://user:password@host/db")
    parser.add_argument("--study-name", metavar="NAME", help="study name (default: [study] name, or the "
                                                             "storage's only study)")
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help=f"folder for this command's files (figures, tables); it does not move the study "
                             f"storage (default: {OUTPUT_ROOT}/<study name>, with a sub-folder per storage other "
                             f"than the default journal; {OUTPUT_ROOT_ENV} sets another root)")


def uses_study(args: argparse.Namespace) -> bool:
    return getattr(args, "study", None) is not None or getattr(args, "storage", None) is not None


def resolve_study(args: argparse.Namespace) -> ResolvedStudy:
    """The existing study named by ``args`` and its problem (see the module docstring)."""
    if args.study is not None:
        config = load_study_config(args.study, overrides=overrides(args))
        location = locate(config, storage=args.storage, study_name=args.study_name, output=args.output)
        study = open_study(location)
        refuse_foreign_study(study, location, analysis=True)
        stored = study.user_attrs.get(PROBLEM_ATTR)
        if stored is not None:
            differ = problem_differences(stored, stored_problem(config))
            if differ:
                raise StorageError(
                    f"study {location.name!r} ran with different {' and '.join(differ)} than {args.study} says "
                    "now; its trials would be analysed on another problem — restore the file, or pass "
                    "--storage alone to use the problem stored with the study")
        return ResolvedStudy(config=config, location=location, study=study, from_file=True)
    if args.storage is None:
        raise ValidationError("give a study file (STUDY.toml) or --storage")
    location = locate_storage(args.storage, study_name=args.study_name, output=args.output)
    study = open_study(location)
    refuse_foreign_study(study, location, analysis=True)
    stored = study.user_attrs.get(PROBLEM_ATTR)
    if stored is None and isinstance(study.user_attrs.get(USER_OBJECTIVE_ATTR), dict):
        return ResolvedStudy(config=None, location=location, study=study, from_file=False)  # score_trial's study
    if not isinstance(stored, dict):
        raise StorageError(f"study {location.name!r} does not record its problem ({PROBLEM_ATTR!r}) and has no "
                           "trials: nothing to analyse")
    given = overrides(args)
    config = config_from_problem(stored, name=location.name, overrides={**stored_path_overrides(stored, given),
                                                                        **given})
    return ResolvedStudy(config=config, location=location, study=study, from_file=False)


def _inside(path: str | Path, root: Path) -> bool:
    return Path(path).expanduser().absolute().resolve().is_relative_to(root.resolve())


def stored_path_overrides(stored: dict[str, Any], given: dict[str, Any], *,
                          report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Settings that keep a stored problem (from a storage someone may have handed over) from deciding
    where this process writes: no download (it would write into the stored data root), and a features
    cache outside the output root replaced by ``<output root>/features_cache``. Reading data from a
    stored root outside the output root is said on stderr. ``given``: the user's own ``--set`` /
    ``--data-root`` values, which win and silence the notes."""
    say = report or (lambda message: print(f"{PROG}: {message}", file=sys.stderr, flush=True))
    root = output_root()
    location = stored.get("location") if isinstance(stored.get("location"), dict) else {}
    result: dict[str, Any] = {}
    if "data.download" not in given:
        result["data.download"] = False
    data_root = location.get("data_root") or (stored.get("data") or {}).get("root")
    if isinstance(data_root, str) and "data.root" not in given and not _inside(data_root, root):
        say(f"reading the data from {data_root}, the data folder stored with the study (outside the output root "
            f"{root}; nothing is written there); give --data-root DIR to read it elsewhere")
    if stored.get("features") is not None and "features.cache_dir" not in given:
        cache = location.get("features_cache_dir")
        if not (isinstance(cache, str) and _inside(cache, root)):
            result["features.cache_dir"] = str(root / "features_cache")
            if isinstance(cache, str):
                say(f"the features cache folder stored with the study, {cache}, is outside the output root {root}: "
                    f"not used; features are cached in {root / 'features_cache'} (or --set features.cache_dir=DIR)")
    return result


def resolve_storage(args: argparse.Namespace) -> StorageSpec:
    """The storage named by ``args`` (it must exist), without opening a study: for the dashboard,
    which serves every study in it."""
    if args.study is not None:
        spec = locate(load_study_config(args.study, overrides=overrides(args)), storage=args.storage,
                      study_name=args.study_name, output=args.output).storage
    elif args.storage is not None:
        spec = StorageSpec.parse(args.storage, default_journal=Path(args.storage))
    else:
        raise ValidationError("give a study file (STUDY.toml) or --storage")
    if not spec.exists():
        raise MissingFileError(f"no study storage at {spec.journal}; run `robust-hpo run` first")
    return spec
