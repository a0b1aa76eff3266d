"""The paper's first finding on real data: less regularisation (larger C) gives a larger slope."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.slope import backdoor_slope

C_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]

LEARNERS = {
    "logistic": lambda C: LogisticRegression(C=C, max_iter=5000),
    "ridge": lambda C: RidgeClassifier(alpha=1.0 / (2.0 * C)),
    "linear_svm": lambda C: SVC(kernel="linear", C=C),
}


def _slopes(split, make) -> list[float]:
    return [backdoor_slope(make(C), split).slope for C in C_GRID]


@pytest.mark.parametrize("learner", sorted(LEARNERS))
@pytest.mark.parametrize("pair", [(3, 8), (1, 7)])
def test_slope_grows_with_C_on_digits(learner, pair):
    split = poison(load_dataset("digits", classes=pair, seed=0), BadNets(size=2, seed=0), fraction=0.1, seed=0)
    slopes = _slopes(split, LEARNERS[learner])
    assert spearmanr(C_GRID, slopes).statistic >= 0.9, slopes
    assert slopes[-1] - slopes[0] > 0.3, slopes  # from robust (≈ 0) towards vulnerable


@pytest.mark.parametrize("pair, n_test", [((7, 1), 500), ((3, 0), 400), ((5, 2), 400)])
def test_slope_grows_with_C_on_mnist(mnist_dir, pair, n_test):
    # the shared 10k split holds 1990 (3-0) and 1924 (5-2) images: 1500 train leave < 500 test
    ds = load_dataset("mnist", root=mnist_dir, classes=pair, n_train=1500, n_test=n_test, seed=0)
    split = poison(ds, BadNets(size=3, seed=0), fraction=0.1, seed=0)
    for learner in ("logistic", "ridge"):
        slopes = _slopes(split, LEARNERS[learner])
        assert spearmanr(C_GRID, slopes).statistic >= 0.9, (learner, slopes)
        assert slopes[-1] > 0.9 and slopes[0] < 0.05, (learner, slopes)


def test_rbf_slope_grows_with_gamma_on_digits():
    split = poison(load_dataset("digits", classes=(3, 8), seed=0), BadNets(size=2, seed=0), fraction=0.1, seed=0)
    gammas = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    slopes = [backdoor_slope(SVC(kernel="rbf", C=10.0, gamma=g), split).slope for g in gammas]
    assert spearmanr(gammas, slopes).statistic >= 0.8, slopes
    assert np.all(np.isfinite(slopes))
