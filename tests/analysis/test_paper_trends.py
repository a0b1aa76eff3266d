"""The paper's trends (Cinà et al., Sec. 3), on digits pairs and MNIST pairs, averaged over three seeds.

* Larger triggers give larger slopes and earlier-falling learning curves.
* Larger poison fractions give earlier-falling curves and a larger backdoor derivative dL/dβ (β weights
  *all* m poison points). The normalised slope −(2/π)·arctan(dL/dβ / m) is an *average per poison
  point* and, to first order, does not depend on m: it is not expected to grow with the fraction.
* Smaller RBF γ gives flatter curves.
* The slope ranks a C grid like retraining on the poisoned set does: Spearman(slope, backdoor accuracy)
  is clearly positive.

"Earlier-falling" is measured as the relative drop of the triggered-test loss, (L(0) − L(β)) / L(0),
averaged over a small β grid (β ≤ 0.2). MNIST tests skip when ../shared/datasets/mnist is absent.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.attacks import BadNets, poison
from robust_hpo.analysis import backdoor_curve
from robust_hpo.datasets import load_dataset
from robust_hpo.slope import backdoor_slope
from robust_hpo.analysis import paper_grid

SEEDS = (0, 1, 2)
EARLY_BETAS = (0.0, 0.02, 0.05, 0.1, 0.2)
LEARNERS = {
    "logistic": lambda: LogisticRegression(C=1.0, max_iter=5000),
    "ridge": lambda: RidgeClassifier(alpha=0.5),
    "linear_svm": lambda: SVC(kernel="linear", C=1.0),
}


def _digits(seed: int):
    return load_dataset("digits", classes=(3, 8), n_train=250, n_test=100, seed=seed)


def _mnist(root, seed: int):
    return load_dataset("mnist", root=root, classes=(7, 1), n_train=300, n_test=100, seed=seed)


def _early_drop(est, split) -> float:
    curve = backdoor_curve(est, split, betas=EARLY_BETAS)
    return float(np.mean((curve.trigger_loss[0] - curve.trigger_loss[1:]) / curve.trigger_loss[0]))


def _trigger_sizes(datasets, sizes):
    """Mean (over seeds) slope per learner and trigger size, and mean early drop of the ridge curve."""
    slopes = {name: np.zeros(len(sizes)) for name in LEARNERS}
    drops = np.zeros(len(sizes))
    for seed, ds in datasets:
        for k, size in enumerate(sizes):
            split = poison(ds, BadNets(size=size, seed=seed), fraction=0.1, seed=seed)
            for name, make in LEARNERS.items():
                slopes[name][k] += backdoor_slope(make(), split).slope / len(SEEDS)
            drops[k] += _early_drop(LEARNERS["ridge"](), split) / len(SEEDS)
    return slopes, drops


def _fractions(datasets, size, fractions):
    derivs = {name: np.zeros(len(fractions)) for name in LEARNERS}
    drops = np.zeros(len(fractions))
    for seed, ds in datasets:
        for k, frac in enumerate(fractions):
            split = poison(ds, BadNets(size=size, seed=seed), fraction=frac, seed=seed)
            for name, make in LEARNERS.items():
                derivs[name][k] += -backdoor_slope(make(), split).derivative / len(SEEDS)
            drops[k] += _early_drop(LEARNERS["ridge"](), split) / len(SEEDS)
    return derivs, drops


def _increasing(values) -> bool:
    return bool(np.all(np.diff(values) > 0))


def test_larger_triggers_on_digits():
    slopes, drops = _trigger_sizes([(s, _digits(s)) for s in SEEDS], sizes=(1, 2, 3))
    for name, values in slopes.items():
        assert _increasing(values), (name, values)
    assert _increasing(drops), drops


def test_larger_triggers_on_mnist(mnist_dir):
    slopes, drops = _trigger_sizes([(s, _mnist(mnist_dir, s)) for s in SEEDS], sizes=(2, 3, 5))
    for name, values in slopes.items():
        assert _increasing(values), (name, values)
    assert _increasing(drops), drops


def test_larger_fractions_on_digits():
    derivs, drops = _fractions([(s, _digits(s)) for s in SEEDS], size=2, fractions=(0.05, 0.1, 0.2))
    for name, values in derivs.items():
        assert _increasing(values), (name, values)
    assert _increasing(drops), drops


def test_larger_fractions_on_mnist(mnist_dir):
    derivs, drops = _fractions([(s, _mnist(mnist_dir, s)) for s in SEEDS], size=3, fractions=(0.05, 0.1, 0.2))
    for name, values in derivs.items():
        assert _increasing(values), (name, values)
    assert _increasing(drops), drops


def _gamma_drops(datasets, size, gammas):
    drops = np.zeros(len(gammas))
    slopes = np.zeros(len(gammas))
    for seed, ds in datasets:
        split = poison(ds, BadNets(size=size, seed=seed), fraction=0.1, seed=seed)
        for k, g in enumerate(gammas):
            curve = backdoor_curve(SVC(kernel="rbf", C=10.0, gamma=g), split, betas=EARLY_BETAS)
            drops[k] += np.mean((curve.trigger_loss[0] - curve.trigger_loss[1:]) / curve.trigger_loss[0]) / len(SEEDS)
            slopes[k] += curve.slope.slope / len(SEEDS)
    return drops, slopes


def test_smaller_gamma_flatter_rbf_curves_on_digits():
    drops, slopes = _gamma_drops([(s, _digits(s)) for s in SEEDS], 2, (1e-3, 1e-2, 1e-1))
    assert _increasing(drops) and _increasing(slopes), (drops, slopes)


def test_smaller_gamma_flatter_rbf_curves_on_mnist(mnist_dir):
    drops, slopes = _gamma_drops([(s, _mnist(mnist_dir, s)) for s in SEEDS], 3, (1e-3, 1e-2))
    assert _increasing(drops) and _increasing(slopes), (drops, slopes)


C_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def _spearman(datasets, size, learner):
    values = []
    for seed, ds in datasets:
        split = poison(ds, BadNets(size=size, seed=seed), fraction=0.1, seed=seed)
        rho, _, note = paper_grid(split, learner=learner, C=C_GRID, gamma=None).spearman()
        assert rho is not None, note
        values.append(rho)
    return values


def test_slope_ranks_like_retraining_on_digits():
    rhos = _spearman([(s, _digits(s)) for s in SEEDS], 2, "ridge")
    assert np.mean(rhos) > 0.6 and min(rhos) > 0.0, rhos


def test_slope_ranks_like_retraining_on_mnist(mnist_dir):
    rhos = _spearman([(s, _mnist(mnist_dir, s)) for s in SEEDS], 3, "linear_svm")
    assert np.mean(rhos) > 0.6 and min(rhos) > 0.0, rhos
