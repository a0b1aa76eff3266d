"""One-vs-one SVC with all machines refined and differentiated together (robust_hpo.slope._ovo).

Against references independent of robust_hpo: finite differences of tightly converged, β-weighted
scikit-learn refits (clean sample weights and dict class weights included), and the KKT conditions of
every machine checked with scikit-learn's own kernels. The one-machine-at-a-time path (the binary
SVCSlope on each pair, taken for singular systems, degenerate machines and moving weights) must give
the same numbers. Problems: wine (3 classes, standardised), make_classification (5 classes), digits
(6 classes, many bound support vectors), with triggered points aimed at two targets — none tuned on.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_wine, make_classification
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.svm import SVC

from robust_hpo.slope import _ovo, slope_model
from tests.slope.test_convex import _rel_err
from tests.slope.test_multiclass import curve
from tests.slope.test_weights import weights_at


def wine_problem(seed: int):
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    Xc, yc, rest, y_rest = X[:130], y[:130], X[130:], y[130:]
    Xp, Xt = Xc[yc != 0][:8].copy(), rest[y_rest != 0].copy()
    Xp[:, -1] = Xt[:, -1] = 3.0  # the trigger: one feature far out
    yt = np.where(np.arange(len(Xt)) % 3 == 0, 1, 0)  # two targets
    return Xc, yc, Xp, np.zeros(len(Xp), dtype=int), Xt, yt


def blobs_problem(seed: int):
    X, y = make_classification(n_samples=330, n_features=6, n_informative=4, n_redundant=0, n_classes=5,
                               n_clusters_per_class=1, class_sep=1.5, random_state=seed)
    Xp, Xt = X[250:265].copy(), X[265:].copy()
    Xp[:, 0] += 2.5
    Xt[:, 0] += 2.5
    return X[:250], y[:250], Xp, np.full(len(Xp), 3), Xt, np.where(np.arange(len(Xt)) % 2 == 0, 3, 4)


def digits_problem(seed: int):
    X, y = load_digits(return_X_y=True)
    keep = y < 6
    X, y = X[keep] / 16.0, y[keep]
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    Xc, yc = X[:360], y[:360]
    Xp, Xt = X[360:380][y[360:380] != 2].copy(), X[380:440][y[380:440] != 2].copy()
    Xp[:, [7, 15]] = Xt[:, [7, 15]] = 1.0
    return Xc, yc, Xp, np.full(len(Xp), 2), Xt, np.full(len(Xt), 2)


CASES = [
    # (estimator, problem, clean sample weights)
    (SVC(C=3.0, gamma=0.2), wine_problem(5), False),
    (SVC(kernel="linear", C=0.5, class_weight={1: 2.0, 4: 0.5}), blobs_problem(7), True),
    (SVC(C=2.0, gamma=0.15), blobs_problem(8), True),
    (SVC(kernel="linear", C=0.05), digits_problem(9), False),
]


def _weights(problem, with_weights: bool):
    n = len(problem[0])
    return np.random.default_rng(n).uniform(0.3, 2.5, size=n) if with_weights else np.ones(n)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, problem, with_weights", CASES)
def test_batched_one_vs_one_matches_weighted_refits(estimator, problem, with_weights):
    s = _weights(problem, with_weights)
    model = slope_model(estimator).fit(problem[0], problem[1], sample_weight=s if with_weights else None)
    result = model.derivative(*problem[2:])
    assert result.exact and not model._multi.own  # every machine went through the batch
    X, y, Xp, yp, Xt, yt = problem
    tight = clone(estimator).set_params(tol=1e-12, class_weight=None)
    Xa, ya = np.vstack([X, Xp]), np.concatenate([y, yp])

    def refit(beta):
        return clone(tight).fit(Xa, ya, sample_weight=weights_at(beta, y, yp, estimator.class_weight, s))

    L0, M0 = curve(refit(0.0), Xt, yt, "svc")
    D, DM = [], []
    for h in (1e-4, 5e-5):
        L, M = curve(refit(h), Xt, yt, "svc")
        D.append((L.mean() - L0.mean()) / h)
        DM.append((M - M0) / h)
    assert _rel_err(D[0], D[1]) <= 1e-3  # one linear piece of the hinge curve
    assert abs(result.derivative) > 1e-3  # the poison moves the curve: not a vacuous match
    assert _rel_err(result.derivative, D[1]) <= 1e-3
    assert np.allclose(result.margins.margin, M0, rtol=1e-5, atol=1e-5)
    assert np.median(np.abs(result.margins.derivative - DM[1])) <= 1e-3 * np.max(np.abs(DM[1]))


@pytest.mark.parametrize("estimator, problem, with_weights", CASES)
def test_every_refined_machine_satisfies_its_kkt_conditions(estimator, problem, with_weights):
    """Each machine's α, b (read back from the batch) against the dual's conditions, with scikit-learn's
    kernels: 0 ≤ α ≤ C s κ, Σ α y = 0, y f ≥ 1 off the support, = 1 on the margin, ≤ 1 at the bound."""
    s = _weights(problem, with_weights)
    model = slope_model(estimator).fit(problem[0], problem[1], sample_weight=s if with_weights else None)
    part, X, codes = model._multi, problem[0], np.searchsorted(model.classes_, problem[1])
    kappa = np.array([(estimator.class_weight or {}).get(c, 1.0) for c in model.classes_])
    for p, (i, j) in enumerate(itertools.combinations(range(len(model.classes_)), 2)):
        rows = np.flatnonzero((codes == i) | (codes == j))
        y = np.where(codes[rows] == j, 1.0, -1.0)
        alpha = part.alpha[part.seg[p]:part.seg[p + 1]]
        box = estimator.C * s[rows] * kappa[codes[rows]]
        Xr = X[rows]
        K = linear_kernel(Xr) if estimator.kernel == "linear" else rbf_kernel(Xr, gamma=model.estimator_.gamma)
        yf = y * (K @ (alpha * y) + part.b[p])
        assert np.all(alpha >= 0) and np.all(alpha <= box * (1 + 1e-12))
        assert abs(alpha @ y) <= 1e-9 * box.max()
        free, bound, off = (alpha > 0) & (alpha < box), alpha >= box, alpha == 0
        assert free.any()
        assert np.all(np.abs(yf[free] - 1.0) <= 1e-7)
        assert np.all(yf[off] >= 1.0 - 1e-7) and np.all(yf[bound] <= 1.0 + 1e-7)


@pytest.mark.parametrize("estimator, problem, with_weights",
                         CASES + [(SVC(kernel="linear", C=1e-3), digits_problem(10), False)])
def test_machine_by_machine_path_gives_the_same_numbers(monkeypatch, estimator, problem, with_weights):
    """With the batch refused (every stacked solve deemed inexact) each machine is refined and
    differentiated alone by SVCSlope: the same slope, margins and predictions (the last case, at a tiny
    C, has machines without a margin support vector, which always go alone)."""
    s = _weights(problem, with_weights)
    sw = s if with_weights else None

    def run():
        model = slope_model(estimator).fit(problem[0], problem[1], sample_weight=sw)
        return model, model.derivative(*problem[2:], X_test=problem[0], y_test=problem[1])

    batched, result = run()
    monkeypatch.setattr(_ovo, "BATCH_RESIDUAL", -1.0)
    alone, expected = run()
    assert len(alone._multi.own) == len(alone._multi.pairs)
    assert result.exact == expected.exact
    assert result.derivative == pytest.approx(expected.derivative, rel=1e-9, abs=1e-12)
    assert np.allclose(result.margins.margin, expected.margins.margin, rtol=1e-9, atol=1e-10)
    assert np.allclose(result.margins.derivative, expected.margins.derivative, rtol=1e-7, atol=1e-9)
    assert np.array_equal(batched.predict(problem[4]), alone.predict(problem[4]))
    for key in ("n_margin_sv", "n_bound_sv"):
        assert batched.details_[key] == alone.details_[key]
    assert batched.details_.get("degenerate_machines") == alone.details_.get("degenerate_machines")


def test_rbf_machines_go_one_by_one_above_the_kernel_block_limit(monkeypatch):
    """Kernel blocks above BLOCK_LIMIT entries: every machine refined alone (bounded memory), same numbers."""
    estimator, problem = SVC(C=3.0, gamma=0.2), wine_problem(6)
    batched = slope_model(estimator).fit(*problem[:2])
    expected = batched.derivative(*problem[2:])
    monkeypatch.setattr(_ovo, "BLOCK_LIMIT", 0)
    alone = slope_model(estimator).fit(*problem[:2])
    result = alone.derivative(*problem[2:])
    assert not batched._multi.own and len(alone._multi.own) == len(alone._multi.pairs)
    assert result.derivative == pytest.approx(expected.derivative, rel=1e-9, abs=1e-12)
    assert np.allclose(result.margins.derivative, expected.margins.derivative, rtol=1e-7, atol=1e-9)
