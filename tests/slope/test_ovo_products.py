"""The one-vs-one SVC's cost paths (robust_hpo.slope._ovo): within-machine products class by class, KKT
stacks grouped by size, K(X_S, X_S) kept from the last solve for the derivative.

Against references independent of robust_hpo: scikit-learn's own kernels machine by machine, one
``numpy.linalg.solve`` per machine, and finite differences of tightly converged β-weighted refits on
ten-class digits (seeds and subsets not used for tuning), linear and RBF.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.svm import SVC

from robust_hpo.slope import _ovo, slope_model
from tests.slope.test_convex import _rel_err
from tests.slope.test_multiclass import curve


def digits_ten(seed: int, n: int = 500, classes: int = 10):
    """Digits with ``classes`` classes; poison: other classes' images with two corner pixels lit,
    labelled 0; triggered points likewise (targets 0 and 1)."""
    X, y = load_digits(return_X_y=True)
    keep = y < classes
    X, y = X[keep] / 16.0, y[keep]
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    Xc, yc = X[:n], y[:n]
    rest, y_rest = X[n:n + 200], y[n:n + 200]
    Xp = Xc[yc > 1][:40].copy()
    Xt = rest[y_rest > 1].copy()
    Xp[:, [0, 56]] = Xt[:, [0, 56]] = 1.0
    yt = np.where(np.arange(len(Xt)) % 4 == 0, 1, 0)
    return Xc, yc, Xp, np.zeros(len(Xp), dtype=int), Xt, yt


def _fitted(estimator, problem):
    model = slope_model(estimator).fit(problem[0], problem[1])
    return model, model._multi


def _kernel(model, A, B):
    est = model.estimator_
    return linear_kernel(A, B) if est.kernel == "linear" else rbf_kernel(A, B, gamma=est.gamma)


@pytest.mark.parametrize("estimator, seed", [(SVC(C=4.0, gamma=0.05), 11), (SVC(kernel="linear", C=0.2), 12)])
def test_products_match_each_machine_kernel(estimator, seed):
    """``_products`` (every machine, some machines, few values wanted, two columns; coefficients on
    rows that libsvm left out, so that RBF blocks grow) against K(X_rows, X_rows) of each machine."""
    problem = digits_ten(seed, n=300, classes=6)
    model, part = _fitted(estimator, problem)
    X, codes = problem[0], np.searchsorted(model.classes_, problem[1])
    alpha = part.alpha
    part._blocks = _ovo._MachineProducts(part, alpha > 0)  # as while refining (freed after fitting)
    rng = np.random.default_rng(seed)
    P = len(part.pairs)
    for cols in (np.arange(P), np.array([0, 4, P - 1])):
        e = part._entries(cols)
        values = rng.standard_normal((e.size, 2)) * (rng.random((e.size, 1)) < 0.3)
        for at in (e, e[rng.random(e.size) < 0.05]):
            for V in (values, values[:, 0]):
                got = part._products(V, e, cols, at)
                want = np.zeros_like(got)
                for k, p in enumerate(cols):
                    i, j = part.pairs[p]
                    rows = np.flatnonzero((codes == i) | (codes == j))
                    mine = slice(part.seg[p], part.seg[p + 1])
                    full = np.zeros((part.r.size,) + V.shape[1:])
                    full[e] = V
                    f = _kernel(model, X[rows], X[rows]) @ full[mine]
                    where = np.flatnonzero(part.mach[at] == p)
                    want[where] = f[at[where] - part.seg[p]]
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_stacked_solves_grouped_by_size_match_one_solve_per_machine(monkeypatch):
    """Machines in several stacks (grouping forced) against ``numpy.linalg.solve`` of each machine's own
    KKT system, with scikit-learn's kernel; and the size groups cover every machine once, ascending."""
    counts = np.array([3, 40, 4, 41, 17, 5, 39, 18, 0, 60])
    groups = _ovo._size_buckets(counts)
    assert len(groups) > 1
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(counts.size))
    assert all(np.all(np.diff(g) > 0) for g in groups)
    monkeypatch.setattr(_ovo, "BUCKET_OVERHEAD", 0.0)  # a stack per size group
    problem = digits_ten(13, n=400)
    model, part = _fitted(SVC(C=5.0, gamma=0.04), problem)
    part._blocks = _ovo._MachineProducts(part, part.alpha > 0)
    cols = np.arange(len(part.pairs))
    at, machine, slot = part._layout(cols, part.S)
    rng = np.random.default_rng(0)
    rhs_S, rhs_eq = rng.standard_normal(at.size), rng.standard_normal(cols.size)
    x_S, x_b, ok = part._stacked_solve(cols, at, machine, slot, rhs_S, rhs_eq, damping=1e-3)
    assert ok.all() and len(_ovo._size_buckets(np.bincount(machine, minlength=cols.size))) > 1
    for k in cols:
        mine = machine == k
        XS, yS = problem[0][part.r[at[mine]]], part.y[at[mine]]
        s = yS.size
        kkt = np.zeros((s + 1, s + 1))
        kkt[:s, :s] = yS[:, None] * _kernel(model, XS, XS) * yS[None, :] + 1e-3 * np.eye(s)
        kkt[:s, s] = kkt[s, :s] = yS
        want = np.linalg.solve(kkt, np.append(rhs_S[mine], rhs_eq[k]))
        np.testing.assert_allclose(x_S[mine], want[:s], rtol=1e-8, atol=1e-9)
        assert x_b[k] == pytest.approx(want[s], rel=1e-8, abs=1e-9)


