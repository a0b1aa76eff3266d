"""A seeded fuzz of the public API: hostile values for one argument at a time.

Every call either works or raises a :class:`~robust_hpo.errors.RobustHPOError` whose message names
the argument it was given. Nothing else (a numpy/sklearn/pathlib error, an AttributeError, a
TypeError) may escape, and no value may be silently changed (complex numbers losing their
imaginary part).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

import robust_hpo as rh
from robust_hpo.errors import (
    DegenerateSolveError,
    InfluenceSolveError,
    NotConvergedError,
    RobustHPOError,
    SingularHessianError,
)

N_CASES = 400
SOLVE_ERRORS = (SingularHessianError, DegenerateSolveError, NotConvergedError, InfluenceSolveError)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes, int, float, complex)) or value is None


class _Opaque:
    """An object no function accepts."""

    def __repr__(self) -> str:
        return "<opaque>"


def _hostile_values(valid: Any) -> list[Any]:
    """Values of the wrong type, range or shape for an argument whose valid value is ``valid``."""
    common: list[Any] = [None, True, -1, 0, 2**64, 1e308, float("nan"), float("inf"), -float("inf"), "a", "",
                         b"x", [], {}, _Opaque(), rh.BadNets, 1j, [1, "a"], {"x": 1}, (lambda: 0), set()]
    if isinstance(valid, np.ndarray):
        n = valid.shape[0]
        common += [
            valid.astype(np.complex128) + 1j,                    # complex: must not lose the imaginary part
            valid.astype(str),                                   # strings
            valid.astype(object),                                # objects
            valid[:, :0] if valid.ndim == 2 else valid[:0],      # zero features / no labels
            valid[:0],                                           # no rows
            valid[..., None],                                    # one dimension too many
            valid.reshape(-1)[:3] if valid.ndim > 1 else valid[:, None],
            np.full_like(valid, np.nan, dtype=np.float64),
            valid[: max(n - 1, 0)],                              # one row short
            np.array(["cat"] * n, dtype=object),
            valid.tolist(),
        ]
    return common


def _problem() -> dict[str, Any]:
    ds = rh.load_dataset("digits", classes=[3, 8], n_train=60, n_test=30)
    split = rh.poison(ds, rh.BadNets(size=2), fraction=0.1)
    X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger = split.flat()
    return {"ds": ds, "split": split, "arrays": dict(X_clean=X_clean, y_clean=y_clean, X_poison=X_poison,
                                                     y_poison=y_poison, X_trigger=X_trigger, y_trigger=y_trigger)}


def _targets(p: dict[str, Any]) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """name -> (function, its valid keyword arguments); the fuzz replaces one of them at a time."""
    arrays = p["arrays"]
    return {
        "load_dataset": (rh.load_dataset, dict(name="digits", classes=[3, 8], n_train=20, n_test=10, seed=0,
                                               root=None, image_size=None)),
        "poison": (rh.poison, dict(dataset=p["ds"], trigger=rh.BadNets(), fraction=0.1, target="next", seed=0)),
        "BadNets": (rh.BadNets, dict(size=3, position="bottom-right", seed=0)),
        "InvisibleGrid": (rh.InvisibleGrid, dict(epsilon=0.02, spacing=4, seed=0)),
        "ThreatModel": (rh.ThreatModel, dict(trigger=rh.BadNets(), fraction=0.1, name="a")),
        "backdoor_slope": (rh.backdoor_slope, dict(estimator=LogisticRegression(), **arrays, damping=0.0)),
        "slope_model": (rh.slope_model, dict(estimator=SVC(kernel="linear"), damping=0.0)),
        "AccuracyConstraint": (rh.AccuracyConstraint, dict(min_accuracy=0.5)),
        "target_labels": (rh.target_labels, dict(y=p["ds"].y_test, classes=p["ds"].classes, policy="next")),
        "get_family": (rh.get_family, dict(name="logistic")),
        "aggregate_slopes": (rh.aggregate_slopes, dict(results={}, how="max")),
        "backdoor_curve": (rh.backdoor_curve, dict(estimator=RidgeClassifier(), split=p["split"],
                                                   betas=[0.0, 0.1], label="x")),
        "parameter_deviation": (rh.parameter_deviation, dict(estimator=RidgeClassifier(), split=p["split"],
                                                             betas=[0.0, 0.1], label="x")),
        "influential_points": (rh.influential_points, dict(estimator=LogisticRegression(), split=p["split"],
                                                           index=0, k=3)),
        "GramCache": (rh.GramCache, dict(max_entries=2, max_primal_features=4096)),
    }


def _call(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    positional = {"load_dataset": ["name"], "poison": ["dataset", "trigger"], "backdoor_slope": [
        "estimator", "X_clean", "y_clean", "X_poison", "y_poison", "X_trigger", "y_trigger"],
        "slope_model": ["estimator"], "target_labels": ["y", "classes", "policy"], "get_family": ["name"],
        "aggregate_slopes": ["results", "how"], "backdoor_curve": ["estimator", "split"],
        "parameter_deviation": ["estimator", "split"], "influential_points": ["estimator", "split"]}
    names = positional.get(func.__name__, [])
    args = [kwargs[n] for n in names]
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return func(*args, **rest)


def _cases(seed: int, n: int) -> list[tuple[str, str, int]]:
    """``n`` distinct (function, argument, hostile value index) triples, drawn from all of them."""
    p = _problem()
    everything = []
    for name, (_, valid) in sorted(_targets(p).items()):
        for arg in sorted(valid):
            everything += [(name, arg, k) for k in range(len(_hostile_values(valid[arg])))]
    return random.Random(seed).sample(everything, min(n, len(everything)))


@pytest.fixture(scope="module")
def problem() -> dict[str, Any]:
    return _problem()


def _check_one(problem: dict[str, Any], name: str, arg: str, k: int) -> str | None:
    """None when the call behaved; else what went wrong, in words."""
    func, valid = _targets(problem)[name]
    value = _hostile_values(valid[arg])[k]
    kwargs = dict(valid, **{arg: value})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = _call(func, kwargs)
        except SOLVE_ERRORS:
            return None  # a valid input the slope is not defined at (e.g. a huge damping): not an input error
        except RobustHPOError as exc:
            if arg not in str(exc) and not (_is_scalar(value) and repr(value) in str(exc)):
                return f"{name}({arg}={value!r:.60}): message names neither {arg!r} nor the value: {exc}"
            return None
        except Exception as exc:  # noqa: BLE001 - the point of the test
            return f"{name}({arg}={value!r:.60}): {type(exc).__name__}: {str(exc)[:200]}"
    if np.iscomplexobj(value) and not isinstance(value, complex):
        return f"{name}({arg}=complex array): accepted; the imaginary part was dropped"
    del result
    return None


def test_public_api_errors_name_the_argument(problem: dict[str, Any]) -> None:
    failures = [f for f in (_check_one(problem, *case) for case in _cases(seed=0, n=N_CASES)) if f]
    assert not failures, f"{len(failures)} of {N_CASES} calls misbehaved:\n" + "\n".join(sorted(set(failures)))
