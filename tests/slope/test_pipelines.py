"""Pipelines: the scaler is fitted on the β-weighted set, and the slope is exact through it.

References: finite differences of plain scikit-learn ``Pipeline`` refits with the sample weights
routed to both the scaler and the estimator (``standardscaler__sample_weight``), at tight
tolerances; losses recomputed here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC

from robust_hpo.slope import backdoor_slope, slope_model
from robust_hpo.testing import make_backdoor_problem
from tests.slope.test_convex import _mean_loss, _rel_err
from tests.slope.test_multiclass import curve, synthetic_problem

SCALE = np.array([1.0, 5.0, 0.2, 1.0, 3.0, 1.0])
SHIFT = np.array([1.0, 2.0, 3.0, -1.0, 0.0, 5.0])


def binary_problem(seed: int):
    """Features on different scales and offsets, so that scaling matters."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(seed, n=200, d=6)
    return X * SCALE + SHIFT, y, Xp * SCALE + SHIFT, yp, Xt * SCALE + SHIFT, yt


def _refit(pipe, problem, beta):
    X, y, Xp, yp, Xt, yt = problem
    weights = np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)])
    first, last = pipe.steps[0][0], pipe.steps[-1][0]
    params = {f"{last}__sample_weight": weights}
    if isinstance(pipe.steps[0][1], StandardScaler):
        params[f"{first}__sample_weight"] = weights
    return pipe.fit(np.vstack([X, Xp]), np.concatenate([y, yp]), **params)


def _loss(pipe, problem, kind):
    Xt, yt = problem[4], problem[5]
    if len(pipe[-1].classes_) > 2:
        return curve(pipe[-1], pipe[:-1].transform(Xt), yt, kind)[0].mean()
    return _mean_loss(pipe, Xt, yt, kind)


def richardson(make, problem, kind, h=1e-3):
    L0 = _loss(make().fit(problem[0], problem[1]), problem, kind)
    D = [(_loss(_refit(make(), problem, s), problem, kind) - L0) / s for s in (h, h / 2, h / 4)]
    R = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R[1] - R[0]) / 3


def tight(est):
    if isinstance(est, LogisticRegression):
        solver = "liblinear" if est.solver == "liblinear" else "newton-cholesky"
        return LogisticRegression(**{**est.get_params(), "solver": solver, "tol": 1e-14, "max_iter": 1000})
    return RidgeClassifier(**{**est.get_params(), "solver": "cholesky"})


