"""The problem a study solves, stored with it as JSON: lossless, so ``--storage`` alone rebuilds it.

:func:`stored_problem` turns a :class:`StudyConfig` into the JSON-ready dict kept in the study user
attribute :data:`PROBLEM_ATTR`; :func:`config_from_problem` reads it back through the study-file
parser itself (the stored form is the study file's tables), so
``config_from_problem(stored_problem(c))`` has the same data, attacks, features, options, search
space, constraint, aggregate, objective and report tolerance as ``c``. :func:`problem_differences` names the
sections in which two problems differ (resuming, or analysing with an edited study file, is refused
then).

Format 3 (this version)::

    {"format": 3,
     "data": {dataset, classes, n_train, n_test, seed, download, image_size},   # which data
     "content": {x_train, y_train, x_test, y_test: {shape, dtype, sha256}} | null,  # what the data are
     "location": {"data_root", ["data_path"], "features_cache_dir", "features_batch_size"},  # where / how
     "attacks": [{trigger, fraction, target, seed, <trigger parameters>, [name]}, ...],
     "aggregate": "max" | "mean",
     "objective": "slope" | "predicted_backdoor_accuracy" | "normalised_margin",   # absent: "slope"
     "search": {learner: {param: optuna distribution JSON}},
     "options": {learner: {option: value}},
     ["scale": "standard"],                                # [search] scale, absent for "none"
     "features": {model, weights} | null,
     "constraint": {min_accuracy | within_best} | null,
     "report": {tolerance}}

The data are identified by what they are, not where they lie: ``content`` holds a SHA-256 of each
loaded array (:func:`data_fingerprint`, after class selection and subsampling), and ``location`` is
not part of the problem (:data:`IDENTITY`). A worker on another machine with a byte-identical copy at
another path runs the same study; the same path holding other data is refused, naming the arrays that
differ. Content is compared only when both sides have it (a study file alone, without loading the
data, has none). Formats 2 (no ``content``) and 1 (version 0.1: a single ``attack`` table, ``root``
inside ``data``, no format) are read too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from robust_hpo.errors import StorageError, ValidationError
from robust_hpo.study._settings import StudyConfig
from robust_hpo.study._toml import apply_overrides, parse_study_config

PROBLEM_ATTR = "robust_hpo:problem"
"""Study user attribute holding the stored problem."""

PROBLEM_FORMAT = 3
_READABLE_FORMATS = (2, 3)

IDENTITY: dict[str, str] = {
    "data": "[data]",
    "attacks": "[[attacks]]",
    "aggregate": "[study] aggregate",
    "objective": "[study] objective",
    "search": "[search]",
    "options": "[options]",
    "features": "[features]",
    "constraint": "[constraint]",
}
"""The parts of a stored problem that define it (and how study files name them), besides the data's
``content``; the rest (where the data lie, where the features are cached, the report tolerance) may
change between runs and machines."""

_ARRAYS = {"x_train": ("X_train", "training images"), "y_train": ("y_train", "training labels"),
           "x_test": ("X_test", "test images"), "y_test": ("y_test", "test labels")}


def data_fingerprint(dataset: Any) -> dict[str, dict[str, Any]]:
    """What the loaded data are: shape, dtype and SHA-256 (of the little-endian C-order bytes) of
    ``X_train``, ``y_train``, ``X_test`` and ``y_test`` of a :class:`~robust_hpo.datasets.Dataset`."""
    out: dict[str, dict[str, Any]] = {}
    for key, (attribute, _) in _ARRAYS.items():
        array = np.asarray(getattr(dataset, attribute))
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        out[key] = {"shape": list(array.shape), "dtype": array.dtype.name,
                    "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    return out


def content_differences(stored: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> list[str]:
    """How two :func:`data_fingerprint` results differ, one phrase per array ("test images: shape
    (100, 1, 8, 8) here, (90, 1, 8, 8) stored"); empty when either is missing or they agree."""
    if not isinstance(stored, Mapping) or not isinstance(current, Mapping):
        return []
    phrases = []
    for key, (_, label) in _ARRAYS.items():
        a, b = stored.get(key), current.get(key)
        if not isinstance(a, Mapping) or not isinstance(b, Mapping) or a == b:
            continue
        if a.get("shape") != b.get("shape"):
            phrases.append(f"{label}: shape {tuple(b.get('shape') or ())} here, {tuple(a.get('shape') or ())} stored")
        elif a.get("dtype") != b.get("dtype"):
            phrases.append(f"{label}: dtype {b.get('dtype')} here, {a.get('dtype')} stored")
        else:
            phrases.append(f"{label}: other values (sha256 {str(b.get('sha256'))[:12]}… here, "
                           f"{str(a.get('sha256'))[:12]}… stored)")
    return phrases


def stored_problem(config: StudyConfig, *, content: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready problem of ``config`` (see the module docstring); ``content`` is the
    :func:`data_fingerprint` of its loaded data, when known."""
    data = {"dataset": config.data.dataset,
            "classes": list(config.data.classes) if config.data.classes is not None else None,
            "n_train": config.data.n_train, "n_test": config.data.n_test, "seed": config.data.seed,
            "download": config.data.download, "image_size": config.data.image_size}
    if config.data.label is not None:
        data["label"] = config.data.label
    if config.data.standardize:
        data["standardize"] = True
    features = config.features
    problem: dict[str, Any] = {
        "format": PROBLEM_FORMAT,
        "data": data,
        "content": dict(content) if content is not None else None,
        "location": {"data_root": config.data.root, **({"data_path": config.data.path} if config.data.path else {}),
                     "features_cache_dir": features.cache_dir if features is not None else None,
                     "features_batch_size": features.batch_size if features is not None else None},
        "attacks": [attack.table() for attack in config.attacks],
        "aggregate": config.study.aggregate,
        "objective": config.study.objective,
        "search": {learner: {p: distribution_to_json(d) for p, d in params.items()}
                   for learner, params in config.search.space().learners.items()},
        "options": {k: dict(v) for k, v in config.options.items() if v},
        **({"scale": config.search.scale} if config.search.scale != "none" else {}),
        "features": features.describe() if features is not None else None,
        "constraint": config.constraint.to_dict() if config.constraint is not None else None,
        "report": {"tolerance": config.report.tolerance},
    }
    return json.loads(json.dumps(problem))


def upgrade(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored problem in the current format (version 0.1's is converted; nothing is lost)."""
    if not isinstance(stored, Mapping):
        raise StorageError(f"the stored problem must be a JSON object, got {type(stored).__name__}")
    if stored.get("format") in _READABLE_FORMATS:
        return {**stored, "format": PROBLEM_FORMAT, "content": stored.get("content")}
    if "format" in stored:
        raise StorageError(f"the stored problem has format {stored['format']!r}; this version of robust_hpo "
                           f"reads formats 1 (version 0.1) to {PROBLEM_FORMAT}")
    data = dict(stored.get("data", {}))
    root = data.pop("root", None)
    if "attacks" in stored:
        attacks = [_without_none(a) for a in stored["attacks"]]
    else:
        attacks = [_without_none(stored.get("attack", {}))]
    features = stored.get("features")
    return {
        "format": PROBLEM_FORMAT,
        "data": data,
        "content": None,
        "location": {"data_root": root, "features_cache_dir": None,
                     "features_batch_size": None},
        "attacks": attacks,
        "aggregate": stored.get("aggregate", "max"),
        "objective": "slope",
        "search": stored.get("search", {}),
        "options": stored.get("options", {}),
        "features": features,
        "constraint": stored.get("constraint"),
        "report": {},
    }


def canonical(stored: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` upgraded and passed through the parser (defaults filled in): comparable with ``==``."""
    return stored_problem(config_from_problem(stored, name="canonical"), content=upgrade(stored)["content"])


def config_from_problem(stored: Mapping[str, Any], *, name: str,
                        overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """The :class:`StudyConfig` of a stored problem (study ``name``), with ``overrides`` (dotted keys,
    as ``load_study_config`` takes them) applied first; errors are ``StorageError`` naming the study."""
    try:
        problem = upgrade(stored)
        raw = apply_overrides(_study_file(problem, name), overrides or {})
        return parse_study_config(raw)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"study {name!r}: its stored problem is not readable ({exc}); pass its STUDY.toml") \
            from None


def problem_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The study-file names of the parts (:data:`IDENTITY`) in which two stored problems differ, and
    ``[data] contents (...)`` naming the arrays that differ when both record their content (and the
    ``[data]`` settings agree: other settings load other data anyway)."""
    a, b = canonical(stored), canonical(current)
    single = len(a["attacks"]) == len(b["attacks"]) == 1
    differ = [("[attack]" if single and key == "attacks" else label)
              for key, label in IDENTITY.items() if _part(a, key) != _part(b, key)]
    content = content_differences(a["content"], b["content"]) if "[data]" not in differ else []
    if content:  # the same [data] settings, other data
        differ.append(f"[data] contents ({'; '.join(content)})")
    return differ


def _part(problem: Mapping[str, Any], dotted: str) -> Any:
    value: Any = problem
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _study_file(problem: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The study-file tables of a (current-format) stored problem."""
    location = problem.get("location", {})
    raw: dict[str, Any] = {
        "study": {"name": name, "aggregate": problem.get("aggregate", "max"),
                  "objective": problem.get("objective", "slope")},
        "data": _without_none({**problem["data"], "root": location.get("data_root"),
                               "path": location.get("data_path")}),
        "attacks": [dict(a) for a in problem["attacks"]],
        "search": {"learners": list(problem["search"])},
    }
    for learner, params in problem["search"].items():
        raw["search"][learner] = {p: _spec(json_to_distribution(d)) for p, d in params.items()}
    if problem.get("options"):
        raw["options"] = {k: dict(v) for k, v in problem["options"].items()}
    if problem.get("scale"):
        raw["search"]["scale"] = problem["scale"]
    if problem.get("features") is not None:
        raw["features"] = _without_none({**problem["features"], "cache_dir": location.get("features_cache_dir"),
                                         "batch_size": location.get("features_batch_size")})
    if problem.get("constraint") is not None:
        raw["constraint"] = dict(problem["constraint"])
    if problem.get("report"):
        raw["report"] = dict(problem["report"])
    return raw


def _spec(dist: BaseDistribution) -> Any:
    """The study-file form of a distribution (the inverse of ``distribution_from_spec``)."""
    if isinstance(dist, CategoricalDistribution):
        return {"choices": list(dist.choices)}
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        if dist.low == dist.high:
            return dist.low
        kind = "int" if isinstance(dist, IntDistribution) else "float"
        spec: dict[str, Any] = {"type": kind, "low": dist.low, "high": dist.high, "log": dist.log}
        if dist.step is not None and not (kind == "int" and dist.step == 1):
            spec["step"] = dist.step
        return spec
    raise ValidationError(f"unsupported distribution {type(dist).__name__} in the stored search space")


def _without_none(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if v is not None}
