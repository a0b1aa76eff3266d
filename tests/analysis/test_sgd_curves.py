"""SGDClassifier's β-weighted refits (``fit_weighted``, hence curves, deviation and the β = 1 estimate)
reach the exact optimum of SGD's objective — the model the slope differentiates — not SGD's
early-stopped refit: against independent solutions of ``½α‖w‖² + (1/n) Σ s_i ℓ_i`` (n clean rows) and
the curve's own finite-difference slope at small β against the slope."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from robust_hpo.analysis import backdoor_curve
from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.slope import slope_model
from tests.slope.test_linear_svc_sgd import machine_scores
from tests.slope.test_multiclass import synthetic_problem
from tests.slope.test_pipelines import binary_problem

KINDS = {"log_loss": "log", "modified_huber": "huber", "hinge": "hinge"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("loss", list(KINDS))
@pytest.mark.parametrize("spec, scale", [(("binary", 12), False), (("synthetic", 3, 13), False),
                                         (("synthetic", 4, 14), True)])
def test_sgd_fit_weighted_is_the_optimum_of_sgds_objective(loss, spec, scale):
    problem = binary_problem(spec[1]) if spec[0] == "binary" else synthetic_problem(spec[1], spec[2])
    X, y, Xp, yp, Xt, yt = problem
    sgd = SGDClassifier(loss=loss, alpha=3e-3, max_iter=20, tol=1e-2, random_state=0)  # stops early
    est = make_pipeline(StandardScaler(), sgd) if scale else sgd
    model = slope_model(est).fit(X, y)
    C = 1.0 / (sgd.alpha * len(X))
    for beta in (0.0, 0.3, 1.0):
        refit = model.fit_weighted(X, y, Xp, yp, beta)
        w = np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)])
        Xa, ya = np.vstack([X, Xp])[w > 0], np.concatenate([y, yp])[w > 0]
        Xs = Xt
        if scale:  # the scaler fitted on the same β-weighted rows
            scaler = StandardScaler().fit(Xa, sample_weight=w[w > 0])
            Xa, Xs = scaler.transform(Xa), scaler.transform(Xt)
        F, _ = machine_scores(KINDS[loss], C, Xa, ya, w[w > 0], Xs)
        mine = np.asarray(refit.decision_function(Xt)).reshape(len(Xt), -1)
        assert np.allclose(mine, F, atol=1e-4 * max(1.0, np.abs(F).max())), (beta, np.abs(mine - F).max())
        itself = SGDClassifier(**sgd.get_params()).fit(Xa, ya, sample_weight=w[w > 0])
        assert not np.allclose(np.asarray(itself.decision_function(Xs)).reshape(len(Xt), -1), F, atol=1e-3), \
            "SGD itself stops short of the optimum here (the test would not tell the two apart)"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("loss", list(KINDS))
@pytest.mark.parametrize("classes", [(3, 8), (0, 3, 8)])
def test_sgd_curves_agree_with_the_slope_at_small_beta(loss, classes):
    """SGD's own refits made this curve noise (its FD slope off by orders of magnitude, even in sign)."""
    data = load_dataset("digits", classes=classes, n_train=120, n_test=40, seed=2)
    split = poison(data, BadNets(size=2, seed=0), fraction=0.1, seed=0)
    est = SGDClassifier(loss=loss, alpha=1e-2, random_state=0)
    # within the hinge's first linear piece; huber's curvature jumps where points cross |z| = 1: tiny steps
    h = {"hinge": 2.5e-4, "modified_huber": 1e-5, "log_loss": 1e-3}[loss]
    curve = backdoor_curve(est, split, betas=[0.0, h, 2 * h, 4 * h], tol=None)
    L = curve.trigger_loss
    if loss == "hinge":  # piecewise linear in β: the first piece
        fd = (L[1] - L[0]) / h
        assert (L[2] - L[0]) / (2 * h) == pytest.approx(fd, rel=1e-3, abs=1e-6)
    else:  # Richardson
        d1, d2, d4 = (L[1] - L[0]) / h, (L[2] - L[0]) / (2 * h), (L[3] - L[0]) / (4 * h)
        fd = (8 * d1 - 6 * d2 + d4) / 3
    assert abs(curve.derivative) > 1e-3
    assert curve.slope.exact
    assert curve.derivative == pytest.approx(fd, rel=1e-3)
