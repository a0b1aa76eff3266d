"""Inputs an outside checker tried (issue 20): each gives a one-line robust_hpo error naming the input,
or — for settings that are supported — the slope of finite differences of independent refits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from robust_hpo.errors import ValidationError
from robust_hpo.slope import backdoor_slope

ESTIMATORS = [LogisticRegression(), RidgeClassifier(), SVC(kernel="linear"), LinearSVC(),
              SGDClassifier(loss="hinge", random_state=0)]


def three_classes(seed: int = 0):
    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=3, n_clusters_per_class=1,
                               random_state=seed)
    Xp, Xt = X[120:130].copy(), X[130:160].copy()
    Xp[:, -1] = Xt[:, -1] = 4.0
    return X[:120], y[:120], Xp, np.full(10, 1), Xt, np.full(30, 1)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__ + getattr(e, "loss", ""))
def test_non_integral_float_labels_are_refused_naming_them(estimator):
    """scikit-learn raised 'Unknown label type: continuous' from its internals."""
    Xc, yc, Xp, yp, Xt, yt = three_classes()
    with pytest.raises(ValidationError, match=r"y_clean holds non-integral numbers \(e\.g\. \d\.5\); expected class labels"):
        backdoor_slope(estimator, Xc, yc + 0.5, Xp, yp + 0.5, Xt, yt + 0.5)


def test_integral_float_labels_are_still_labels():
    Xc, yc, Xp, yp, Xt, yt = three_classes()
    as_float = backdoor_slope(LogisticRegression(), Xc, yc.astype(float), Xp, yp.astype(float), Xt, yt.astype(float))
    as_int = backdoor_slope(LogisticRegression(), Xc, yc, Xp, yp, Xt, yt)
    assert as_float.derivative == pytest.approx(as_int.derivative, rel=1e-12)


@pytest.mark.parametrize("estimator", [RidgeClassifier(), SVC(kernel="linear"), LinearSVC()],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("position, name", [(0, "X_clean"), (4, "X_trigger")])
def test_absurd_feature_magnitudes_are_refused_naming_the_array(estimator, position, name):
    """|x| = 1e200: numpy's 'array must not contain infs' (ridge), libsvm's 'dual coefficients are not finite'
    (SVC); liblinear never returned."""
    args = list(three_classes())
    args[position] = args[position] * 1e200
    with pytest.raises(ValidationError, match=f"{name} has values of magnitude .*e\\+200; expected"):
        backdoor_slope(estimator, *args)


@pytest.mark.parametrize("estimator", ESTIMATORS + [make_pipeline(StandardScaler(), SVC())],
                         ids=lambda e: type(e).__name__ + getattr(e, "loss", ""))
def test_a_class_without_sample_weight_is_refused_naming_it(estimator):
    """IndexError inside the one-vs-one / one-vs-rest code, libsvm's 'all samples with positive weights belong
    to the same class', or (logistic) a singular-Hessian message that did not say why."""
    Xc, yc, Xp, yp, Xt, yt = three_classes()
    with pytest.raises(ValidationError, match=r"sample_weight gives class\(es\) \[0\] of y_clean a total weight of 0"):
        backdoor_slope(estimator, Xc, yc, Xp, yp, Xt, yt, sample_weight=(yc != 0).astype(float))


def test_exact_must_be_a_boolean():
    Xc, yc, Xp, yp, Xt, yt = three_classes()
    with pytest.raises(ValidationError, match="exact must be True or False, got 'no'"):
        backdoor_slope(LogisticRegression(), Xc, yc, Xp, yp, Xt, yt, exact="no")


