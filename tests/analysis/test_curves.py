"""Backdoor learning curves: values against independent scikit-learn fits, the tangent against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import log_loss
from sklearn.svm import SVC

from robust_hpo.attacks import BadNets, poison
from robust_hpo.analysis import DEFAULT_BETAS, backdoor_curve, curve_from_path, fit_path, with_tolerance
from robust_hpo.datasets import load_dataset
from robust_hpo.plots import plotly_bundle_name, write_html
from robust_hpo.plots import curves_figure


@pytest.fixture(scope="module")
def split():
    ds = load_dataset("digits", classes=(3, 8), n_train=150, n_test=80, seed=1)
    return poison(ds, BadNets(size=2, seed=1), fraction=0.1, seed=1)


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1).astype(np.float64)


def _mean_loss(est, X, y, kind: str) -> float:
    t = np.where(y == est.classes_[1], 1.0, -1.0)
    f = est.decision_function(X)
    if kind == "squared":
        return float(np.mean((t - f) ** 2))
    return float(np.mean(np.maximum(0.0, 1.0 - t * f)))


SMALL = (0.0, 1e-4, 1e-3, 1e-2, 1.0)
CASES = [
    (LogisticRegression(C=3.0, tol=1e-12, max_iter=20000), "log-loss"),
    (RidgeClassifier(alpha=0.2), "squared"),
    (SVC(kernel="linear", C=0.5, tol=1e-11), "hinge"),
    (SVC(kernel="rbf", C=10.0, gamma=0.1, tol=1e-11), "hinge"),
]


@pytest.mark.parametrize("estimator, loss", CASES)
def test_tangent_matches_the_curves_finite_difference(split, estimator, loss):
    curve = backdoor_curve(estimator, split, betas=SMALL)
    assert curve.loss == loss
    fd = (curve.trigger_loss[1] - curve.trigger_loss[0]) / curve.betas[1]
    assert abs(curve.derivative) > 1e-3, "a non-trivial case: the poison moves the curve"
    assert abs(fd - curve.derivative) <= 1e-2 * abs(curve.derivative)
    # the tangent is L(0) + dL/dβ·β and touches the curve at β = 0
    assert curve.tangent([0.0])[0] == curve.trigger_loss[0]
    np.testing.assert_allclose(curve.tangent(), curve.trigger_loss[0] + curve.derivative * curve.betas)


def test_endpoints_are_the_clean_and_the_poisoned_sklearn_fits(split):
    est = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
    curve = backdoor_curve(est, split, betas=(0.0, 0.5, 1.0))
    X_test, X_trig = _flat(split.X_test), _flat(split.X_trigger)
    clean = clone(est).fit(_flat(split.X_clean), split.y_clean)
    poisoned = clone(est).fit(_flat(split.X_train_poisoned), split.y_train_poisoned)
    for i, ref in ((0, clean), (-1, poisoned)):
        assert curve.trigger_loss[i] == pytest.approx(log_loss(split.y_trigger, ref.predict_proba(X_trig),
                                                               labels=ref.classes_), rel=1e-6)
        assert curve.clean_loss[i] == pytest.approx(log_loss(split.y_test, ref.predict_proba(X_test),
                                                             labels=ref.classes_), rel=1e-6)
        assert curve.clean_accuracy[i] == pytest.approx(ref.score(X_test, split.y_test))
        # backdoor accuracy: triggered points classified as the attacker's target
        assert curve.trigger_accuracy[i] == pytest.approx(np.mean(ref.predict(X_trig) == split.y_trigger))


def test_intermediate_beta_is_a_weighted_sklearn_fit(split):
    est = RidgeClassifier(alpha=0.5)
    beta = 0.3
    curve = backdoor_curve(est, split, betas=(0.0, beta))
    X = np.vstack([_flat(split.X_clean), _flat(split.X_poison)])
    w = np.r_[np.ones(len(split.y_clean)), np.full(len(split.y_poison), beta)]
    ref = clone(est).fit(X, split.y_train_poisoned, sample_weight=w)
    assert curve.trigger_loss[1] == pytest.approx(_mean_loss(ref, _flat(split.X_trigger), split.y_trigger, "squared"))


def test_default_grid_and_shared_path(split):
    path = fit_path(SVC(kernel="linear", C=0.3), split)
    assert path.betas.tolist() == list(DEFAULT_BETAS)
    assert path.estimators[0] is path.model.estimator_
    curve = curve_from_path(path)
    assert curve.betas.shape == curve.trigger_loss.shape == curve.clean_accuracy.shape == (len(DEFAULT_BETAS),)
    assert curve.slope.n_poison == len(split.y_poison)
    d = curve.to_dict()
    assert d["betas"][0] == 0.0 and d["slope"]["derivative"] == curve.derivative and d["loss"] == "hinge"


def test_with_tolerance_keeps_the_objective(split):
    est = LogisticRegression(C=1.0)
    tight = with_tolerance(est, 1e-9)
    assert tight.tol == 1e-9 and est.tol == 1e-4 and tight.C == est.C
    assert with_tolerance(est, None) is est


def test_curves_figure_draws_each_tangent(split, tmp_path):
    curves = [backdoor_curve(LogisticRegression(C=C, max_iter=5000), split, betas=(0, 0.01, 0.1, 1), tol=1e-8)
              for C in (0.1, 10.0)]
    fig = curves_figure(curves, zoom=0.1)
    tangents = [t for t in fig.data if t.line.dash == "dash" and t.x[0] is not None and t.x[0] == 0.0]
    assert len(tangents) == 4  # full and zoomed panel, per curve
    for trace in tangents:
        curve = curves[0] if trace.legendgroup == "curve0" else curves[1]
        np.testing.assert_allclose(trace.y, curve.trigger_loss[0] + curve.derivative * np.asarray(trace.x))
    layout = fig.layout
    for axis in (layout.xaxis, layout.yaxis, layout.xaxis2, layout.yaxis2, layout.yaxis3, layout.yaxis4):
        assert axis.title.text
    assert "nats" in layout.yaxis.title.text
    assert any(t.name and "slope" in t.name for t in fig.data)
    path = write_html(fig, tmp_path / "curves.html")
    bundle = path.parent / plotly_bundle_name()  # plotly.js next to the page: opens offline
    assert bundle.stat().st_size > 1_000_000 and f'src="{bundle.name}"' in path.read_text()


@pytest.mark.parametrize("betas, message", [
    ((0.1, 0.5, 1.0), "betas must include 0"),
    ((0.0, 0.5, 0.5), "betas must be distinct"),
    ((0.0, float("nan")), "finite"),
    ((0.0, -0.1), "finite numbers >= 0"),
    ((0.0,), "at least one β > 0"),
    ("abc", "betas must be a non-empty list of numbers"),
])
def test_bad_betas(split, betas, message):
    with pytest.raises(ValueError, match=message):
        backdoor_curve(LogisticRegression(), split, betas=betas)


def test_betas_are_sorted(split):
    curve = backdoor_curve(RidgeClassifier(alpha=1.0), split, betas=(0.5, 0.0, 0.1))
    assert curve.betas.tolist() == [0.0, 0.1, 0.5]


def test_bad_inputs(split):
    with pytest.raises(ValueError, match="split must be a robust_hpo.attacks.PoisonedSplit"):
        backdoor_curve(LogisticRegression(), "not a split")
    with pytest.raises(ValueError, match="estimator must be one of"):
        backdoor_curve(object(), split)
    with pytest.raises(ValueError, match="tol must be a number in"):
        backdoor_curve(LogisticRegression(), split, tol=-1.0)
    with pytest.raises(ValueError, match="curves must be a non-empty sequence of CurveResult"):
        curves_figure([])
    curve = backdoor_curve(RidgeClassifier(), split, betas=(0, 1))
    with pytest.raises(ValueError, match="zoom must be in"):
        curves_figure([curve], zoom=0)


# -- K ≥ 3 classes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_class_split():
    ds = load_dataset("digits", classes=(0, 3, 8), n_train=120, n_test=45, seed=1)
    return poison(ds, BadNets(size=2, seed=0), fraction=0.1, seed=0)


@pytest.mark.parametrize("est, kind", [(LogisticRegression(C=0.5), "log"), (RidgeClassifier(alpha=2.0), "squared"),
                                       (SVC(kernel="linear", C=0.3), "svc")])
def test_three_class_curve_is_made_of_weighted_refits_and_touches_its_tangent(three_class_split, est, kind):
    """Loss and backdoor accuracy at each β against independent tight scikit-learn refits (losses from
    decision_function, tests/slope/test_multiclass.curve); the tangent's gradient against their FD."""
    from tests.slope.test_multiclass import curve, tight

    split = three_class_split
    betas = [0.0, 1e-3, 2e-3, 0.1, 1.0]
    result = backdoor_curve(est, split, betas=betas, tol=1e-10)
    Xc, yc, Xp, yp, Xt, yt = split.flat()
    ref = tight(est)
    losses = []
    for i, beta in enumerate(betas):
        X, y = np.vstack([Xc, Xp]), np.concatenate([yc, yp])
        w = np.concatenate([np.ones(len(Xc)), np.full(len(Xp), beta)])
        fitted = clone(ref).fit(X[w > 0], y[w > 0], sample_weight=w[w > 0])
        loss, _ = curve(fitted, Xt, yt, kind)
        losses.append(loss.mean())
        assert result.trigger_loss[i] == pytest.approx(loss.mean(), rel=1e-4, abs=1e-6)
        assert result.trigger_accuracy[i] == pytest.approx(np.mean(fitted.predict(Xt) == yt), abs=1.5 / len(yt))
    one, two = (losses[1] - losses[0]) / 1e-3, (losses[2] - losses[0]) / 2e-3
    fd = (losses[2] - losses[1]) / 1e-3 if kind == "svc" else 2 * one - two  # one linear piece / Richardson
    assert result.derivative == pytest.approx(fd, rel=2e-2)
