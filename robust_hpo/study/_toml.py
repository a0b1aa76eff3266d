"""Study files (TOML): strict parsing into the settings of :mod:`robust_hpo.study._settings`.

Sections: ``[study]`` (name, storage, n_trials, timeout, seed, sampler, n_jobs, aggregate, objective, threads),
``[data]`` (dataset, classes, n_train, n_test, seed, root, download, image_size; path and label for
``dataset = "csv"`` / ``"npz"``), ``[attack]``
(trigger, fraction, target, seed and the trigger's own keys, see ``robust_hpo.attacks.TRIGGERS``)
*or* ``[[attacks]]`` (several such tables, each with an optional ``name``), ``[search]`` (learners,
then one ``[search.<learner>]`` table of parameter overrides each), ``[options.<learner>]`` (fixed,
not searched, options of a network family), ``[features]`` (model, weights, batch_size, cache_dir:
pretrained features instead of pixels), ``[constraint]`` (min_accuracy or within_best), ``[report]``
(tolerance). Unknown keys, wrong types and bad ranges raise ``ValidationError("<file>: <key> ...")``;
a missing file raises ``MissingFileError`` naming it. Relative paths inside the file are relative
to its folder.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution

from robust_hpo.errors import MissingFileError, ValidationError
from robust_hpo.learners import get_family
from robust_hpo.objective import AccuracyConstraint
from robust_hpo.search_space import distribution_from_spec
from robust_hpo.study._settings import (
    AttackSettings,
    DataSettings,
    FeatureSettings,
    ReportSettings,
    SearchSettings,
    StudyConfig,
    StudySettings,
    settings_fields,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SECTIONS: dict[str, type] = {"study": StudySettings, "data": DataSettings, "attack": AttackSettings,
                             "attacks": AttackSettings, "search": SearchSettings, "options": dict,
                             "features": FeatureSettings, "constraint": AccuracyConstraint,
                             "report": ReportSettings}
REQUIRED = ("study", "search")


def load_study_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study file; every error names the file and the key.

    ``overrides`` maps dotted keys (``"data.root"``, ``"features.weights"``) to values that replace
    the file's before validation (missing tables are created); relative paths given there are
    relative to the file's folder like the file's own (pass absolute paths for others).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"study file not found: {path}")
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ValidationError(f"{path}: values nested too deeply to read (arrays or inline tables within each "
                              "other thousands of levels deep); a study file needs two or three") from None
    except UnicodeDecodeError as exc:  # TOML files are UTF-8
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ValidationError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
                              "save the study file as UTF-8") from None
    except OSError as exc:
        raise ValidationError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        raw = apply_overrides(raw, overrides or {})
        return parse_study_config(raw, base=path.parent, path=path)
    except ValueError as exc:  # ValidationError, and any ValueError a family's own checks raise
        raise ValidationError(f"{path}: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{path}: values nested too deeply to check") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted key of ``overrides`` set (``"a.b.c"`` -> ``raw[a][b][c]``)."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        parts = dotted.split(".") if isinstance(dotted, str) else []
        if len(parts) < 2 or not all(parts):
            raise ValidationError(f"override key must be 'section.key' (e.g. 'data.root'), got {dotted!r}")
        table = out
        for depth, part in enumerate(parts[:-1]):
            child = table.get(part)
            if child is None:
                child = table[part] = {}
            elif isinstance(child, Mapping):
                child = table[part] = dict(child)
            else:
                raise ValidationError(f"cannot override {dotted!r}: {'.'.join(parts[:depth + 1])} is not a table")
            table = child
        table[parts[-1]] = value
    return out


def parse_study_config(raw: Mapping[str, Any], *, base: Path = Path("."), path: Path | None = None) -> StudyConfig:
    """Validate a parsed TOML mapping (errors name the key, not the file)."""
    for section in raw:
        if section not in SECTIONS:
            raise ValidationError(f"unknown section [{section}]; expected some of {list(SECTIONS)}")
        if section == "attacks":
            if not isinstance(raw[section], list) or not raw[section] or not all(
                    isinstance(t, Mapping) for t in raw[section]):
                raise ValidationError(f"attacks must be an array of tables [[attacks]], got {raw[section]!r}")
        elif not isinstance(raw[section], Mapping):
            raise ValidationError(f"{section} must be a table [{section}], got {raw[section]!r}")
    for section in REQUIRED:
        if section not in raw:
            raise ValidationError(f"missing section [{section}]")
    if "attack" in raw and "attacks" in raw:
        raise ValidationError("give either [attack] (one attack) or [[attacks]] (several), not both")
    study = dict(_known(raw["study"], StudySettings, "study"))
    if "storage" in study and isinstance(study["storage"], str) and "://" not in study["storage"]:
        study["storage"] = str(base / study["storage"])
    data = dict(_known(raw.get("data", {}), DataSettings, "data"))
    if isinstance(data.get("root"), str):
        data["root"] = str(base / Path(data["root"]).expanduser())
    if isinstance(data.get("path"), str) and data["path"]:
        data["path"] = str(base / Path(data["path"]).expanduser())
    if "timeout" in study and isinstance(study["timeout"], int) and not isinstance(study["timeout"], bool):
        study["timeout"] = float(study["timeout"])
    if "attack" in raw and "name" in raw["attack"]:
        raise ValidationError("attack.name applies to [[attacks]] entries only (a single attack needs no name)")
    search = _parse_search(raw["search"])
    features = None
    if "features" in raw:
        table = dict(_known(raw["features"], FeatureSettings, "features"))
        if isinstance(table.get("cache_dir"), str):
            table["cache_dir"] = str(base / Path(table["cache_dir"]).expanduser())
        features = FeatureSettings(**table)
    return StudyConfig(
        study=StudySettings(**study),
        data=DataSettings(**data),
        attacks=_parse_attacks(raw),
        search=search,
        options=_parse_options(raw.get("options", {}), search),
        features=features,
        constraint=_parse_constraint(raw.get("constraint")),
        report=ReportSettings(**_known(raw.get("report", {}), ReportSettings, "report")),
        path=path,
    )


def _parse_attacks(raw: Mapping[str, Any]) -> tuple[AttackSettings, ...]:
    """``[[attacks]]`` (errors say ``attacks[i].<key>``) or the single ``[attack]`` (``attack.<key>``)."""
    if "attacks" in raw:
        return tuple(AttackSettings.from_table(table, where=f"attacks[{i}]")
                     for i, table in enumerate(raw["attacks"]))
    return (AttackSettings.from_table(raw.get("attack", {}), where="attack"),)


def _parse_options(table: Mapping[str, Any], search: SearchSettings) -> dict[str, dict[str, Any]]:
    """``[options.<learner>]``: fixed options of network families (``with_options`` keyword arguments)."""
    options: dict[str, dict[str, Any]] = {}
    if not table:
        return options
    space = search.space()
    for learner, values in table.items():
        if learner not in search.learners:
            raise ValidationError(f"unknown key 'options.{learner}'; expected a table named after one of "
                                  f"search.learners {list(search.learners)}")
        if not isinstance(values, Mapping):
            raise ValidationError(f"options.{learner} must be a table of fixed options, got {values!r}")
        family = get_family(learner)
        if not callable(getattr(family, "with_options", None)):
            raise ValidationError(f"options.{learner}: learner {learner!r} takes no fixed options; set its "
                                  f"parameters in [search.{learner}]")
        keys = getattr(family, "option_keys", None)  # convex families: the estimator's solver options
        if keys is None:
            from robust_hpo.learners.networks import PARAM_KEYS as keys

        for key in values:
            if key not in keys:
                raise ValidationError(f"unknown key 'options.{learner}.{key}'; expected some of "
                                      f"{sorted(keys)}")
            if key in space.learners.get(learner, {}):
                raise ValidationError(f"options.{learner}.{key} is searched; fix it in [search.{learner}] "
                                      f"instead ({key} = <value>)")
        try:
            fixed = family.with_options(**values)
            if callable(getattr(fixed, "configs", None)):
                fixed.configs({})
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"options.{learner}: {exc}") from None
        options[learner] = dict(values)
    return options


def _known(table: Mapping[str, Any], cls: type, section: str) -> dict[str, Any]:
    allowed = settings_fields(cls)
    for key in table:
        if key not in allowed:
            raise ValidationError(f"unknown key '{section}.{key}'; expected some of {allowed}")
    for f in fields(cls):
        if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in table:
            raise ValidationError(f"{section}.{f.name} is required")
    return dict(table)


def _parse_search(table: Mapping[str, Any]) -> SearchSettings:
    if "learners" not in table:
        raise ValidationError("search.learners is required (a list of learner names)")
    learners = table["learners"]
    overrides: dict[str, dict[str, BaseDistribution]] = {}
    defaults: dict[str, dict[str, BaseDistribution]] = {}
    if isinstance(learners, list) and all(isinstance(n, str) for n in learners):
        for name in learners:
            try:
                defaults[name] = get_family(name).search_space()
            except ValidationError as exc:
                raise ValidationError(f"search.learners: {exc}") from None
    for key, value in table.items():
        if key in ("learners", "scale"):
            continue
        if key not in defaults:
            raise ValidationError(f"unknown key 'search.{key}'; expected 'learners', 'scale' or a table named "
                                  f"after one of search.learners {list(defaults)}")
        if not isinstance(value, Mapping):
            raise ValidationError(f"search.{key} must be a table of parameter ranges, got {value!r}")
        overrides[key] = {}
        for param, spec in value.items():
            if param not in defaults[key]:
                raise ValidationError(f"unknown key 'search.{key}.{param}': learner {key!r} has parameters "
                                      f"{sorted(defaults[key])}")
            overrides[key][param] = distribution_from_spec(f"search.{key}.{param}", spec, defaults[key][param])
    return SearchSettings(learners=tuple(learners) if isinstance(learners, list) else learners,
                          overrides=overrides, **({"scale": table["scale"]} if "scale" in table else {}))


def _parse_constraint(table: Mapping[str, Any] | None) -> AccuracyConstraint | None:
    if table is None:
        return None
    values = _known(table, AccuracyConstraint, "constraint")
    try:
        return AccuracyConstraint(**values)
    except ValidationError as exc:
        message = str(exc)
        prefix = "constraint." if message.startswith(("min_accuracy", "within_best")) else "constraint: "
        raise ValidationError(prefix + message) from None
