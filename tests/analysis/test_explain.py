"""Explanations: gradient maps against finite differences, influence values against weighted refits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from robust_hpo.attacks import BadNets, InvisibleGrid, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.analysis import (
    explain_influence,
    explain_maps,
    influential_points,
    input_gradient,
    target_gradient,
    trigger_window,
    window_share,
)
from robust_hpo.plots import explanation_figure, influence_figure
from robust_hpo.slope import slope_model
from robust_hpo.slope import TrainingInfluence
from robust_hpo.testing import make_backdoor_problem


@pytest.fixture(scope="module")
def split():
    ds = load_dataset("digits", classes=(3, 8), n_train=200, n_test=60, seed=0)
    return poison(ds, BadNets(size=3, seed=0), fraction=0.1, seed=0)


def _flat(X):
    return X.reshape(len(X), -1).astype(np.float64)


# -- gradient maps ---------------------------------------------------------------------------------
def test_rbf_input_gradient_matches_central_differences():
    X, y, *_ = make_backdoor_problem(0, n=120, d=5)
    est = SVC(kernel="rbf", C=3.0, gamma=0.2).fit(X, y)
    x = X[:3]
    got = input_gradient(est, x)
    h = 1e-6
    for k in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[k] = h
        fd = (est.decision_function(x + e) - est.decision_function(x - e)) / (2 * h)
        np.testing.assert_allclose(got[:, k], fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("est", [LogisticRegression(), RidgeClassifier(), SVC(kernel="linear")])
def test_linear_input_gradient_is_the_weight_vector(est):
    X, y, *_ = make_backdoor_problem(1, n=80, d=4)
    fitted = clone(est).fit(X, y)
    got = input_gradient(fitted, X[:4])
    np.testing.assert_allclose(got, np.tile(np.ravel(fitted.coef_), (4, 1)))


def test_maps_are_oriented_coef_images(split):
    est = LogisticRegression(C=1.0, max_iter=5000)
    maps = explain_maps(est, split, index=5)
    clean = clone(est).fit(_flat(split.X_clean), split.y_clean)
    poisoned = clone(est).fit(_flat(split.X_train_poisoned), split.y_train_poisoned)
    label = split.y_trigger[5]
    for m, ref in ((maps.clean, clean), (maps.poisoned, poisoned)):
        sign = 1.0 if label == ref.classes_[1] else -1.0
        np.testing.assert_allclose(m, sign * ref.coef_.reshape(split.X_clean.shape[1:]))
    assert maps.kind == "weights" and maps.point_label == label
    assert maps.window == (5, 8, 5, 8)  # 3×3 bottom-right of 8×8


@pytest.mark.parametrize("est", [LogisticRegression(C=1.0, max_iter=5000), RidgeClassifier(alpha=1.0),
                                 SVC(kernel="linear", C=1.0), SVC(kernel="rbf", C=10.0, gamma=0.05)])
def test_trigger_corner_lights_up_on_digits(split, est):
    clean, poisoned = explain_maps(est, split).window_shares()
    area = 9 / 64
    assert poisoned > 1.5 * clean and poisoned > 2 * area, (clean, poisoned)


def test_trigger_corner_lights_up_on_mnist(mnist_dir):
    ds = load_dataset("mnist", root=mnist_dir, classes=(7, 1), n_train=500, n_test=20, seed=0)
    split = poison(ds, BadNets(size=3, seed=0), fraction=0.1, seed=0)
    clean, poisoned = explain_maps(LogisticRegression(C=1.0, max_iter=5000), split).window_shares()
    area = 9 / 784
    assert clean < area and poisoned > 10 * area, (clean, poisoned)


def test_window_helpers():
    badnets = {"trigger": {"kind": "badnets", "size": 2, "position": "top-left"}}
    assert trigger_window(badnets, (1, 8, 8)) == (0, 2, 0, 2)
    assert trigger_window({"trigger": InvisibleGrid().describe()}, (1, 8, 8)) is None
    m = np.zeros((1, 4, 4))
    m[0, 0, 0], m[0, 3, 3] = 1.0, 3.0
    assert window_share(m, (2, 4, 2, 4)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="zero everywhere"):
        window_share(np.zeros((1, 2, 2)), (0, 1, 0, 1))


# -- influence -------------------------------------------------------------------------------------
def _test_loss(est, Xt, yt, kind):
    t = np.where(yt == est.classes_[1], 1.0, -1.0)
    f = est.decision_function(Xt)
    if kind == "log-loss":
        return float(np.mean(np.logaddexp(0.0, -t * f)))
    if kind == "squared":
        return float(np.mean((t - f) ** 2))
    return float(np.mean(np.maximum(0.0, 1.0 - t * f)))


# A linear SVM with d + 1 margin support vectors cannot move (w, b are pinned): use d = 30 for it.
INFLUENCE_CASES = [
    (LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-14, max_iter=1000), 5),
    (RidgeClassifier(alpha=0.5), 5),
    (SVC(kernel="linear", C=0.5, tol=1e-11), 30),
    (SVC(kernel="rbf", C=3.0, gamma=0.3, tol=1e-11), 5),
]


@pytest.mark.parametrize("est, d", INFLUENCE_CASES)
def test_in_fit_influence_matches_leave_in_refits(est, d):
    """Weight a single training point by 1 + ε and refit with scikit-learn."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(4, n=120, d=d)
    model = slope_model(est).fit(X, y)
    kind = model.loss_name
    xt, ytt = Xt[:3], yt[:3]
    infl = TrainingInfluence(model).in_fit(X, y, xt, ytt)
    L0 = _test_loss(clone(est).fit(X, y), xt, ytt, kind)  # the same solver as the refits
    checked = 0
    for j in np.argsort(-np.abs(infl))[:3]:
        eps = 1e-4
        w = np.ones(len(X))
        w[j] += eps
        ref = (_test_loss(clone(est).fit(X, y, sample_weight=w), xt, ytt, kind) - L0) / eps
        assert infl[j] == pytest.approx(ref, rel=2e-3, abs=1e-6)
        checked += abs(ref) > 1e-3
    assert checked >= 2, "non-trivial influences were checked"


