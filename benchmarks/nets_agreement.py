"""Agreement and cost of the network slopes on a digits grid (epochs × width × seeds; MLP or CNN).

For every configuration and seed: train the network on the clean set, compute the influence slope
(no poisoned training) and the finite-difference slope (Eq. 7, retraining at each β with the same
initialisation and batch order), and train at β = 1 (the in-place poisoned set) for the backdoor
accuracy. Prints Spearman correlations between the three and each slope's cost per trial
relative to one clean training ((fit + slope) / fit), all measured in this run (torch on one
thread by default: tiny networks are fastest so, and the CI machine has two shared cores).

    python -m benchmarks.nets_agreement                # MLP: 5 epochs × 3 widths × 3 seeds, ~1.5 min
    python -m benchmarks.nets_agreement --family cnn   # CNN: 4 epochs × 3 widths × 2 seeds, ~1.5 min
    python -m benchmarks.nets_agreement --quick        # 2 × 2 × 1, a smoke run
    python -m benchmarks.nets_agreement --family cnn --option hessian_samples=128   # fixed options
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.learners import get_family

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--lr", type=float, default=None, help="fixed learning rate (default: the family's)")
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="default: 2 5 10 20 40 (mlp), 2 5 10 20 (cnn)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="default: 16 64 256 (mlp), 4 16 64 (cnn: the family's search range)")
    parser.add_argument("--seeds", type=int, default=None, help="default: 3 (mlp), 2 (cnn)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed family option (PARAM_KEYS), e.g. hessian_samples=128; repeatable")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="finite-difference β values (the smallest is the FD slope compared)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny nets: 1 is fastest)")
    parser.add_argument("--quick", action="store_true", help="2 epochs values × 2 widths × 1 seed")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"],
                        help="mnist: 1400 training / 400 test images from --mnist-root (a held-out check)")
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="a subset of classes, e.g. 3 5")
    parser.add_argument("--mnist-root", default=str(MNIST))
    args = parser.parse_args()
    grid = GRIDS[args.family]
    args.epochs = args.epochs or grid["epochs"]
    args.widths = args.widths or grid["widths"]
    args.seeds = args.seeds or grid["seeds"]
    if args.quick:
        args.epochs, args.widths, args.seeds = [2, 10], [16, 64], 1
    torch.set_num_threads(args.threads)
    betas = sorted(args.betas)
    if 1.0 not in betas:
        betas.append(1.0)  # the β = 1 training gives the backdoor accuracy

    family = get_family(args.family).with_options(**dict(_option(text) for text in args.option))
    fixed = {} if args.lr is None else {"lr": args.lr}
    warm_up(family)
    rows = []
    data: dict[str, Any] = {} if args.classes is None else {"classes": args.classes}
    if args.dataset == "mnist":
        data.update(n_train=1400, n_test=400, root=args.mnist_root)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        split = poison(load_dataset(args.dataset, seed=seed, **data), BadNets(size=3, seed=seed), fraction=0.1,
                       seed=seed)
        Xp, yp, Xt, yt = split.X_poison, split.y_poison, split.X_trigger, split.y_trigger
        for epochs in args.epochs:
            for width in args.widths:
                fitted = family.fit({"epochs": epochs, "width": width, **fixed}, split.X_clean,
                                    split.y_clean, seed=seed)
                accuracy = float(np.mean(fitted.predict(split.X_test) == split.y_test))
                start = time.perf_counter()
                influence = fitted.influence_slope(Xp, yp, Xt, yt, X_test=split.X_test, y_test=split.y_test)
                influence_seconds = time.perf_counter() - start
                start = time.perf_counter()
                fd = fitted.finite_difference_slope(Xp, yp, Xt, yt, betas=betas)
                fd_seconds = time.perf_counter() - start
                one_beta_seconds = fd_seconds / len(betas)  # the paper's FD needs one retraining per β
                backdoor = fd.details["backdoor_accuracy"][fd.details["betas"].index(1.0)]
                rows.append(dict(seed=seed, epochs=epochs, width=width, accuracy=accuracy,
                                 influence=influence.slope, influence_derivative=influence.derivative,
                                 iterations=influence.details["iterations"], damping=influence.damping,
                                 margins_seconds=influence.details["margins_seconds"],
                                 solve_seconds=influence.details["solve_seconds"],
                                 predicted=influence.predicted_backdoor_accuracy,
                                 normalised_margin=influence.normalised_margin,
                                 baseline=influence.baseline_backdoor_accuracy,
                                 baseline_fd=fd.details["backdoor_accuracy_at_zero"],
                                 fd={b: s for b, s in zip(fd.details["betas"], fd.details["slopes"],
                                                          strict=True)},
                                 fd_derivative=fd.derivative, backdoor=backdoor, fit=fitted.fit_seconds,
                                 influence_seconds=influence_seconds, fd_one_beta_seconds=one_beta_seconds))
                r = rows[-1]
                print(f"seed {seed} epochs {epochs:3d} width {width:4d}: clean acc {accuracy:.3f}  "
                      f"influence slope {r['influence']:.3f} ({r['iterations']} CG it, damping "
                      f"{r['damping']:.2g})  FD slope(β={betas[0]:g}) {r['fd'][betas[0]]:.3f}  "
                      f"backdoor acc(β=1) {backdoor:.3f}  fit {r['fit']:.2f}s", flush=True)
    report(rows, betas, args)


GRIDS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": [2, 5, 10, 20, 40], "widths": [16, 64, 256], "seeds": 3},
    "cnn": {"epochs": [2, 5, 10, 20], "widths": [4, 16, 64], "seeds": 2},
}


def _option(text: str) -> tuple[str, Any]:
    """"key=value" with the value read as JSON when it parses (numbers, lists), else as a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def warm_up(family: Any) -> None:
    """One untimed trial, so that one-off costs (lazy imports, allocator) do not land on the first row."""
    split = poison(load_dataset("digits", classes=[3, 8]), BadNets(), fraction=0.1)
    fitted = family.fit({"epochs": 1, "width": 4}, split.X_clean, split.y_clean)
    fitted.influence_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
    fitted.finite_difference_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)