def test_the_tighter_libsvm_refit_of_an_unsettled_svm_is_bounded(monkeypatch):
    """An SGD hinge machine (a linear SVM, C = 1/(αn)) whose libsvm sets do not settle under refinement: the
    refit at tol·1e-3 used max_iter=-1, and libsvm ran for minutes there (a study trial hung). Now it ends —
    fitted, or NotConvergedError naming the settings — after REFIT_MAX_ITER iterations (lowered here to keep
    the test short; the default, 1e8, takes ~20 s on this machine)."""
    import signal

    from robust_hpo.errors import NotConvergedError
    from robust_hpo.slope import _svc, slope_model

    monkeypatch.setattr(_svc, "REFIT_MAX_ITER", 1_000_000, raising=False)

    weights = list(np.linspace(1, 0.2, 7) / np.linspace(1, 0.2, 7).sum())
    X, y = make_classification(n_samples=530, n_features=12, n_informative=5, n_redundant=0, n_classes=7,
                               n_clusters_per_class=1, weights=weights, flip_y=0.02, random_state=778580)
    X, y = X[:300].astype(np.float32).astype(np.float64), (y[:300] == 5).astype(int)

    def hung(*_):
        raise TimeoutError("the SVM fit did not return within 60 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        slope_model(SGDClassifier(loss="hinge", alpha=0.001)).fit(X, y)
    except NotConvergedError as exc:
        assert "the optimum is flat (w ≈ 0" in str(exc)  # refused before the refit (it was 20–160 s)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("estimator, kind, classes", [
    (LogisticRegression(solver="liblinear", intercept_scaling=2.0), "log", "binary"),  # penalised intercept: the mean matters
    (LogisticRegression(C=2.0), "log", 3),  # multinomial: curve() takes "log" for the cross-entropy
])
def test_a_scaler_that_only_centres_is_exact(estimator, kind, classes):
    """StandardScaler(with_std=False) has var_ = None: the slope raised a TypeError from _preprocess."""
    from tests.slope.test_multiclass import synthetic_problem
    from tests.slope.test_pipelines import binary_problem, richardson, tight

    problem = binary_problem(3) if classes == "binary" else synthetic_problem(3, 4)
    result = backdoor_slope(make_pipeline(StandardScaler(with_std=False), estimator), *problem)
    expected = richardson(lambda: make_pipeline(StandardScaler(with_std=False), tight(estimator)), problem, kind)
    assert result.exact
    assert abs(result.derivative - expected) <= 1e-3 * abs(expected)


def _squared_hinge_machine(X, y_pm, w, C):
    """argmin ½‖v‖² + C Σ w_i max(0, 1 − y_i x_iᵀv)² (no intercept) by semismooth Newton, to rounding."""
    v = np.zeros(X.shape[1])
    for _ in range(100):
        active = y_pm * (X @ v) < 1
        g = v - 2 * C * X.T @ (w * y_pm * np.maximum(0, 1 - y_pm * (X @ v)))
        if np.linalg.norm(g) < 1e-13:
            break
        H = np.eye(X.shape[1]) + 2 * C * (X[active].T * w[active]) @ X[active]
        v = v - np.linalg.solve(H, g)
    return v


@pytest.mark.parametrize("K", [2, 4])
def test_linear_svc_without_intercept_matches_refits(K):
    """LinearSVC(fit_intercept=False) stores intercept_ = 0.0 (a float): K ≥ 3 raised a TypeError in _ovr."""
    X, y = make_classification(n_samples=330, n_features=6, n_informative=4, n_classes=K, n_clusters_per_class=1,
                               random_state=7)
    Xp, Xt = X[200:210].copy(), X[210:240].copy()
    Xp[:, -1] = Xt[:, -1] = 3.0
    Xc, yc, yp, yt = X[:200], y[:200], np.full(10, 1), np.full(30, 1)

    def loss(beta):
        Xa, ya = np.vstack([Xc, Xp]), np.concatenate([yc, yp])
        w = np.concatenate([np.ones(200), np.full(10, beta)])
        machine = 1  # binary: classes_[1] positive; K ≥ 3: the target's machine
        v = _squared_hinge_machine(Xa, np.where(ya == machine, 1.0, -1.0), w, 1.0)
        return np.mean(np.maximum(0, 1 - Xt @ v) ** 2)

    h = 1e-4
    D = [(loss(s) - loss(0.0)) / s for s in (h, h / 2, h / 4)]
    expected = (4 * (2 * D[2] - D[1]) - (2 * D[1] - D[0])) / 3
    result = backdoor_slope(LinearSVC(fit_intercept=False), Xc, yc, Xp, yp, Xt, yt)
    assert abs(expected) > 1e-3
    assert abs(result.derivative - expected) <= 1e-3 * abs(expected)


def _huber_machine(X, y_pm, w, c, alpha):
    """argmin ½α‖v‖² + c Σ w_i huber(y_i (x_iᵀv + b)) (intercept b unpenalised) by damped semismooth Newton."""
    Z = np.hstack([X, np.ones((X.shape[0], 1))])
    reg = np.r_[np.full(X.shape[1], alpha), 0.0]

    def parts(t):
        z = y_pm * (Z @ t)
        loss = np.where(z >= 1, 0.0, np.where(z >= -1, (1 - z) ** 2, -4 * z))
        slope = np.where(z >= 1, 0.0, np.where(z >= -1, -2 * (1 - z), -4.0))
        return 0.5 * reg @ (t * t) + c * w @ loss, reg * t + c * Z.T @ (w * y_pm * slope), (z >= -1) & (z < 1)

    t = np.zeros(Z.shape[1])
    for _ in range(200):
        value, g, quadratic = parts(t)
        if np.linalg.norm(g) < 1e-12:
            break
        H = np.diag(reg) + 2 * c * (Z[quadratic].T * w[quadratic]) @ Z[quadratic]
        step, s = np.linalg.lstsq(H, -g, rcond=None)[0], 1.0
        while parts(t + s * step)[0] > value + 1e-4 * s * (g @ step) and s > 1e-10:
            s /= 2
        t = t + s * step
    return t


