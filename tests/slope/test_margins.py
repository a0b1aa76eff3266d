"""Triggered points' target margins from the slope's own solve, against scikit-learn refits.

``margins.margin[t] = τ_t f(x_t)`` at β = 0 and ``margins.derivative[t] = d(τ_t f(x_t))/dβ``: the
reference is a plain scikit-learn fit (β = 0) and finite differences of β-weighted tight refits,
per triggered point.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.slope import backdoor_slope, slope_model
from robust_hpo.testing import make_backdoor_problem, right_derivative


def _test_set(seed: int, d: int, n: int = 60):
    """Clean test points drawn like make_backdoor_problem's clean points (no trigger)."""
    rng = np.random.default_rng(100 + seed)
    X = rng.normal(size=(n, d))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=n) > 0, 8, 3)
    return X, y


def _refit(est, problem, beta: float):
    X, y, Xp, yp, _, _ = problem
    est = clone(est)
    if beta == 0:
        return est.fit(X, y)
    return est.fit(np.vstack([X, Xp]), np.concatenate([y, yp]),
                   sample_weight=np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)]))


def _target_margins(est, problem, beta: float) -> np.ndarray:
    Xt, yt = problem[4], problem[5]
    fitted = _refit(est, problem, beta)
    tau = np.where(yt == fitted.classes_[1], 1.0, -1.0)
    return tau * fitted.decision_function(Xt)


def _richardson_margins(est, problem, h: float) -> np.ndarray:
    return right_derivative(lambda beta: _target_margins(est, problem, beta), h)


CASES = [
    # (estimator: tight, so that the refits are a reference; kind; problem shape; seed)
    (LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), "smooth", (200, 6), 0),
    (LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), "smooth", (60, 150), 1),
    (RidgeClassifier(alpha=0.7), "smooth", (200, 6), 2),
    (SVC(kernel="linear", C=0.05, tol=1e-12), "hinge", (100, 30), 2),
    (SVC(kernel="rbf", C=10.0, gamma=0.3, tol=1e-12), "hinge", (200, 5), 3),
]


@pytest.mark.parametrize("estimator, kind, shape, seed", CASES)
def test_margins_and_their_derivatives_match_refits(estimator, kind, shape, seed):
    problem = make_backdoor_problem(seed, n=shape[0], d=shape[1])
    X_test, y_test = _test_set(seed, shape[1])
    result = backdoor_slope(estimator, *problem, X_test=X_test, y_test=y_test)
    margins = result.margins
    # β = 0: the clean model's own target margins, its predictions, and the clean-test scale
    clean = _refit(estimator, problem, 0.0)
    assert np.allclose(margins.margin, _target_margins(estimator, problem, 0.0), rtol=1e-6, atol=1e-6)
    assert result.baseline_backdoor_accuracy == pytest.approx(np.mean(clean.predict(problem[4]) == problem[5]))
    assert margins.scale == pytest.approx(np.mean(np.abs(clean.decision_function(X_test))), rel=1e-6)
    # the derivative per triggered point
    if kind == "smooth":
        h = 1e-4 if shape[1] > shape[0] else 1e-2
        reference = _richardson_margins(estimator, problem, h)
    else:  # the decision values are piecewise linear in β: a small step is exact
        m0 = _target_margins(estimator, problem, 0.0)
        steps = [(_target_margins(estimator, problem, s) - m0) / s for s in (1e-4, 5e-5)]
        assert np.allclose(steps[0], steps[1], rtol=1e-3, atol=1e-3 * np.abs(steps[1]).max())
        reference = steps[1]
    assert np.abs(reference).max() > 1e-2  # the poison moves the triggered points
    assert np.allclose(margins.derivative, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())
    # the β = 1 estimate is the refit on clean ∪ poison: the retrained model's own backdoor accuracy
    # and margins (an independent scikit-learn fit on the poisoned set, weights 1)
    assert margins.estimate == "refit"
    retrained = _target_margins(estimator, problem, 1.0)
    assert np.allclose(margins.at_one, retrained, rtol=1e-4, atol=1e-4 * np.abs(retrained).max())
    assert result.predicted_backdoor_accuracy == pytest.approx(np.mean(retrained > 0), abs=1.5 / len(retrained))
    assert result.normalised_margin == pytest.approx(np.mean(margins.at_one) / margins.scale)
    # the linearisation is still there for β < 1
    assert margins.backdoor_accuracy(0.5) == np.mean(margins.margin + 0.5 * margins.derivative > 0)


@pytest.mark.parametrize("estimator", [LogisticRegression(C=0.5), RidgeClassifier(alpha=2.0),
                                       SVC(kernel="linear", C=1.0), SVC(kernel="rbf", C=3.0, gamma=0.2)])