def report(rows: list[dict], betas: list[float], args: argparse.Namespace) -> None:
    influence = np.array([r["influence"] for r in rows])
    backdoor = np.array([r["backdoor"] for r in rows])
    fd = {b: np.array([r["fd"][b] for r in rows]) for b in betas}
    keys = [(r["epochs"], r["width"]) for r in rows]
    configs = sorted(set(keys))

    def per_config(values: np.ndarray) -> np.ndarray:
        return np.array([values[[k == c for k in keys]].mean() for c in configs])

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(spearmanr(a, b).statistic)

    options = ", ".join(args.option) or "the family's defaults"
    print(f"\n{args.family} ({options}): {len(configs)} configurations × {args.seeds} seeds = {len(rows)} "
          f"trials ({args.dataset}{'' if args.classes is None else ' ' + '-'.join(map(str, args.classes))}, "
          f"seeds from {args.first_seed}, BadNets 3×3, 10 % poison, target 'next')")
    print("Spearman correlations (all trials | seed-averaged configurations):")
    for b in betas:
        print(f"  influence slope vs FD slope (β={b:g}):      {rho(influence, fd[b]):6.3f} | "
              f"{rho(per_config(influence), per_config(fd[b])):6.3f}")
    if len(betas) > 1:  # how well the reference agrees with itself bounds the agreement above
        print(f"  FD slope (β={betas[0]:g}) vs FD slope (β={betas[1]:g}), the reference itself: "
              f"{rho(fd[betas[0]], fd[betas[1]]):6.3f} | "
              f"{rho(per_config(fd[betas[0]]), per_config(fd[betas[1]])):6.3f}")
    within = [rho(influence[[r["epochs"] == e for r in rows]], fd[betas[0]][[r["epochs"] == e for r in rows]])
              for e in sorted({r["epochs"] for r in rows})]
    print(f"  influence vs FD (β={betas[0]:g}) within one epochs value (width, seed vary), mean over "
          f"epochs values: {np.nanmean(within):6.3f}  ({', '.join(f'{w:.2f}' for w in within)})")
    print(f"  influence slope vs backdoor accuracy (β=1): {rho(influence, backdoor):6.3f} | "
          f"{rho(per_config(influence), per_config(backdoor)):6.3f}")
    for b in betas:
        print(f"  FD slope (β={b:g}) vs backdoor accuracy (β=1): {rho(fd[b], backdoor):6.3f} | "
              f"{rho(per_config(fd[b]), per_config(backdoor)):6.3f}")
    ratio = np.array([r["influence_derivative"] / r["fd_derivative"] for r in rows])
    print(f"dL/dβ magnitude, influence / FD (β={betas[0]:g}): median {np.median(ratio):.2f} "
          f"(range {ratio.min():.2f} to {ratio.max():.2f}); per epochs value: "
          + ", ".join(f"{e}: {np.median(ratio[[r['epochs'] == e for r in rows]]):.2f}"
                      for e in sorted({r["epochs"] for r in rows})) + " (target 0.67-1.5)")
    fit = np.array([r["fit"] for r in rows])
    influence_cost = (fit + np.array([r["influence_seconds"] for r in rows])) / fit
    fd_one = (fit + np.array([r["fd_one_beta_seconds"] for r in rows])) / fit
    predicted = np.array([r["predicted"] for r in rows])
    margin = np.array([r["normalised_margin"] for r in rows])
    print("Margins (issue 11) from the same solve:")
    estimate = get_family(args.family).with_options(**dict(_option(t) for t in args.option)).configs({})[1].estimate
    print(f"  predicted backdoor accuracy at β=1 (estimate {estimate!r}) vs true (same seed): Spearman "
          f"{rho(predicted, backdoor):6.3f}, "
          f"mean |error| {np.mean(np.abs(predicted - backdoor)):.3f}")
    print(f"  normalised linearised margin vs backdoor accuracy (β=1): Spearman {rho(margin, backdoor):6.3f}")
    same = all(r["baseline"] == r["baseline_fd"] for r in rows)
    print(f"  baseline backdoor accuracy (β=0) equals the clean network's: {same}")
    margins_cost = np.array([r["margins_seconds"] / r["solve_seconds"] for r in rows])
    whole = np.array([r["margins_seconds"] / r["influence_seconds"] for r in rows])
    print(f"  margins' cost / the CG solve's: median {np.median(margins_cost):.1%}, max {margins_cost.max():.1%} "
          f"(/ the whole influence slope: median {np.median(whole):.1%}; the scale reuses the logits of "
          f"predict(X_test), as in a study)")
    print("Cost per trial relative to one clean training ((fit + slope) / fit):")
    label = "influence slope + estimate" if estimate == "fine-tune" else "influence slope"
    print(f"  {label}: median {np.median(influence_cost):.2f}×, mean "
          f"{influence_cost.mean():.2f}×, all trials together "
          f"{(fit.sum() + sum(r['influence_seconds'] for r in rows)) / fit.sum():.2f}×")
    print(f"  FD slope, one β:            median {np.median(fd_one):.2f}×, mean {fd_one.mean():.2f}×")
    print(f"  FD slope, {len(betas)} β (as above): median {np.median(1 + (fd_one - 1) * len(betas)):.2f}×")


if __name__ == "__main__":
    main()
