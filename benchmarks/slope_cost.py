"""What the exact slope costs next to the fit, and next to retraining on poisoned data.

Prints, per learner and C, measured in this one run (medians over repeats):
  (a) time(fit + slope) / time(fit)            target <= 1.3
  (b) time(fit + poisoned refit) / time(fit + slope)   target >= 1.8
  (a') as (a) inside a study: the data-only Gram products are cached after the first trial
       (robust_hpo.slope.GramCache, as the Optuna objective does)
on MNIST 7-1 (1500 train / 500 test, BadNets 3x3, 10 % poison), plus the four learners on
d = 9216 random ReLU features of the same images (the size of AlexNet's features in the paper;
issue 5's target there: (a) <= 1.5).

    python -m benchmarks.slope_cost [--repeats 5] [--threads N]     (from the repository root)
"""

from __future__ import annotations

import argparse
import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from benchmarks._common import limit_blas_threads, median_seconds, mnist_pair_split
from robust_hpo.slope import GramCache, slope_model


STUDY_COL = "(a') study"


def learners() -> list[tuple[str, float, object]]:
    rows: list[tuple[str, float, object]] = []
    for C in (1e-3, 1e-1, 10.0):
        rows.append(("logistic", C, LogisticRegression(C=C, max_iter=5000)))
        rows.append(("ridge", C, RidgeClassifier(alpha=1 / (2 * C))))
        rows.append(("linear_svm", C, SVC(kernel="linear", C=C)))
    for C in (1e-1, 1.0, 10.0):
        rows.append(("rbf_svm", C, SVC(kernel="rbf", C=C, gamma=0.02)))
    return rows


def measure(est: object, data: tuple[np.ndarray, ...], repeats: int) -> tuple[float, float, float, float, float]:
    Xc, yc, Xp, yp, Xt, yt = data
    X_pois = np.vstack([Xc, Xp])
    y_pois = np.concatenate([yc, yp])

    def fit() -> None:
        clone(est).fit(Xc, yc)

    def fit_and_slope() -> None:
        slope_model(est).fit(Xc, yc).derivative(Xp, yp, Xt, yt)

    cache = GramCache()
    slope_model(est, cache=cache).fit(Xc, yc)  # the study's first trial fills the cache

    def fit_and_slope_cached() -> None:
        slope_model(est, cache=cache).fit(Xc, yc).derivative(Xp, yp, Xt, yt)

    def fit_and_refit() -> None:
        clone(est).fit(Xc, yc)
        clone(est).fit(X_pois, y_pois)

    t_fit = median_seconds(fit, repeats)
    t_slope = median_seconds(fit_and_slope, repeats)
    t_refit = median_seconds(fit_and_refit, repeats)
    t_cached = median_seconds(fit_and_slope_cached, repeats)
    slope = slope_model(est).fit(Xc, yc).derivative(Xp, yp, Xt, yt).slope
    return t_fit, t_slope, t_refit, t_cached, slope


def random_features(X: np.ndarray, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((X.shape[1], d)) / np.sqrt(X.shape[1])
    return np.maximum(X @ R, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="cap the BLAS thread pools (default: as the libraries start)")
    parser.add_argument("--skip-features", action="store_true", help="MNIST pixels only")
    args = parser.parse_args()
    split, source = mnist_pair_split((7, 1))
    print(limit_blas_threads(args.threads))
    data = split.flat()
    print(f"data: {source}; n_clean={len(data[0])}, n_poison={len(data[2])}, n_trigger={len(data[4])}")
    header = (f"{'learner':<11} {'C':>7} {'fit s':>8} {'fit+slope s':>12} {'fit+refit s':>12} "
              f"{'(a) <=1.3':>10} {'(b) >=1.8':>10} {STUDY_COL:>11} {'slope':>7}")
    print(header)
    print("-" * len(header))
    for name, C, est in learners():
        row(name, C, *measure(est, data, args.repeats))
    if args.skip_features:
        return
    Xc, yc, Xp, yp, Xt, yt = data
    feats = [random_features(A, 9216) for A in (Xc, Xp, Xt)]
    fdata = (feats[0], yc, feats[1], yp, feats[2], yt)
    print(f"\nthe four learners on d = 9216 random ReLU features (the size of AlexNet's), n_clean = {len(Xc)}")
    for name, C, est in feature_scale_learners():
        model = slope_model(est).fit(feats[0], yc)
        where = model.details_.get("space", "kkt")
        row(name, C, *measure(est, fdata, max(1, args.repeats // 2)), note=f"({where})")


def feature_scale_learners() -> list[tuple[str, float, object]]:
    rows: list[tuple[str, float, object]] = []
    for C in (1e-3, 1e-1, 10.0):
        rows.append(("logistic", C, LogisticRegression(C=C, max_iter=5000)))
        rows.append(("ridge", C, RidgeClassifier(alpha=1 / (2 * C))))
    for C in (1e-1, 10.0):
        rows.append(("linear_svm", C, SVC(kernel="linear", C=C)))
        rows.append(("rbf_svm", C, SVC(kernel="rbf", C=C, gamma=1.0 / 9216)))
    return rows


def row(name: str, C: float, t_fit: float, t_slope: float, t_refit: float, t_cached: float,
        slope: float, note: str = "") -> None:
    print(f"{name:<11} {C:>7g} {t_fit:>8.3f} {t_slope:>12.3f} {t_refit:>12.3f} "
          f"{t_slope / t_fit:>10.2f} {t_refit / t_slope:>10.2f} {t_cached / t_fit:>11.2f} {slope:>7.3f} {note}")


if __name__ == "__main__":
    main()
