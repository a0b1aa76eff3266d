"""Parameter deviation: norms and angles against independent computations from scikit-learn's own outputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.analysis import parameter_deviation, rkhs_inner, weight_inner
from robust_hpo.plots import deviation_figure
from robust_hpo.testing import make_backdoor_problem


@pytest.fixture(scope="module")
def split():
    ds = load_dataset("digits", classes=(3, 8), n_train=150, n_test=60, seed=2)
    return poison(ds, BadNets(size=3, seed=2), fraction=0.15, seed=2)


def _flat(X):
    return X.reshape(len(X), -1).astype(np.float64)


def test_linear_kernel_rkhs_norm_is_the_coef_norm():
    X, y, *_ = make_backdoor_problem(0, n=120, d=5)
    svc = SVC(kernel="linear", C=0.7).fit(X, y)
    assert rkhs_inner(svc, svc) == pytest.approx(float(np.sum(svc.coef_ ** 2)), rel=1e-9)
    other = SVC(kernel="linear", C=5.0).fit(X, y)
    assert rkhs_inner(svc, other) == pytest.approx(float(svc.coef_.ravel() @ other.coef_.ravel()), rel=1e-9)


def test_rbf_inner_product_from_decision_values():
    """⟨w_a, w_b⟩ = Σ_i a_i (f_b(s_i) − b_b): sklearn's decision_function, not our kernel code."""
    X, y, *_ = make_backdoor_problem(1, n=150, d=4)
    a = SVC(kernel="rbf", C=2.0, gamma=0.3).fit(X, y)
    b = SVC(kernel="rbf", C=20.0, gamma=0.3).fit(X[:120], y[:120])
    expected_ab = float(a.dual_coef_.ravel() @ (b.decision_function(a.support_vectors_) - b.intercept_[0]))
    expected_aa = float(a.dual_coef_.ravel() @ (a.decision_function(a.support_vectors_) - a.intercept_[0]))
    assert rkhs_inner(a, b) == pytest.approx(expected_ab, rel=1e-8)
    assert weight_inner(a, a) == pytest.approx(expected_aa, rel=1e-8)
    assert expected_aa > 0


def test_endpoint_against_a_plain_poisoned_fit(split):
    est = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000)
    dev = parameter_deviation(est, split, betas=(0.0, 0.1, 1.0))
    clean = clone(est).fit(_flat(split.X_clean), split.y_clean).coef_.ravel()
    poisoned = clone(est).fit(_flat(split.X_train_poisoned), split.y_train_poisoned).coef_.ravel()
    assert dev.space == "euclidean"
    assert dev.norm[0] == pytest.approx(np.linalg.norm(clean), rel=1e-6)
    assert dev.norm[-1] == pytest.approx(np.linalg.norm(poisoned), rel=1e-6)
    cos = clean @ poisoned / (np.linalg.norm(clean) * np.linalg.norm(poisoned))
    assert dev.angle[-1] == pytest.approx(np.arccos(cos) / np.pi, rel=1e-5)
    assert dev.angle[0] == pytest.approx(0.0, abs=1e-7)
    assert dev.relative_norm[0] == 1.0


def test_rbf_uses_the_rkhs_and_the_angle_grows(split):
    dev = parameter_deviation(SVC(kernel="rbf", C=10.0, gamma=0.05), split, betas=(0.0, 0.05, 0.2, 1.0))
    assert dev.space == "rkhs"
    assert np.all((dev.angle >= 0) & (dev.angle <= 1))
    assert dev.angle[0] == pytest.approx(0.0, abs=1e-6)
    assert dev.angle[-1] > dev.angle[1] > 0  # the backdoored classifier departs from the clean one


def test_angle_hand_computed():
    """Two ridge fits on orthogonal designs: w_a ∝ e1, w_b ∝ e1 + e2 -> angle π/4 -> 0.25."""
    X = np.array([[1.0, 0.0], [-1.0, 0.0]] * 5)
    y = np.array([1, 0] * 5)
    a = RidgeClassifier(alpha=1.0, fit_intercept=False).fit(X, y)
    Xb = np.array([[1.0, 1.0], [-1.0, -1.0]] * 5)
    b = RidgeClassifier(alpha=1.0, fit_intercept=False).fit(Xb, y)
    cos = weight_inner(a, b) / np.sqrt(weight_inner(a, a) * weight_inner(b, b))
    assert np.arccos(cos) / np.pi == pytest.approx(0.25, rel=1e-9)


def test_deviation_figure(split):
    devs = [parameter_deviation(RidgeClassifier(alpha=a), split, betas=(0, 0.5, 1)) for a in (0.1, 10.0)]
    fig = deviation_figure(devs)
    assert len([t for t in fig.data if t.showlegend is not False]) == 2
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text and fig.layout.xaxis.title.text
    assert devs[0].to_dict()["space"] == "euclidean"


def test_bad_inputs():
    X, y, *_ = make_backdoor_problem(3, n=80, d=4)
    lin = SVC(kernel="linear").fit(X, y)
    rbf = SVC(kernel="rbf", gamma=0.1).fit(X, y)
    with pytest.raises(ValueError, match="a and b must share a kernel"):
        rkhs_inner(lin, rbf)
    with pytest.raises(ValueError, match="must share gamma"):
        rkhs_inner(rbf, SVC(kernel="rbf", gamma=0.2).fit(X, y))
    with pytest.raises(ValueError, match="a must be a fitted sklearn.svm.SVC"):
        rkhs_inner(SVC(), rbf)
    with pytest.raises(ValueError, match="same kind of estimator"):
        weight_inner(lin, LogisticRegression().fit(X, y))
    with pytest.raises(ValueError, match="must be fitted and linear"):
        weight_inner(LogisticRegression(), LogisticRegression())
    with pytest.raises(ValueError, match="results must be a non-empty sequence of DeviationResult"):
        deviation_figure([])


def test_rkhs_inner_of_one_vs_one_svc_stacks_the_pair_weights():
    """K ≥ 3: Σ_pairs ⟨w_a,p, w_b,p⟩; for a linear kernel that is scikit-learn's (pairs × d) coef_ inner."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = y < 4
    X, y = X[keep][:160] / 16.0, y[keep][:160]
    a = SVC(kernel="linear", C=0.5).fit(X, y)
    b = SVC(kernel="linear", C=2.0).fit(X[20:], y[20:])
    assert rkhs_inner(a, b) == pytest.approx(float(np.sum(a.coef_ * b.coef_)), rel=1e-10)
    r1, r2 = SVC(gamma=0.05).fit(X, y), SVC(gamma=0.05, C=3.0).fit(X, y)
    assert rkhs_inner(r1, r2) == pytest.approx(rkhs_inner(r2, r1), rel=1e-12)
    assert rkhs_inner(r1, r1) > 0
