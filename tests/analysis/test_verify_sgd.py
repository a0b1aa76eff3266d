"""Verification retrains SGD at the exact optimum of its objective — the model the study fits, predicts with
and estimates for (docs/slope.md) — not at SGD's early stop. Reference: LogisticRegression solves the same
binary objective ½α‖w‖² + (1/N) Σ log(1 + exp(−y f)) (C = 1/(αN), unpenalised intercept) at a tight tol."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from robust_hpo.analysis import retrain_poisoned
from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.learners import get_family


@pytest.mark.parametrize("alpha", [1e-6, 1e-3])
def test_sgd_log_is_retrained_at_the_optimum_of_its_objective(alpha):
    split = poison(load_dataset("digits", classes=(1, 7), n_train=200, n_test=80, seed=1), BadNets(size=3, seed=1),
                   fraction=0.1, seed=1)
    X = split.X_train_poisoned.reshape(len(split.y_train_poisoned), -1)
    reference = LogisticRegression(C=1.0 / (alpha * X.shape[0]), solver="newton-cholesky", tol=1e-12, max_iter=1000)
    reference.fit(X, split.y_train_poisoned)

    def accuracy(X_rows, y):
        return float(np.mean(reference.predict(X_rows.reshape(len(y), -1)) == y))

    got = retrain_poisoned("sgd_log", {"alpha": alpha}, split)
    assert got == (accuracy(split.X_test, split.y_test), accuracy(split.X_trigger, split.y_trigger))
    # SGD's own early-stopped fit is another model at the small alpha (what verify measured before)
    sgd = get_family("sgd_log").estimator({"alpha": alpha}).fit(X, split.y_train_poisoned)
    if alpha == 1e-6:
        assert np.any(sgd.predict(split.X_trigger.reshape(len(split.y_trigger), -1))
                      != reference.predict(split.X_trigger.reshape(len(split.y_trigger), -1)))