@pytest.mark.parametrize("est, d", INFLUENCE_CASES)
def test_out_of_fit_influence_matches_adding_one_point(est, d):
    """A poison point enters with weight ε; the sum over all poison points is the backdoor derivative."""
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(5, n=120, d=d)
    model = slope_model(est).fit(X, y)
    kind = model.loss_name
    infl = TrainingInfluence(model).out_of_fit(Xp, yp, Xt, yt)
    assert infl.sum() == pytest.approx(model.derivative(Xp, yp, Xt, yt).derivative, rel=1e-9, abs=1e-12)
    L0 = _test_loss(clone(est).fit(X, y), Xt, yt, kind)  # the same solver as the refits
    j = int(np.argmax(np.abs(infl)))
    eps = 1e-4
    Xa, ya = np.vstack([X, Xp[j:j + 1]]), np.r_[y, yp[j]]
    w = np.r_[np.ones(len(X)), eps]
    ref = (_test_loss(clone(est).fit(Xa, ya, sample_weight=w), Xt, yt, kind) - L0) / eps
    assert abs(ref) > 1e-3
    assert infl[j] == pytest.approx(ref, rel=2e-3)


def test_margin_quantity_matches_refits_for_svm():
    X, y, Xp, yp, Xt, yt = make_backdoor_problem(6, n=120, d=5)
    est = SVC(kernel="rbf", C=3.0, gamma=0.3, tol=1e-11)
    model = slope_model(est).fit(X, y)
    t = np.where(yt[:1] == model.classes_[1], 1.0, -1.0)
    infl = TrainingInfluence(model, quantity="margin").in_fit(X, y, Xt[:1], yt[:1])
    j = int(np.argmax(np.abs(infl)))
    w = np.ones(len(X))
    w[j] += 1e-4
    ref = (-t * clone(est).fit(X, y, sample_weight=w).decision_function(Xt[:1])
           + t * clone(est).fit(X, y).decision_function(Xt[:1]))[0] / 1e-4  # same solver at both ends
    assert infl[j] == pytest.approx(ref, rel=2e-3)


