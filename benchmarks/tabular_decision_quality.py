"""Decision quality on tabular data: is the recommended configuration robust once trained on poison?

Each case is a tabular study generated in code and run by ``robust_hpo.study.run_study`` (the code
path of ``robust-hpo run``): scikit-learn's breast cancer table, or synthetic tables
(``make_classification``, written to an ``.npz`` file read through ``[data] dataset = "npz"``),
standardised, with a feature-space trigger (``trigger = "features"``, columns set to training
percentiles) and an all-to-one or ``"next"`` target; the four convex learners, TPE,
``[constraint] min_accuracy`` and ``[report] tolerance``. Then EVERY candidate of the
recommendation (feasible trials within the tolerance of the best clean accuracy) is retrained on the
poisoned training set (clean ∪ poison) with plain scikit-learn estimators built here, and its backdoor
accuracy measured (share of triggered test rows classified as the target). Per case:

    regret = backdoor accuracy of the recommended trial − the lowest among the candidates
    rho    = Spearman correlation of the stored slope with the retrained backdoor accuracy (candidates)

Run: ``python -m benchmarks.tabular_decision_quality [--quick] [--seed-offset 100] [--n-trials 40]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from scipy.stats import spearmanr
from sklearn.datasets import make_classification

from benchmarks._common import run_table
from benchmarks.decision_quality import sklearn_estimator
from robust_hpo.objective import candidates, recommend
from robust_hpo.study import build_splits, parse_study_config, run_study

LEARNERS = ("logistic", "ridge", "linear_svm", "rbf_svm")


@dataclass(frozen=True)
class Case:
    table: str            # "breast_cancer" or "synthetic"
    n_features: int
    features: tuple[int, ...]
    value: str
    fraction: float
    target: Any           # "next" or a class id
    seed: int

    @property
    def label(self) -> str:
        return (f"{self.table}{'' if self.table == 'breast_cancer' else f'-d{self.n_features}'} "
                f"f{'+'.join(map(str, self.features))}={self.value} {self.fraction:.0%} "
                f"t={self.target} s{self.seed}")


CASES: tuple[Case, ...] = (
    Case("breast_cancer", 30, (21, 27), "q99", 0.05, 0, 1),
    Case("breast_cancer", 30, (1, 7, 20), "q95", 0.10, 1, 2),
    Case("breast_cancer", 30, (4,), "q99", 0.05, "next", 3),
    Case("synthetic", 12, (0, 5), "q99", 0.05, 1, 4),
    Case("synthetic", 20, (3, 11, 17), "q97", 0.10, 0, 5),
    Case("synthetic", 8, (2,), "q99", 0.05, "next", 6),
    Case("synthetic", 30, (10, 25), "q99", 0.15, 1, 7),
    Case("synthetic", 16, (0, 1), "q90", 0.05, 0, 8),
)
QUICK = (CASES[0], CASES[3], CASES[5])


def study_config(case: Case, folder: Path, *, n_trials: int, tolerance: float, min_accuracy: float) -> Any:
    data: dict[str, Any] = {"n_train": 300, "n_test": 150, "seed": case.seed, "standardize": True}
    if case.table == "breast_cancer":
        data["dataset"] = "breast_cancer"
    else:
        X, y = make_classification(n_samples=500, n_features=case.n_features,
                                   n_informative=max(2, case.n_features // 3), class_sep=1.0,
                                   flip_y=0.02, random_state=case.seed)
        path = folder / f"table-{case.seed}.npz"
        np.savez(path, X=X * np.linspace(1, 50, case.n_features), y=y)  # columns on different scales
        data.update(dataset="npz", path=str(path))
    return parse_study_config({
        "study": {"name": case.label.replace(" ", "_").replace("=", "").replace("+", "_").replace("%", "pc"),
                  "n_trials": n_trials, "seed": case.seed, "sampler": "tpe", "threads": 1},
        "data": data,
        "attack": {"trigger": "features", "features": list(case.features), "values": [case.value],
                   "fraction": case.fraction, "target": case.target, "seed": case.seed},
        "search": {"learners": list(LEARNERS)},
        "constraint": {"min_accuracy": min_accuracy},
        "report": {"tolerance": tolerance},
    })


@dataclass
class Outcome:
    case: Case
    n_trials: int
    n_failed: int
    n_candidates: int
    recommended_backdoor: float
    best_backdoor: float
    accurate_backdoor: float
    rho: float
    study_seconds: float
    retrain_seconds: float

    @property
    def regret(self) -> float:
        return self.recommended_backdoor - self.best_backdoor


def backdoor_accuracy(record: Any, split: Any) -> float:
    model = sklearn_estimator(record).fit(split.X_train_poisoned, split.y_train_poisoned)
    return float(np.mean(model.predict(split.X_trigger) == split.y_trigger))


def run_case(case: Case, args: argparse.Namespace, folder: Path) -> Outcome:
    config = study_config(case, folder, n_trials=args.n_trials, tolerance=args.tolerance,
                          min_accuracy=args.min_accuracy)
    start = time.perf_counter()
    where = folder / config.study.name
    study = run_study(config, storage=str(where / "study.log"), output=where, progress=False).study
    study_seconds = time.perf_counter() - start
    chosen, pool = recommend(study, args.tolerance), candidates(study, args.tolerance)
    if chosen is None or pool is None:
        raise RuntimeError(f"{case.label}: no recommendation (no feasible trial with an exact slope)")
    (split,) = build_splits(config).values()
    start = time.perf_counter()
    backdoor = {r.number: backdoor_accuracy(r, split) for r in pool.records}
    retrain_seconds = time.perf_counter() - start
    best = min(backdoor.values())
    accurate = min(pool.records, key=lambda r: (-r.clean_accuracy, r.slope, r.number))
    slopes = [r.slope for r in pool.records]
    truth = [backdoor[r.number] for r in pool.records]
    rho = float(spearmanr(slopes, truth).statistic) if len(set(truth)) > 1 and len(set(slopes)) > 1 else float("nan")
    return Outcome(case=case, n_trials=len(study.trials),
                   n_failed=sum(t.state.name == "FAIL" for t in study.trials), n_candidates=len(pool.records),
                   recommended_backdoor=backdoor[chosen.record.number], best_backdoor=best,
                   accurate_backdoor=backdoor[accurate.number], rho=rho, study_seconds=study_seconds,
                   retrain_seconds=retrain_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three cases, 25 trials each")
    parser.add_argument("--n-trials", type=int, default=None, help="trials per study (default 40; --quick 25)")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every seed (unseen tables)")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--min-accuracy", type=float, default=0.8)
    args = parser.parse_args()
    args.n_trials = args.n_trials or (25 if args.quick else 40)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cases = [replace(c, seed=c.seed + args.seed_offset) for c in (QUICK if args.quick else CASES)]
    print(f"{len(cases)} tabular cases, {args.n_trials} TPE trials each (logistic, ridge, linear/RBF SVM), "
          f"min_accuracy {args.min_accuracy}, tolerance {args.tolerance}, seed offset {args.seed_offset}; "
          "every candidate retrained on the poisoned training set with scikit-learn")
    header = (f"{'case':<46} {'fail':>4} {'cand.':>5} {'rec. BA':>8} {'best BA':>8} {'regret':>7} "
              f"{'most-acc.':>9} {'rho':>6}")
    outcomes: list[Outcome] = run_table(
        cases, lambda case, folder: run_case(case, args, folder), header,
        lambda case, o: (f"{case.label:<46} {o.n_failed:>4} {o.n_candidates:>5} {o.recommended_backdoor:>8.3f} "
                         f"{o.best_backdoor:>8.3f} {o.regret:>7.3f} {o.accurate_backdoor - o.best_backdoor:>9.3f} "
                         f"{o.rho:>6.2f}"))
    regrets = [o.regret for o in outcomes]
    share = sum(r <= 0.02 + 1e-12 for r in regrets) / len(regrets)
    rhos = [o.rho for o in outcomes if np.isfinite(o.rho)]
    print(f"\nrecommendation: regret <= 0.02 in {share:.0%} of cases, mean regret {statistics.fmean(regrets):.3f}; "
          f"most accurate candidate: mean regret {statistics.fmean(o.accurate_backdoor - o.best_backdoor for o in outcomes):.3f}")
    print(f"Spearman(slope, retrained backdoor accuracy) over the candidates: median "
          f"{statistics.median(rhos) if rhos else float('nan'):.2f} ({len(rhos)} cases with varying values)")
    print(f"failed trials: {sum(o.n_failed for o in outcomes)} of {sum(o.n_trials for o in outcomes)}; "
          f"study time {sum(o.study_seconds for o in outcomes):.0f} s, retraining "
          f"{sum(o.retrain_seconds for o in outcomes):.0f} s")


if __name__ == "__main__":
    main()