def test_estimate_is_the_retrained_backdoor_accuracy_and_linear_opt_out(estimator):
    """A strong attack: the refit estimate equals retraining on the in-place poisoned set with
    default scikit-learn settings; ``estimate = "linear"`` restores the linearisation."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(5, n=120, d=8, m=40)
    result = backdoor_slope(estimator, X, y, Xp, yp, Xt, yt)
    retrained = clone(estimator).fit(np.vstack([X, Xp]), np.concatenate([y, yp]))
    assert result.predicted_backdoor_accuracy == pytest.approx(np.mean(retrained.predict(Xt) == yt), abs=0.02)
    assert result.details["estimate"] == "refit" and result.details["estimate_seconds"] > 0
    model = slope_model(estimator)
    model.estimate = "linear"
    linear = model.fit(X, y).derivative(Xp, yp, Xt, yt)
    assert linear.margins.at_one is None and linear.margins.estimate == "linear"
    assert linear.predicted_backdoor_accuracy == np.mean(linear.margins.linearised(1.0) > 0)


@pytest.mark.parametrize("estimator", [LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-14),
                                       RidgeClassifier(alpha=0.7)])
def test_linearised_margins_track_refits_for_small_beta(estimator):
    """m(β) ≈ m(0) + β·dm/dβ: at β = 0.02 the linear term carries nearly all of the change."""
    problem = make_backdoor_problem(4)
    margins = backdoor_slope(estimator, *problem).margins
    beta = 0.02
    refit = _target_margins(estimator, problem, beta)
    change = np.linalg.norm(refit - margins.margin)
    assert change > 1e-3
    assert np.linalg.norm(margins.linearised(beta) - refit) <= 0.05 * change


def test_margins_without_a_test_set_have_no_scale():
    result = backdoor_slope(LogisticRegression(), *make_backdoor_problem(5))
    assert result.margins.scale is None and result.normalised_margin is None
    assert result.baseline_backdoor_accuracy is not None and result.predicted_backdoor_accuracy is not None


def test_several_attacks_in_one_call_equal_one_call_each():
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(6)
    X_test, y_test = _test_set(6, X.shape[1])
    for est in (LogisticRegression(C=3.0), RidgeClassifier(alpha=0.3), SVC(kernel="rbf", C=5.0, gamma=0.2)):
        model = slope_model(est).fit(X, y)
        attacks = [(Xp[:8], yp[:8], Xt, yt), (Xp, yp, Xt[:20], yt[:20]), (Xp[5:], yp[5:], Xt, yt)]
        together = model.derivatives(attacks, X_test=X_test, y_test=y_test)
        for attack, result in zip(attacks, together):
            alone = model.derivative(*attack, X_test=X_test, y_test=y_test)
            assert result.derivative == pytest.approx(alone.derivative, rel=1e-9, abs=1e-12)
            assert np.allclose(result.margins.derivative, alone.margins.derivative, rtol=1e-9, atol=1e-12)
            assert result.n_poison == len(attack[0]) and result.n_trigger == len(attack[2])
            assert 0.0 <= result.details["margins_seconds"] <= result.slope_seconds


def test_degenerate_svc_margin_derivatives_are_one_sided():
    from tests.slope.test_exactness import _degenerate_problem

    problem = _degenerate_problem(0)
    est = SVC(kernel="linear", C=1e-4, tol=1e-12)
    result = backdoor_slope(SVC(kernel="linear", C=1e-4), *problem)
    assert result.exact is False
    h = 1e-4
    one_sided = (_target_margins(est, problem, 2 * h) - _target_margins(est, problem, h)) / h
    assert np.allclose(result.margins.derivative, one_sided, rtol=1e-3, atol=1e-3 * np.abs(one_sided).max())


def test_attack_errors_name_the_attack():
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(7)
    model = slope_model(LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match=r"attacks\[1\]: X_trigger has 5 features but X_clean has 6"):
        model.derivatives([(Xp, yp, Xt, yt), (Xp, yp, Xt[:, :5], yt)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        model.derivatives([])
    with pytest.raises(ValueError, match="pass both X_test and y_test"):
        model.derivative(Xp, yp, Xt, yt, X_test=X)


def test_the_scale_is_never_taken_from_other_rows_or_an_earlier_fit():
    """The scale is mean |f| on the clean test set, equal to scikit-learn's decision values whether or
    not the model has just predicted those rows (a study's accuracy pass, memoised), and never taken from
    other rows or from a fit before the latest."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(7)
    X_test, y_test = _test_set(7, X.shape[1])
    est = SVC(kernel="rbf", C=5.0, gamma=0.2, tol=1e-12)  # tight: the polished solution is scikit-learn's
    reference = float(np.mean(np.abs(clone(est).fit(X, y).decision_function(X_test))))
    model = slope_model(est).fit(X, y)
    cold = model.derivative(Xp, yp, Xt, yt, X_test=X_test, y_test=y_test).margins.scale
    model.predict(X_test.copy())  # the same rows, another array
    warm = model.derivative(Xp, yp, Xt, yt, X_test=X_test, y_test=y_test).margins.scale
    model.predict(X_test[:10])  # other rows: not reused
    other = model.derivative(Xp, yp, Xt, yt, X_test=X_test, y_test=y_test).margins.scale
    assert cold == pytest.approx(reference, rel=1e-6) and warm == cold and other == cold
    model.predict(X_test)
    refitted = model.fit(X[:150], y[:150]).derivative(Xp, yp, Xt, yt, X_test=X_test, y_test=y_test).margins.scale
    expected = float(np.mean(np.abs(clone(est).fit(X[:150], y[:150]).decision_function(X_test))))
    assert refitted == pytest.approx(expected, rel=1e-6) and refitted != pytest.approx(cold, rel=1e-6)