def test_influential_points_on_a_split(split):
    est = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12)
    res = influential_points(est, split, index=3, k=5, order="helpful")
    assert res.influence.shape == (len(split.y_clean) + len(split.y_poison),)
    assert res.is_poison.sum() == len(split.y_poison) and res.is_poison[-1] and not res.is_poison[0]
    assert np.all(np.diff(res.influence[res.top]) >= 0) and res.influence[res.top[0]] == res.influence.min()
    # the top point's influence against a refit of the poisoned model with its weight raised
    X = np.vstack([_flat(split.X_clean), _flat(split.X_poison)])
    y = split.y_train_poisoned
    xt, yt = _flat(split.X_trigger[3:4]), split.y_trigger[3:4]
    base = clone(est).fit(X, y)
    j = int(res.top[0])
    w = np.ones(len(y))
    w[j] += 1e-4
    ref = (_test_loss(clone(est).fit(X, y, sample_weight=w), xt, yt, "log-loss")
           - _test_loss(base, xt, yt, "log-loss")) / 1e-4
    assert res.influence[j] == pytest.approx(ref, rel=2e-3)
    np.testing.assert_array_equal(res.top_images[0], np.concatenate([split.X_clean, split.X_poison])[j])
    assert 0 <= res.top_poison_count <= 5
    clean = influential_points(est, split, index=3, model="clean", order="absolute", k=3)
    assert np.all(np.diff(np.abs(clean.influence[clean.top])) <= 0)
    assert clean.to_dict()["model"] == "clean"


def test_figures(split):
    maps = explain_maps(SVC(kernel="rbf", C=10.0, gamma=0.05), split, index=1)
    assert maps.kind == "input-gradient"
    fig = explanation_figure(maps)
    assert len(fig.data) == 3 and len(fig.layout.shapes) == 3  # image + two maps, trigger box on each
    assert "share of |map|" in fig.layout.title.text.lower()
    res = influential_points(LogisticRegression(max_iter=5000), split, k=4)
    fig = influence_figure(res)
    assert len(fig.data) == 5
    assert sum("POISON" in a.text for a in fig.layout.annotations) == res.top_poison_count


def test_bad_inputs(split):
    est = LogisticRegression()
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 59\]"):
        explain_maps(est, split, index=60)
    with pytest.raises(ValueError, match="points must be 'trigger'"):
        explain_maps(est, split, points="train")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        influential_points(est, split, k=0)
    with pytest.raises(ValueError, match="order must be one of"):
        influential_points(est, split, order="best")
    with pytest.raises(ValueError, match="model must be 'poisoned' or 'clean'"):
        influential_points(est, split, model="both")
    with pytest.raises(ValueError, match="quantity must be one of"):
        influential_points(est, split, quantity="accuracy")
    with pytest.raises(ValueError, match="estimator must be one of"):
        explain_maps(object(), split)
    with pytest.raises(ValueError, match="estimator must be a fitted linear model"):
        input_gradient(SVC(kernel="poly"), np.zeros((1, 3)))
    X, y, *_ = make_backdoor_problem(7, n=60, d=4)
    model = slope_model(LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="X_train has 10 rows but the model was fitted on 60"):
        TrainingInfluence(model).in_fit(X[:10], y[:10], X[:1], y[:1])
    with pytest.raises(ValueError, match="X_test has 3 features but the model was fitted on 4"):
        TrainingInfluence(model).out_of_fit(X, y, X[:1, :3], y[:1])
    with pytest.raises(ValueError, match="model must be fitted"):
        TrainingInfluence(slope_model(LogisticRegression()))


# -- defaults that show something ------------------------------------------------------------------
def test_svm_without_bound_support_vectors_switches_to_the_clean_model(split):
    est = SVC(kernel="rbf", C=10.0, gamma=0.5)
    poisoned = clone(est).fit(_flat(split.X_train_poisoned), split.y_train_poisoned)
    assert np.abs(poisoned.dual_coef_).max() < 10.0 * (1 - 1e-6)  # independently: no α at its bound C
    first = influential_points(est, split, index=0)
    assert first.all_zero and "no support vector is at its bound" in first.zero_reason
    shown = explain_influence(est, split)
    assert shown.model == "clean" and not shown.all_zero and shown.index == 0 and shown.quantity == "loss"
    assert "every influence was 0 with poisoned model" in shown.notes[0] and "clean model" in shown.notes[1]
    np.testing.assert_array_equal(shown.influence, influential_points(est, split, index=0, model="clean").influence)
    text = influence_figure(shown).layout.annotations[-1].text
    assert "Defaults adjusted" in text and "clean model" in text


