"""SGD hinge at K ≥ 3: the one-vs-rest machines started from one batched proximal-point Newton solve
(:mod:`robust_hpo.slope._hinge_batch`) instead of K libsvm fits, then refined and checked as before.

References, independent of robust_hpo: every one-vs-rest machine refitted by libsvm's
``SVC(kernel="linear", C = 1/(αn), tol=1e-13)`` on clean ∪ β-weighted poison, the curve loss recomputed
here and differentiated by finite differences (``fd`` / ``_weighted_machine_loss`` of
test_linear_svc_sgd). Problems, seeds and α were not used to tune the batched solver (it was tuned on
``benchmarks.slope_cost.digits_ten``).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from robust_hpo.errors import RobustHPOError
from robust_hpo.slope import _hinge_batch, backdoor_slope, slope_model
from tests.slope.test_convex import _rel_err
from tests.slope.test_linear_svc_sgd import _weighted_machine_loss, fd
from tests.slope.test_multiclass import digits_problem, synthetic_problem


def _batched(result) -> bool:
    return result.details.get("start") == "batched-proximal-newton" and result.details.get("libsvm_fits") == 0


@pytest.mark.parametrize("problem, alpha", [
    (digits_problem(10, 61, n=400), 1e-3),          # K = 10
    (digits_problem(3, 62, target=2), 3e-3),        # K = 3, target not class 0
    (synthetic_problem(3, 63), 1e-2),               # K = 3
    (synthetic_problem(5, 64, d=12), 2e-3),         # K = 5
])
def test_batched_start_matches_libsvm_refits(problem, alpha):
    estimator = SGDClassifier(loss="hinge", alpha=alpha, random_state=0)
    result = backdoor_slope(estimator, *problem)
    assert _batched(result) and result.exact and abs(result.derivative) > 1e-3
    C = 1.0 / (alpha * len(problem[0]))
    assert _rel_err(result.derivative, fd("hinge", C, problem, 5e-4)) <= 1e-3


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_batched_start_with_sample_and_class_weights_matches_weighted_refits(class_weight):
    problem = synthetic_problem(4, 65)
    problem = problem[:3] + (np.where(np.arange(len(problem[3])) % 3 == 0, 0, 1),) + problem[4:]  # unbalanced poison
    s = np.random.default_rng(66).uniform(0.2, 3.0, size=len(problem[0]))
    s[::17] = 0.0  # rows of weight 0: their box is empty
    estimator = SGDClassifier(loss="hinge", alpha=1e-2, class_weight=class_weight, random_state=0)
    result = backdoor_slope(estimator, *problem, sample_weight=s)
    assert _batched(result) and result.exact and abs(result.derivative) > 1e-3
    C = 1.0 / (estimator.alpha * len(problem[0]))
    L0 = _weighted_machine_loss("hinge", C, problem, 0.0, class_weight, s)
    D = [(_weighted_machine_loss("hinge", C, problem, h, class_weight, s) - L0) / h for h in (5e-4, 2.5e-4)]
    assert _rel_err(D[0], D[1]) <= 1e-3
    assert _rel_err(result.derivative, D[1]) <= 1e-3


def _libsvm_only(monkeypatch):
    monkeypatch.setattr(_hinge_batch, "MAX_NEWTON_STEPS", 0)  # the start never settles: every machine by libsvm


def test_unsettled_start_falls_back_to_libsvm(monkeypatch):
    """No start (the step budget spent), or a start on wrong sets (every α = 0): libsvm fits the
    machines, as without the batched start, and the slope is the same."""
    problem = digits_problem(4, 67)
    estimator = SGDClassifier(loss="hinge", alpha=2e-3, random_state=0)
    batched = backdoor_slope(estimator, *problem)
    assert _batched(batched)
    with monkeypatch.context() as m:
        _libsvm_only(m)
        plain = backdoor_slope(estimator, *problem)
    assert "start" not in plain.details
    with monkeypatch.context() as m:
        m.setattr(_hinge_batch, "ovr_hinge_start", lambda X, Y, box: (np.zeros(Y.shape), np.zeros(Y.shape[1]), 0))
        wrong = backdoor_slope(estimator, *problem)
    assert wrong.details["libsvm_fits"] == 4
    for other in (plain, wrong):
        assert other.exact
        assert _rel_err(other.derivative, batched.derivative) <= 1e-9


def _outcome(estimator, problem):
    try:
        result = backdoor_slope(estimator, *problem)
    except RobustHPOError as error:
        return type(error), str(error).splitlines()[0], None
    return result.derivative, result.exact, _batched(result)


@pytest.mark.parametrize("case", ["noise", "identical"])
def test_degenerate_inputs_give_the_libsvm_paths_outcome(case, monkeypatch):
    """Pure-noise labels, and every clean row the same image: the batched start gives what libsvm's
    machines give (the same slope, or the same one-line error) — never a different slope."""
    X, y, Xp, yp, Xt, yt = synthetic_problem(3, 68, n=60, d=12)
    if case == "noise":  # (at larger α the optimum is w = 0 with every point on a margin: both paths refuse it,
        y = np.random.default_rng(69).integers(0, 3, size=len(y))  # test_a_flat_linear_svm_optimum_is_refused_at_once)
    else:
        X = np.repeat(X[:1], len(X), axis=0)
    problem = (X, y, Xp, yp, Xt, yt)
    estimator = SGDClassifier(loss="hinge", alpha=1e-3, random_state=0)
    got = _outcome(estimator, problem)
    with monkeypatch.context() as m:
        _libsvm_only(m)
        reference = _outcome(estimator, problem)
    if isinstance(reference[0], float):
        assert isinstance(got[0], float) and got[1] == reference[1] and got[2]  # the batched start, settled
        assert _rel_err(got[0], reference[0]) <= 1e-9 or abs(got[0] - reference[0]) <= 1e-12
    else:
        assert got == reference


def test_batched_start_on_wide_designs_is_not_used():
    """Wide designs (d large next to n): the (d+1)×(d+1) Newton systems are not cheap; libsvm fits."""
    X, y, Xp, yp, Xt, yt = synthetic_problem(3, 70, n=60, d=400)
    model = slope_model(SGDClassifier(loss="hinge", alpha=1e-2, random_state=0)).fit(X, y)
    assert "start" not in model.details_
