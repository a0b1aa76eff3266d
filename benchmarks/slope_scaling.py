"""How fit and fit + slope grow with the number of training points, at one thread.

For n = 1k … 8k training points of MNIST's 10k split (even vs odd digits, BadNets 3×3 on 10 % of
them; a generated stand-in when ../shared/datasets/mnist is absent), on the pixels (d = 784) and on
d = 9216 random ReLU features of the same images, per learner: the time of the fit and of
fit + slope (with the exactness polish and the margins), their ratio (a), and the peak memory
(tracemalloc: numpy's arrays, not BLAS workspaces) of each; then the growth exponent k of
time ∝ n^k (least squares on log-log) of each column.

    python -m benchmarks.slope_scaling [--sizes 1000 2000 4000 8000] [--dims 784 9216]
                                       [--learners logistic ridge linear_svm rbf_svm] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from benchmarks._common import SHARED_MNIST, limit_blas_threads
from benchmarks.slope_cost import random_features
from robust_hpo.attacks import BadNets
from robust_hpo.slope import slope_model


def learner(name: str, d: int) -> object:
    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=5000)
    if name == "ridge":
        return RidgeClassifier(alpha=0.5)
    if name == "linear_svm":
        return SVC(kernel="linear", C=1.0)
    return SVC(kernel="rbf", C=1.0, gamma=0.02 if d == 784 else 1.0 / d)


def even_odd_images(n_max: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (n, 1, 28, 28) and even/odd labels (0/1): MNIST's 10k split, or a generated stand-in."""
    rng = np.random.default_rng(seed)
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        from robust_hpo.datasets import load_dataset

        ds = load_dataset("mnist", root=SHARED_MNIST, n_train=n_max + 500, n_test=10, seed=seed)  # (test split unused)
        X, y = ds.X_train, ds.y_train % 2
        source = f"MNIST 10k split from {SHARED_MNIST} (even vs odd digits)"
    else:
        protos = rng.random((2, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 2, size=n_max + 500)
        X = np.clip(protos[y] + 0.3 * rng.standard_normal((y.size, 1, 28, 28)), 0, 1).astype(np.float32)
        source = "GENERATED STAND-IN (MNIST not found): 28x28 random blobs, two classes"
    return X, y, source


def problem(X: np.ndarray, y: np.ndarray, n: int, d: int) -> tuple[np.ndarray, ...]:
    """n clean+poison training rows (10 % poisoned in place with the other label) and 500 triggered
    test rows; flattened, or random features when d != 784."""
    rng = np.random.default_rng(1)
    train = rng.permutation(n)
    m = n // 10
    poison, clean = train[:m], train[m:]
    test = np.arange(n, n + 500)
    trigger = BadNets(size=3, seed=0)
    Xp = trigger.apply(X[poison], y[poison])
    Xt = trigger.apply(X[test], y[test])
    rows = [A.reshape(len(A), -1).astype(np.float64) for A in (X[clean], Xp, Xt)]
    if d != rows[0].shape[1]:
        rows = [random_features(A, d) for A in rows]
    return rows[0], y[clean], rows[1], 1 - y[poison], rows[2], 1 - y[test]


def timed(fn) -> tuple[float, float]:
    """(seconds, peak MiB of numpy allocations) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return seconds, peak


def exponent(sizes: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--dims", type=int, nargs="+", default=[784, 9216])
    parser.add_argument("--learners", nargs="+", default=["logistic", "ridge", "linear_svm", "rbf_svm"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    print(limit_blas_threads(1))
    X, y, source = even_odd_images(max(args.sizes))
    print(f"data: {source}; 10 % poison (BadNets 3x3, label flipped), 500 triggered test points")
    for d in args.dims:
        for name in args.learners:
            print(f"\n{name}, d = {d}:")
            print(f"{'n':>6} {'fit s':>8} {'fit+slope s':>12} {'(a)':>6} {'fit MiB':>8} {'fit+slope MiB':>14}  how")
            fits, slopes = [], []
            for n in args.sizes:
                Xc, yc, Xp, yp, Xt, yt = problem(X, y, n, d)
                est = learner(name, d)
                runs = {"fit": [], "slope": []}
                peaks = {"fit": 0.0, "slope": 0.0}
                last = {}

                def fit() -> None:
                    clone(est).fit(Xc, yc)

                def fit_and_slope() -> None:
                    last["r"] = slope_model(est).fit(Xc, yc).derivative(Xp, yp, Xt, yt)

                for _ in range(args.repeats):  # interleaved
                    for key, fn in (("fit", fit), ("slope", fit_and_slope)):
                        seconds, peak = timed(fn)
                        runs[key].append(seconds)
                        peaks[key] = max(peaks[key], peak)
                t_fit, t_slope = statistics.median(runs["fit"]), statistics.median(runs["slope"])
                fits.append(t_fit)
                slopes.append(t_slope)
                r = last["r"]
                print(f"{n:>6} {t_fit:>8.3f} {t_slope:>12.3f} {t_slope / t_fit:>6.2f} {peaks['fit']:>8.0f} "
                      f"{peaks['slope']:>14.0f}  {r.method} {r.details.get('cg_iterations', '')}", flush=True)
            if len(args.sizes) > 1:
                print(f"growth exponent (time ∝ n^k): fit k = {exponent(args.sizes, fits):.2f}, "
                      f"fit + slope k = {exponent(args.sizes, slopes):.2f}")


if __name__ == "__main__":
    main()