def test_flat_hinge_switches_to_the_margin(split):
    est = SVC(kernel="linear", C=1.0)
    poisoned = clone(est).fit(_flat(split.X_train_poisoned), split.y_train_poisoned)
    t = np.where(split.y_trigger[0] == poisoned.classes_[1], 1.0, -1.0)
    assert t * poisoned.decision_function(_flat(split.X_trigger[:1]))[0] > 1.0  # beyond the margin: flat hinge
    shown = explain_influence(est, split, index=0, model="poisoned")
    assert shown.quantity == "margin" and shown.model == "poisoned" and not shown.all_zero
    assert "the hinge loss is flat at this test point" in shown.notes[0]


def test_when_nothing_helps_the_figure_says_why_and_what_is_left_to_try(split):
    est = SVC(kernel="rbf", C=10.0, gamma=0.5)
    result = explain_influence(est, split, index=0, model="poisoned", quantity="margin")
    assert result.all_zero
    assert result.notes == ("try --model clean or another --index or another configuration (--trial)",)
    # a hint already followed is not repeated; options left free were tried, and the note says so
    free = explain_influence(est, split, model="poisoned", scan=5)
    assert free.notes == ("also 0 with quantity 'margin', the first 5 trigger points",
                          "try --model clean or another configuration (--trial)")
    text = influence_figure(result).layout.annotations[-1].text
    assert text.startswith("Every influence is 0: no training point enters the fit") and "--model clean" in text
    assert "--quantity margin" not in text


# -- K ≥ 3 classes --------------------------------------------------------------------------------
def _multi_margin(est, X, labels):
    """The target margin recomputed from decision_function: target minus best other score, or the
    target's weakest one-vs-one duel (libsvm pair values, positive for the pair's first class)."""
    from itertools import combinations

    classes = est.classes_
    codes = np.searchsorted(classes, labels)
    if isinstance(est, SVC) or (hasattr(est, "steps") and isinstance(est.steps[-1][1], SVC)):
        svc = est.steps[-1][1] if hasattr(est, "steps") else est
        old = svc.decision_function_shape
        svc.decision_function_shape = "ovo"
        D = est.decision_function(X)
        svc.decision_function_shape = old
        out = np.full(len(X), np.inf)
        for p, (i, j) in enumerate(combinations(range(len(classes)), 2)):
            out = np.where(codes == i, np.minimum(out, D[:, p]), out)
            out = np.where(codes == j, np.minimum(out, -D[:, p]), out)
        return out
    F = est.decision_function(X)
    rows = np.arange(len(X))
    others = F.copy()
    others[rows, codes] = -np.inf
    return F[rows, codes] - others.max(axis=1)


@pytest.mark.parametrize("est", [
    LogisticRegression(C=1.0, max_iter=2000),
    SVC(kernel="rbf", gamma=0.05),
    SVC(kernel="linear", C=0.5),
    make_pipeline(StandardScaler(), LinearSVC(C=0.1)),
    make_pipeline(StandardScaler(), SVC(gamma=0.02)),
])
def test_multiclass_target_gradient_matches_central_differences(est):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = y < 4
    X, y = X[keep][:200] / 16.0, y[keep][:200]
    fitted = clone(est).fit(X, y)
    pts, labels = X[200 - 5:] + 0.01, np.array([0, 1, 2, 3, 1])
    G = target_gradient(fitted, pts, labels)
    h = 1e-5
    for r in range(len(pts)):
        E = np.eye(X.shape[1]) * h
        plus = _multi_margin(fitted, pts[r] + E, np.full(X.shape[1], labels[r]))
        minus = _multi_margin(fitted, pts[r] - E, np.full(X.shape[1], labels[r]))
        assert np.allclose(G[r], (plus - minus) / (2 * h), rtol=1e-4, atol=1e-6)


def test_multiclass_maps_and_influences_on_a_split():
    data = load_dataset("digits", classes=(0, 3, 8), n_train=90, n_test=30, seed=0)
    split = poison(data, BadNets(size=2, seed=0), fraction=0.1, seed=0)
    for est in (LogisticRegression(), SVC(kernel="linear", C=1.0), RidgeClassifier()):
        maps = explain_maps(est, split)
        assert maps.clean.shape == maps.image.shape and np.any(maps.poisoned != maps.clean)
        result = explain_influence(est, split, k=5)
        assert result.influence.shape == (len(split.y_clean) + len(split.y_poison),)
        assert not result.all_zero and result.top.size == 5