@pytest.mark.parametrize("estimator", [SVC(C=5.0, gamma=0.04), SVC(kernel="linear", C=0.3)])
def test_kept_kernel_blocks_are_those_of_the_final_margin_sets(estimator):
    """The derivative reuses each machine's Q_SS = y_s y_t K(x_s, x_t) from its last solve: it must be that
    of the final margin set (after the active-set corrections), computed here with scikit-learn's kernel."""
    problem = digits_ten(14)
    model, part = _fitted(estimator, problem)
    for p in range(len(part.pairs)):
        if p in part.own:
            continue
        mine = slice(part.seg[p], part.seg[p + 1])
        XS, yS = problem[0][part.r[mine][part.S[mine]]], part.y[mine][part.S[mine]]
        np.testing.assert_allclose(part._gram[p], np.outer(yS, yS) * _kernel(model, XS, XS), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, seed", [(SVC(C=3.0, gamma=0.03), 21), (SVC(kernel="linear", C=0.05), 22)])
def test_ten_classes_match_weighted_refits(estimator, seed):
    """K = 10 (45 machines through the batch) against finite differences of tightly converged refits."""
    problem = digits_ten(seed)
    model, part = _fitted(estimator, problem)
    result = model.derivative(*problem[2:])
    assert result.exact and not part.own and len(part.pairs) == 45
    X, y, Xp, yp, Xt, yt = problem
    tight = clone(estimator).set_params(tol=1e-12)
    Xa, ya = np.vstack([X, Xp]), np.concatenate([y, yp])

    def refit(beta):
        w = np.concatenate([np.ones(len(y)), np.full(len(yp), beta)])
        return clone(tight).fit(Xa, ya, sample_weight=w)

    L0, M0 = curve(refit(0.0), Xt, yt, "svc")
    D, DM = [], []
    for h in (2e-5, 1e-5):  # inside the first linear piece (the linear machines' sets change early)
        L, M = curve(refit(h), Xt, yt, "svc")
        D.append((L.mean() - L0.mean()) / h)
        DM.append((M - M0) / h)
    assert _rel_err(D[0], D[1]) <= 1e-3  # one linear piece of the hinge curve
    assert abs(result.derivative) > 1e-3
    assert _rel_err(result.derivative, D[1]) <= 1e-3
    assert np.allclose(result.margins.margin, M0, rtol=1e-5, atol=1e-5)
    assert np.median(np.abs(result.margins.derivative - DM[1])) <= 1e-3 * np.max(np.abs(DM[1]))
    for p, (i, j) in enumerate(itertools.combinations(range(10), 2)):  # every machine's KKT conditions
        codes = np.searchsorted(model.classes_, y)
        rows = np.flatnonzero((codes == i) | (codes == j))
        yy = np.where(codes[rows] == j, 1.0, -1.0)
        alpha = part.alpha[part.seg[p]:part.seg[p + 1]]
        yf = yy * (_kernel(model, X[rows], X[rows]) @ (alpha * yy) + part.b[p])
        free, off = (alpha > 0) & (alpha < estimator.C), alpha == 0
        assert np.all(np.abs(yf[free] - 1.0) <= 1e-7) and np.all(yf[off] >= 1.0 - 1e-7)
        assert np.all(yf[alpha >= estimator.C] <= 1.0 + 1e-7) and abs(alpha @ yy) <= 1e-9 * estimator.C