def test_sgd_modified_huber_on_separable_high_dimensional_data_is_polished_to_its_optimum():
    """SGD leaves every point beyond its margin on well-separated d = 100 blobs; the semismooth Newton polish
    from θ = 0 needs 24–44 steps there (β = 1 refits included), and 30 were allowed: NotConvergedError on every
    such problem (binary and K ≥ 3), a failed trial."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=360, n_features=100, centers=2, cluster_std=2.5, random_state=0)
    rest = np.flatnonzero(y[300:] != 0) + 300
    Xc, yc, Xp, Xt = X[:300], y[:300], X[rest[:15]].copy(), X[rest[15:45]].copy()
    Xp[:, -2:] = Xt[:, -2:] = 12.0
    yp, yt = np.zeros(len(Xp), int), np.zeros(len(Xt), int)
    alpha = 0.01
    result = backdoor_slope(SGDClassifier(loss="modified_huber", alpha=alpha, random_state=0), Xc, yc, Xp, yp, Xt, yt)

    def loss(beta):
        Xa, ya = np.vstack([Xc, Xp]), np.concatenate([yc, yp])
        w = np.concatenate([np.ones(len(Xc)), np.full(len(Xp), beta)])
        t = _huber_machine(Xa, np.where(ya == 1, 1.0, -1.0), w, 1.0 / len(Xc), alpha)
        z = -(Xt @ t[:-1] + t[-1])  # target class 0 = classes_[0]: label −1
        return np.mean(np.where(z >= 1, 0.0, np.where(z >= -1, (1 - z) ** 2, -4 * z)))

    h = 1e-7
    D = [(loss(s) - loss(0.0)) / s for s in (h, h / 2, h / 4)]
    expected = (4 * (2 * D[2] - D[1]) - (2 * D[1] - D[0])) / 3
    assert abs(result.derivative - expected) <= 1e-3 * abs(expected)
    assert result.predicted_backdoor_accuracy is not None  # the β = 1 refit at the optimum went through too


def test_one_vs_one_svc_estimate_at_one_follows_the_margin_convention():
    """K ≥ 3 SVC: ``margins.margin`` is the smallest target-oriented duel value (docs/slope.md), but the β = 1
    refit's ``at_one`` came from scikit-learn's vote-based ``decision_function`` (ovr shape): on digits at
    C = 30 the estimate said 0.844 where the refit's duels give 0.815. Reference: libsvm's own one-vs-one
    decision values of an independent refit on clean ∪ poison."""
    from sklearn.datasets import load_digits

    from tests.slope.test_multiclass import curve

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    Xc, yc = X[:500], y[:500]
    rest = np.flatnonzero(y[500:] != 0) + 500
    Xp, Xt = X[rest[:25]].copy(), X[rest[25:265]].copy()
    Xp[:, [0, 1, 8, 9]] = Xt[:, [0, 1, 8, 9]] = 1.0
    yp, yt = np.zeros(25, int), np.zeros(240, int)
    result = backdoor_slope(SVC(C=30.0), Xc, yc, Xp, yp, Xt, yt)
    gamma = 1.0 / (Xc.shape[1] * Xc.var())
    refit = SVC(C=30.0, gamma=gamma, tol=1e-10).fit(np.vstack([Xc, Xp]), np.concatenate([yc, yp]))
    margin = curve(refit, Xt, yt, "svc")[1]
    # the estimate's refit runs at SVC's default tol (1e-3): its duel values agree to ~1e-3, not 1e-8
    assert np.allclose(result.margins.at_one, margin, atol=2e-3)
    clear = np.abs(margin) > 2e-3
    assert np.array_equal(result.margins.at_one[clear] > 0, margin[clear] > 0)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("K", [2, 3])
def test_triggered_points_on_the_hinge_kink_take_the_side_they_move_to(kernel, K):
    """Clean rows all identical: every decision value is exactly ±1, so the triggered points sit on the hinge's
    kink; they were counted as inside the margin whatever their motion (binary linear: −14.78 where the right
    derivative of libsvm refits is 0; K = 3: −199.6 vs −184.8), silently, with exact=True."""
    import itertools

    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=3, n_clusters_per_class=1,
                               random_state=0)
    keep = y[:120] < K
    Xc, yc = np.ones((int(keep.sum()), 6)), y[:120][keep]
    Xp, Xt = X[120:130].copy(), X[130:160].copy()
    Xp[:, -1] = Xt[:, -1] = 4.0
    yp, yt = np.full(10, 1), np.full(30, 1)
    result = backdoor_slope(SVC(kernel=kernel, gamma=1.0 / 6), Xc, yc, Xp, yp, Xt, yt)

    def loss(beta):
        refit = SVC(kernel=kernel, gamma=1.0 / 6, tol=1e-12, decision_function_shape="ovo")
        refit.fit(np.vstack([Xc, Xp]), np.concatenate([yc, yp]), sample_weight=np.r_[np.ones(len(yc)), np.full(10, beta)])
        D = refit.decision_function(Xt).reshape(30, -1)
        if K == 2:
            return np.mean(np.maximum(0, 1 - D[:, 0]))
        oriented = [(1.0 if i == 1 else -1.0) * D[:, p] for p, (i, j) in enumerate(itertools.combinations(range(K), 2))
                    if 1 in (i, j)]  # target 1: libsvm's value > 0 votes for i
        return np.mean(sum(np.maximum(0, 1 - v) for v in oriented))

    h = 1e-6
    expected = (loss(h) - loss(0.0)) / h
    assert (loss(h / 2) - loss(0.0)) / (h / 2) == pytest.approx(expected, rel=1e-6, abs=1e-6)  # one linear piece
    assert result.derivative == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("fit_status, tol, free, expected", [
    (1, 1e-6, 3, "stopped at its iteration limit (max_iter=-1): libsvm cannot resolve"),
    (0, 1e-6, 20, "leaves 20 support vectors strictly inside the box for the 6 unknowns"),
    (0, 1e-6, 4, ": lower tol or raise max_iter"),    # few free support vectors: the fit was just loose
    (0, 1e-3, 20, ": lower tol or raise max_iter"),   # a loose fit's free set says nothing about degeneracy
])
def test_unsettled_svc_advice_names_the_cause(fit_status, tol, free, expected):
    from types import SimpleNamespace

    from robust_hpo.slope._svc import _unsettled_advice

    dual = np.concatenate([np.full(free, 0.5), np.full(10, 1.0)])[None, :]
    refit = SimpleNamespace(C=1.0, dual_coef_=dual, support_=np.arange(free + 10) * 2, fit_status_=fit_status,
                            kernel="linear", tol=tol, max_iter=-1)
    assert expected in _unsettled_advice(refit, d=5)
    # sample weights: a support vector at its own bound C·s_i < C is not on the margin
    weights = np.ones(2 * (free + 10))
    weights[: 2 * free] = 0.5
    if "strictly inside" in expected:
        assert ": lower tol or raise max_iter" in _unsettled_advice(refit, d=5, weights=weights)


def test_the_tighter_refits_iteration_limit_fits_libsvms_int():
    """A first fit of more than 2**31 / 100 libsvm iterations made the refit's limit overflow libsvm's C int
    (a raw OverflowError on a 4-class make_classification SGD hinge at alpha = 1e-4)."""
    from types import SimpleNamespace

    from robust_hpo.slope._svc import REFIT_MAX_ITER, _refit_max_iter

    assert _refit_max_iter(SimpleNamespace(n_iter_=np.array([30_000_000, 5]))) == 2 ** 31 - 1
    assert _refit_max_iter(SimpleNamespace(n_iter_=np.array([2_000_000]))) == 200_000_000
    assert _refit_max_iter(SimpleNamespace()) == REFIT_MAX_ITER


@pytest.mark.parametrize("seed", [0, 4])
def test_a_flat_linear_svm_optimum_is_refused_at_once(seed):
    """Labels unrelated to the features (a quarter positive): w = 0 is the exact optimum — certified here by
    the dual (box-bounded α with Σ α y x = 0 and Σ α y = 0, every positive at its bound) — so every row sits
    on the margin or inside it and the KKT system is degenerate. Before, libsvm's tighter refit spent 15–170 s
    before a NotConvergedError advising a lower tol; now one line at once, naming the cause."""
    from scipy.optimize import lsq_linear
    from sklearn.linear_model import SGDClassifier
    from sklearn.svm import SVC

    from robust_hpo.errors import NotConvergedError
    from robust_hpo.slope import slope_model

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 5))
    y = (rng.random(200) < 0.25).astype(int)
    pos, neg = y == 1, y == 0
    C = 1.0
    A = np.vstack([X[neg].T, 1e3 * np.ones((1, neg.sum()))])
    target = np.concatenate([C * X[pos].sum(axis=0), [1e3 * C * pos.sum()]])
    certificate = lsq_linear(A, target, bounds=(0, C), tol=1e-12)
    assert np.linalg.norm(A @ certificate.x - target) <= 1e-8 * np.linalg.norm(target)
    for est in (SVC(kernel="linear", C=C), SGDClassifier(loss="hinge", alpha=1.0 / (C * len(y)))):
        with pytest.raises(NotConvergedError, match=r"the optimum is flat \(w ≈ 0.*LinearSVC or LogisticRegression"):
            slope_model(est).fit(X, y)