SMOOTH = [
    (StandardScaler, LogisticRegression(), "log", "binary"),
    (lambda: StandardScaler(with_mean=False), LogisticRegression(C=3.0), "log", "binary"),
    (StandardScaler, LogisticRegression(solver="liblinear", intercept_scaling=2.0), "log", "binary"),
    (StandardScaler, RidgeClassifier(alpha=3.0), "squared", "binary"),
    (StandardScaler, LogisticRegression(C=2.0), "cross-entropy", 3),
    (StandardScaler, RidgeClassifier(alpha=0.5), "squared", 5),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("scaler, estimator, kind, classes", SMOOTH)
def test_standard_scaler_pipelines_match_weighted_pipeline_refits(scaler, estimator, kind, classes):
    problem = binary_problem(3) if classes == "binary" else synthetic_problem(classes, 2)
    result = backdoor_slope(make_pipeline(scaler(), estimator), *problem)
    kind = "log" if kind == "cross-entropy" else kind
    reference = richardson(lambda: make_pipeline(scaler(), tight(estimator)), problem, kind)
    assert result.exact and result.details["preprocessing"] == ["StandardScaler"]
    assert _rel_err(result.derivative, reference) <= 1e-3
    # the scaler's motion matters: holding it fixed (the "unwrapped" threat model) differs
    fixed = slope_model(estimator).fit(make_pipeline(scaler()).fit(problem[0]).transform(problem[0]), problem[1])
    scaled = make_pipeline(scaler()).fit(problem[0])
    unwrapped = fixed.derivative(scaled.transform(problem[2]), problem[3], scaled.transform(problem[4]), problem[5])
    assert _rel_err(result.derivative, reference) < 0.1 * _rel_err(unwrapped.derivative, reference)


@pytest.mark.parametrize("estimator, classes, seed", [(SVC(kernel="linear", C=0.3), "binary", 9),
                                                      (SVC(C=3.0, gamma=0.3), "binary", 3),
                                                      (SVC(C=3.0, gamma=0.3), 4, 5)])
def test_standard_scaler_svc_pipelines_match_refits(estimator, classes, seed):
    problem = binary_problem(seed) if classes == "binary" else synthetic_problem(classes, seed)
    result = backdoor_slope(make_pipeline(StandardScaler(), estimator), *problem)
    ref = SVC(**{**estimator.get_params(), "tol": 1e-13})
    kind = "hinge" if classes == "binary" else "svc"
    L0 = _loss(make_pipeline(StandardScaler(), ref).fit(problem[0], problem[1]), problem, kind)
    # the hinge curve is piecewise linear; libsvm's precision limits the step from below
    fd = [(_loss(_refit(make_pipeline(StandardScaler(), ref), problem, h), problem, kind) - L0) / h
          for h in (1e-3, 5e-4)]
    assert result.exact
    assert min(_rel_err(result.derivative, f) for f in fd) <= 1e-3


def test_minmax_scaler_inside_the_clean_range_is_exact_and_outside_jumps():
    X, y, Xp, yp, Xt, yt = binary_problem(4)
    inside = np.clip(Xp, X.min(axis=0), X.max(axis=0))
    problem = (X, y, inside, yp, Xt, yt)
    result = backdoor_slope(make_pipeline(MinMaxScaler(), LogisticRegression()), *problem)
    reference = richardson(lambda: make_pipeline(MinMaxScaler(), tight(LogisticRegression())), problem, "log")
    assert result.exact and _rel_err(result.derivative, reference) <= 1e-3
    outside = backdoor_slope(make_pipeline(MinMaxScaler(), LogisticRegression()), X, y, Xp * 10, yp, Xt, yt)
    assert not outside.exact and outside.details["scaler_jump_features"] >= 1


def test_a_feature_constant_on_clean_data_that_the_poison_moves_is_flagged():
    X, y, Xp, yp, Xt, yt = binary_problem(5)
    X[:, 2] = 0.0  # the trigger sits on a feature the clean set never uses
    Xp[:, 2] = 1.0
    result = backdoor_slope(make_pipeline(StandardScaler(), LogisticRegression()), X, y, Xp, yp, Xt, yt)
    assert not result.exact and result.details["scaler_jump_features"] == 1


def test_pca_needs_exact_false_and_is_then_marked_inexact():
    problem = binary_problem(6)
    pipe = make_pipeline(StandardScaler(), PCA(n_components=4), LogisticRegression())
    with pytest.raises(ValueError, match=r"'pca' \(PCA\) is not differentiated: pass exact=False"):
        backdoor_slope(pipe, *problem)
    result = backdoor_slope(pipe, *problem, exact=False)
    assert not result.exact and "held at its clean fit" in result.details["approximation"]


def test_other_steps_are_refused_naming_them():
    problem = binary_problem(7)
    with pytest.raises(ValueError, match=r"step 'polynomialfeatures' \(PolynomialFeatures\) is not supported"):
        backdoor_slope(make_pipeline(PolynomialFeatures(), LogisticRegression()), *problem)
    with pytest.raises(ValueError, match="one scaler"):
        backdoor_slope(make_pipeline(StandardScaler(), MinMaxScaler(), LogisticRegression()), *problem)


def test_pipeline_predictions_and_estimator_are_the_polished_pipeline():
    X, y, Xp, yp, Xt, yt = binary_problem(8)
    model = slope_model(make_pipeline(StandardScaler(), LogisticRegression(tol=1.0))).fit(X, y)
    assert np.array_equal(model.predict(Xt), model.pipeline_.predict(Xt))
    tight_fit = make_pipeline(StandardScaler(), tight(LogisticRegression())).fit(X, y)
    assert np.allclose(model.pipeline_.decision_function(Xt), tight_fit.decision_function(Xt), atol=1e-5)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_scalers_are_applied_with_scikit_learns_own_arithmetic():
    """The pipeline's scaler transforms validated rows without scikit-learn's input checks: the same
    numbers as ``transform`` for every StandardScaler / MinMaxScaler setting (clip and PCA go through
    ``transform`` itself). (scikit-learn's weighted variance of the constant feature warns.)"""
    from robust_hpo.slope._preprocess import _transform

    rng = np.random.default_rng(41)
    X = rng.normal(3.0, 2.0, size=(60, 6))
    X[:, 2] = 1.5  # a constant feature: scale 1
    Y = rng.normal(3.0, 4.0, size=(25, 6))
    w = rng.uniform(0.1, 2.0, size=60)
    for step in (StandardScaler().fit(X, sample_weight=w), StandardScaler(with_mean=False).fit(X),
                 StandardScaler(with_std=False).fit(X), MinMaxScaler().fit(X),
                 MinMaxScaler(feature_range=(-2.0, 3.0)).fit(X), MinMaxScaler(clip=True).fit(X),
                 PCA(n_components=3).fit(X)):
        assert np.array_equal(_transform(step, Y), step.transform(Y)), step
