"""Many threat models per trial: one fit + K slopes against retraining once per attack.

K = 9 attacks (BadNets 3×3, 4×4, 6×6 × 5 %, 10 %, 15 % poisoned) sharing one clean set
(:func:`robust_hpo.attacks.poison_many`) on MNIST 7-1 (1500 train / 500 test; a generated stand-in if
../shared/datasets/mnist is absent). Per learner and C, measured in this one run (medians over
interleaved repeats; the machine is shared, so single timings are noisy):

  slopes:    what one trial of a study costs: the learner family's fit on the clean set (scikit-learn
             fit + factorisation; its Gram cache warm, as in every trial after the first),
             clean-test accuracy, and robust_hpo.objective.evaluate_threats (9 slopes)
  retrain:   clean fit + clean-test accuracy + 9 poisoned scikit-learn refits + 9 backdoor accuracies
  ratio = retrain / slopes                                                   target >= 6

The one-time cost of the Gram cache (once per study, not per trial) is printed separately.

    python -m benchmarks.multi_attack [--repeats 5] [--threads N]     (from the repository root)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from sklearn.base import clone

from benchmarks._common import SHARED_MNIST, _stand_in, limit_blas_threads
from robust_hpo.learners import get_family as default_family
from robust_hpo._validation import flatten_images
from robust_hpo.datasets import load_dataset
from robust_hpo.attacks import MultiSplit, poison_many, threat_grid
from robust_hpo.objective import evaluate_threats

SIZES = (3, 4, 6)
FRACTIONS = (0.05, 0.1, 0.15)


def learners() -> list[tuple[str, dict[str, float]]]:
    rows: list[tuple[str, dict[str, float]]] = []
    for C in (1e-2, 1.0):
        rows += [("logistic", {"C": C}), ("ridge", {"C": C}), ("linear_svm", {"C": C})]
    rows += [("rbf_svm", {"C": C, "gamma": 0.02}) for C in (1.0, 10.0)]
    return rows


def data(seed: int = 0) -> tuple[MultiSplit, str]:
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        ds = load_dataset("mnist", root=SHARED_MNIST, classes=(7, 1), n_train=1500, n_test=500, seed=seed)
        source = f"MNIST 7-1 from {SHARED_MNIST} (1500 train / 500 test)"
    else:
        ds = _stand_in((7, 1), 1500, 500, seed)
        source = f"GENERATED STAND-IN for MNIST 7-1 (shared split not found at {SHARED_MNIST})"
    return poison_many(ds, threat_grid(sizes=SIZES, fractions=FRACTIONS, seed=seed), seed=seed), source


def flat_attacks(multi: MultiSplit) -> tuple[tuple[np.ndarray, ...], list[tuple[np.ndarray, ...]]]:
    """Flattened arrays outside the timed region: (Xc, yc, X_test, y_test) and per attack
    (X_poison, y_poison, X_trigger, y_trigger, X_train_poisoned, y_train_poisoned)."""
    first = multi.first
    Xc = flatten_images(first.X_clean)
    base = (Xc, first.y_clean, flatten_images(first.X_test), first.y_test)
    attacks = []
    for split in multi.splits.values():
        Xp = flatten_images(split.X_poison)
        attacks.append((Xp, split.y_poison, flatten_images(split.X_trigger), split.y_trigger,
                        np.vstack([Xc, Xp]), np.concatenate([first.y_clean, split.y_poison])))
    return base, attacks


def runners(learner: str, params: dict[str, float], multi: MultiSplit, base: tuple[np.ndarray, ...],
            attacks: list[tuple[np.ndarray, ...]]) -> tuple[Callable[[], list[float]], Callable[[], list[float]]]:
    Xc, yc, X_test, y_test = base
    family = default_family(learner)
    est = family.estimator(params)
    first = multi.first

    def with_slopes() -> list[float]:
        fitted = family.fit(params, first.X_clean, first.y_clean)
        float(np.mean(fitted.predict(first.X_test) == first.y_test))
        return [r.slope for r in evaluate_threats(fitted, multi).values()]

    def with_retraining() -> list[float]:
        clean = clone(est).fit(Xc, yc)
        float(np.mean(clean.predict(X_test) == y_test))
        out = []
        for _, _, Xt, yt, Xtr, ytr in attacks:
            poisoned = clone(est).fit(Xtr, ytr)
            out.append(float(np.mean(poisoned.predict(Xt) == yt)))
        return out

    return with_slopes, with_retraining


def interleaved_medians(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, alternating which runs first in each repeat."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(repeats):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        for key, fn in order:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return statistics.median(times["a"]), statistics.median(times["b"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="cap the BLAS thread pools (default: as the libraries start)")
    args = parser.parse_args()
    print(limit_blas_threads(args.threads))
    multi, source = data()
    base, attacks = flat_attacks(multi)
    print(f"data: {source}; K = {len(multi)} attacks sharing n_clean = {len(base[1])} "
          f"(poison m = {[len(a[1]) for a in attacks]}), n_trigger = {len(attacks[0][3])}")
    header = (f"{'learner':<11} {'params':<16} {'1 fit + 9 slopes s':>19} {'1 + 9 refits s':>15} "
              f"{'ratio >= 6':>11} {'worst slope':>12} {'first trial s':>14}")
    print(header)
    print("-" * len(header))
    ratios: dict[str, list[float]] = {}
    for name, params in learners():
        slopes_fn, retrain_fn = runners(name, params, multi, base, attacks)
        start = time.perf_counter()
        worst = max(slopes_fn())  # first call: builds the study's Gram cache once (warm-up)
        first = time.perf_counter() - start
        retrain_fn()
        t_slopes, t_retrain = interleaved_medians(slopes_fn, retrain_fn, args.repeats)
        ratio = t_retrain / t_slopes
        ratios.setdefault(name, []).append(ratio)
        text = ", ".join(f"{k}={v:g}" for k, v in params.items())
        print(f"{name:<11} {text:<16} {t_slopes:>19.3f} {t_retrain:>15.3f} {ratio:>11.1f} {worst:>12.3f} "
              f"{first:>14.3f}")
    print("\nper learner (geometric mean over C): "
          + ", ".join(f"{k} {float(np.exp(np.mean(np.log(v)))):.1f}x" for k, v in ratios.items()))
    every = [r for v in ratios.values() for r in v]
    print(f"all configurations: median ratio {statistics.median(every):.1f}x, minimum {min(every):.1f}x")


if __name__ == "__main__":
    main()
