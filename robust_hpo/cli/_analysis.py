"""``robust-hpo curves | deviation | explain | verify | heatmap``: the analysis subcommands.

:data:`COMMANDS` adds them to the ``robust-hpo`` parser (one handler each). Every command works on a
study (``STUDY.toml``, or ``--storage`` with the problem stored in the study) — the poisoned split is
rebuilt from the study's ``[data]`` and ``[attack]`` and configurations come from its trials — or,
except ``verify``, from flags (``--dataset``, ``--trigger``, ``--learner``, ``--C``, ...). Figures are
standalone plotly HTML files written to the study's output folder (or ``--output``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robust_hpo.cli._args import (
    PROG,
    add_override_arguments,
    fraction,
    non_negative_float,
    non_negative_int,
    overrides,
    positive_float,
    positive_int,
)

FLAGS_OUTPUT = Path("robust_hpo_output") / "analysis"


# ---------------------------------------------------------------------------------------------
# Argument types and shared argument groups
# ---------------------------------------------------------------------------------------------
def _class_id(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("study (configurations and data from an existing study)")
    group.add_argument("study", metavar="STUDY.toml", type=Path, nargs="?", help="study file")
    group.add_argument("--storage", metavar="URL", help="study storage (default: the study file's); alone, the "
                       "data and attack are read from the study itself")
    group.add_argument("--study-name", metavar="NAME", help="study name (default: [study] name)")
    add_override_arguments(parser)


def _add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help=f"folder for the HTML files (default: the study's output folder, or {FLAGS_OUTPUT})")


def _add_trial_argument(parser: argparse.ArgumentParser, *, many: bool) -> None:
    parser.add_argument("--trial", metavar="N", type=non_negative_int, nargs="+" if many else None,
                        help=("trial numbers (default: the Pareto front)" if many else
                              "trial number (default: the recommended Pareto trial)"))


def _add_flag_arguments(parser: argparse.ArgumentParser, *, grid: bool = True) -> None:
    data = parser.add_argument_group("data and attack from flags (when no study is given)")
    data.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    data.add_argument("--classes", nargs=2, metavar="CLASS", type=_class_id, default=[3, 8],
                      help="the class pair (default: 3 8)")
    data.add_argument("--n-train", type=positive_int, default=250, help="training points (default: 250)")
    data.add_argument("--n-test", type=positive_int, default=100, help="test points (default: 100)")
    data.add_argument("--root", metavar="DIR", help="data folder (e.g. ../shared/datasets/mnist)")
    data.add_argument("--data-seed", type=non_negative_int, default=0, help="data subsample seed (default: 0)")
    data.add_argument("--trigger", choices=("badnets", "invisible_grid"), default="badnets",
                      help="trigger kind (default: badnets)")
    data.add_argument("--size", type=positive_int, help="BadNets patch side in pixels (default: 3)")
    data.add_argument("--position", help="BadNets corner (default: bottom-right)")
    data.add_argument("--epsilon", type=positive_float, help="invisible grid intensity (default: 10/255)")
    data.add_argument("--spacing", type=positive_int, help="invisible grid spacing (default: 4)")
    data.add_argument("--fraction", type=positive_float, default=0.1, help="poisoned fraction (default: 0.1)")
    data.add_argument("--attack-seed", type=non_negative_int, default=0, help="poison/trigger seed (default: 0)")
    learner = parser.add_argument_group("configurations from flags")
    learner.add_argument("--learner", choices=("logistic", "ridge", "linear_svm", "rbf_svm"),
                         help="convex learner family (required without a study)")
    learner.add_argument("--C", dest="C", type=positive_float, nargs="+" if grid else None, metavar="C",
                         help="C value(s)" + (" (one configuration per value)" if grid else ""))
    learner.add_argument("--gamma", type=positive_float, nargs="+" if grid else None, metavar="G",
                         help="RBF γ value(s) (rbf_svm only)" + ("; crossed with --C" if grid else ""))


_FLAG_DEFAULTS = {"dataset": "digits", "classes": [3, 8], "n_train": 250, "n_test": 100, "root": None,
                  "data_seed": 0, "trigger": "badnets", "size": None, "position": None, "epsilon": None,
                  "spacing": None, "fraction": 0.1, "attack_seed": 0, "learner": None, "C": None, "gamma": None}


# ---------------------------------------------------------------------------------------------
# Resolving a study or flags into (split, configurations, output folder)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Context:
    split: Any
    output: Path
    study: Any = None
    tolerance: float = 0.02
    seed: int = 0


def _uses_study(args: argparse.Namespace) -> bool:
    return getattr(args, "study", None) is not None or getattr(args, "storage", None) is not None


def _check_no_flags(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k, default in _FLAG_DEFAULTS.items()
             if hasattr(args, k) and getattr(args, k) != default]
    if given:
        raise ValueError(f"{', '.join(given)} cannot be combined with a study: the data, attack and "
                         "configurations come from the study (use --trial to choose configurations)")


def _study_context(args: argparse.Namespace) -> _Context:
    from robust_hpo.study import PROBLEM_ATTR, build_split, load_study_config, locate, locate_storage, open_study

    _check_no_flags(args)
    if args.study is not None:
        config = load_study_config(args.study, overrides=overrides(args))
        location = locate(config, storage=args.storage, study_name=args.study_name, output=args.output)
        study = open_study(location)
        _check_same_problem(study, config.problem(), PROBLEM_ATTR, args.study)
        return _Context(split=build_split(config), output=location.output, study=study,
                        tolerance=config.report.tolerance, seed=config.data.seed)
    location = locate_storage(args.storage, study_name=args.study_name, output=args.output)
    study = open_study(location)
    problem = study.user_attrs.get(PROBLEM_ATTR)
    if not isinstance(problem, dict):
        raise ValueError(f"study {location.name!r} does not record its problem ({PROBLEM_ATTR!r}); "
                         "pass its STUDY.toml")
    return _Context(split=_split_from_problem(problem, location.name), output=location.output, study=study,
                    seed=int(problem.get("data", {}).get("seed", 0)))


def _check_same_problem(study: Any, problem: dict[str, Any], key: str, path: Path) -> None:
    """The study file's [data] and [attack] must be those the study ran with (else the split differs)."""
    stored = study.user_attrs.get(key)
    if not isinstance(stored, dict):
        return
    current = json.loads(json.dumps(problem))
    differ = [k for k in ("data", "attack") if stored.get(k) != current.get(k)]
    if differ:
        raise ValueError(f"study {study.study_name!r} ran with different {' and '.join(f'[{k}]' for k in differ)} "
                         f"than {path} says now; its trials would be analysed on the wrong data — restore the "
                         "file, or pass --storage alone to use the problem stored with the study")


def _split_from_problem(problem: dict[str, Any], name: str) -> Any:
    from robust_hpo.study import AttackSettings, DataSettings, SearchSettings, StudyConfig, StudySettings, build_split

    try:
        config = StudyConfig(study=StudySettings(name=name), data=DataSettings(**problem["data"]),
                             attack=AttackSettings(**problem["attack"]),
                             search=SearchSettings(learners=tuple(problem["search"])))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"study {name!r}: its stored problem is not readable ({exc}); pass its STUDY.toml") from None
    return build_split(config)


def _flags_context(args: argparse.Namespace) -> _Context:
    from robust_hpo.attacks import BadNets, InvisibleGrid, poison
    from robust_hpo.datasets import load_dataset

    dataset = load_dataset(args.dataset, classes=args.classes, n_train=args.n_train, n_test=args.n_test,
                           seed=args.data_seed, root=args.root)
    if args.trigger == "badnets":
        if args.epsilon is not None or args.spacing is not None:
            raise ValueError("--epsilon and --spacing apply to --trigger invisible_grid, not badnets")
        trigger = BadNets(size=args.size if args.size is not None else 3,
                          position=args.position or "bottom-right", seed=args.attack_seed)
    else:
        if args.size is not None or args.position is not None:
            raise ValueError("--size and --position apply to --trigger badnets, not invisible_grid")
        kwargs: dict[str, Any] = {"seed": args.attack_seed}
        if args.epsilon is not None:
            kwargs["epsilon"] = args.epsilon
        if args.spacing is not None:
            kwargs["spacing"] = args.spacing
        trigger = InvisibleGrid(**kwargs)
    split = poison(dataset, trigger, fraction=args.fraction, seed=args.attack_seed)
    return _Context(split=split, output=args.output if args.output is not None else FLAGS_OUTPUT,
                    seed=args.data_seed)


def _context(args: argparse.Namespace) -> _Context:
    return _study_context(args) if _uses_study(args) else _flags_context(args)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _flag_configs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], str]]:
    """(learner, params, label) for every --C (× --gamma) of the flags."""
    if args.learner is None or args.C is None:
        raise ValueError("give a study (STUDY.toml or --storage), or --learner and --C")
    Cs, gammas = _as_list(args.C), _as_list(args.gamma)
    if args.learner == "rbf_svm":
        if not gammas:
            raise ValueError("--learner rbf_svm needs --gamma")
        return [(args.learner, {"C": c, "gamma": g}, f"rbf_svm C={c:.3g}, γ={g:.3g}")
                for g, c in itertools.product(gammas, Cs)]
    if gammas:
        raise ValueError(f"--gamma applies to --learner rbf_svm only, not {args.learner}")
    return [(args.learner, {"C": c}, f"{args.learner} C={c:.3g}") for c in Cs]


def _trial_configs(ctx: _Context, numbers: Sequence[int] | None, *,
                   single: bool) -> list[tuple[str, dict[str, Any], str]]:
    from optuna.trial import TrialState

    from robust_hpo.search_space import learner_config
    from robust_hpo.study import pareto_trials, recommend

    study = ctx.study
    if numbers:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        trials = []
        for n in numbers:
            if n not in by_number:
                raise ValueError(f"--trial {n}: study {study.study_name!r} has trials 0..{len(by_number) - 1}")
            if by_number[n].state != TrialState.COMPLETE:
                raise ValueError(f"--trial {n}: the trial is {by_number[n].state.name}, not COMPLETE")
            trials.append(by_number[n])
    else:
        front = pareto_trials(study)
        if not front:
            raise ValueError(f"study {study.study_name!r} has no completed trial on its Pareto front; pass --trial")
        if single:
            chosen = recommend(front, ctx.tolerance)
            trials = [chosen.trial if chosen is not None else front[0]]
        else:
            trials = front
    configs = []
    for t in trials:
        learner, params = learner_config(t.params)
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        configs.append((learner, params, f"trial {t.number}: {learner} {text}"))
    return configs


def _configs(args: argparse.Namespace, ctx: _Context, *, single: bool = False) -> list[tuple[str, dict[str, Any], str]]:
    if ctx.study is not None:
        return _trial_configs(ctx, _as_list(getattr(args, "trial", None)) or None, single=single)
    return _flag_configs(args)


def _write(figure: Any, path: Path) -> Path:
    from robust_hpo.plots import write_html

    written = write_html(figure, path)
    print(f"wrote {written}")
    return written


# ---------------------------------------------------------------------------------------------
# curves / deviation
# ---------------------------------------------------------------------------------------------
def _add_path_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--betas", type=non_negative_float, nargs="+", metavar="B",
                        help="β grid starting at 0 (default: 0 0.001 0.002 0.005 0.01 0.02 0.05 0.1 0.2 0.5 1)")
    parser.add_argument("--tol", type=positive_float, default=1e-6,
                        help="solver tolerance of every fit along β (default: 1e-6; scikit-learn's defaults "
                             "blur the curve near β = 0)")


def _paths(args: argparse.Namespace) -> tuple[_Context, list[Any]]:
    from robust_hpo.analysis import convex_estimator
    from robust_hpo.analysis import fit_path

    ctx = _context(args)
    paths = []
    for learner, params, label in _configs(args, ctx):
        est = convex_estimator(learner, params)
        paths.append(fit_path(est, ctx.split, betas=args.betas, label=label, tol=args.tol))
        print(f"fitted {label} at {paths[-1].betas.size} values of β")
    return ctx, paths


def _add_curves(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curves", help="backdoor learning curves with the slope's tangent",
        description="Retrain each configuration with poison weight β over a grid and plot loss and accuracy on "
                    "the clean and the triggered test set, with the exact slope's tangent at β = 0. "
                    "Writes curves.html.")
    _add_study_arguments(parser)
    _add_trial_argument(parser, many=True)
    _add_flag_arguments(parser)
    _add_path_arguments(parser)
    parser.add_argument("--zoom", type=positive_float, default=0.05,
                        help="β range of the zoomed panel (default: 0.05)")
    _add_output_argument(parser)
    parser.set_defaults(handler=_curves)


def _curves(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import curve_from_path
    from robust_hpo.plots import curves_figure

    ctx, paths = _paths(args)
    curves = [curve_from_path(p) for p in paths]
    for c in curves:
        print(f"{c.label}: slope {c.slope.slope:.4f}, dL/dβ {c.derivative:.4g} ({c.loss}); triggered loss "
              f"{c.trigger_loss[0]:.4f} -> {c.trigger_loss[-1]:.4f}, backdoor accuracy "
              f"{c.trigger_accuracy[0]:.3f} -> {c.trigger_accuracy[-1]:.3f}")
    _write(curves_figure(curves, zoom=args.zoom), ctx.output / "curves.html")
    return 0


def _add_deviation(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deviation", help="parameter deviation (weight norm, angle) along β",
        description="Retrain each configuration with poison weight β over a grid and plot ‖w_β‖ and the angle "
                    "to the clean weights (RKHS for the RBF SVM). Writes deviation.html.")
    _add_study_arguments(parser)
    _add_trial_argument(parser, many=True)
    _add_flag_arguments(parser)
    _add_path_arguments(parser)
    _add_output_argument(parser)
    parser.set_defaults(handler=_deviation)


def _deviation(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import deviation_from_path
    from robust_hpo.plots import deviation_figure

    ctx, paths = _paths(args)
    results = [deviation_from_path(p) for p in paths]
    for r in results:
        print(f"{r.label}: ‖w‖ {r.norm[0]:.4g} -> {r.norm[-1]:.4g}, "
              f"angle/π {r.angle[-1]:.4f} at β = {r.betas[-1]:g}")
    _write(deviation_figure(results), ctx.output / "deviation.html")
    return 0


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------
def _add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="weight / input-gradient maps and the most influential training points",
        description="For one configuration: ∂f/∂x maps of the clean and the poisoned model for a test point "
                    "(explain_maps.html) and its k most influential training points, poison ones marked "
                    "(explain_influence.html).")
    _add_study_arguments(parser)
    _add_trial_argument(parser, many=False)
    _add_flag_arguments(parser, grid=False)
    parser.add_argument("--index", type=non_negative_int, default=0, help="which test point (default: 0)")
    parser.add_argument("--points", choices=("trigger", "test"), default="trigger",
                        help="triggered test set (default) or clean test set")
    parser.add_argument("--model", choices=("poisoned", "clean"), default="poisoned",
                        help="influence in the model trained on the poisoned set (default) or the clean one")
    parser.add_argument("-k", type=positive_int, default=7, help="how many training points (default: 7)")
    parser.add_argument("--order", choices=("helpful", "harmful", "absolute"), default="helpful",
                        help="helpful: most negative influence first (default)")
    parser.add_argument("--quantity", choices=("loss", "margin"), default="loss",
                        help="influence on the test point's loss (default) or its margin (SVMs)")
    _add_output_argument(parser)
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import convex_estimator
    from robust_hpo.analysis import explain_maps, influential_points
    from robust_hpo.plots import explanation_figure, influence_figure

    ctx = _context(args)
    configs = _configs(args, ctx, single=True)
    if len(configs) != 1:
        raise ValueError("explain takes one configuration: one --trial, or one --C (and one --gamma)")
    learner, params, label = configs[0]
    est = convex_estimator(learner, params)
    maps = explain_maps(est, ctx.split, index=args.index, points=args.points, label=label)
    if maps.window is not None:
        c, p = maps.window_shares()
        print(f"{label}: share of |∂f/∂x| inside the trigger patch: clean {c:.1%}, poisoned {p:.1%}")
    _write(explanation_figure(maps), ctx.output / "explain_maps.html")
    result = influential_points(est, ctx.split, index=args.index, points=args.points, model=args.model,
                                k=args.k, order=args.order, quantity=args.quantity, label=label)
    if not result.influence.any():
        print(f"note: every influence is 0 — the {learner} loss is flat at this point (beyond the margin); "
              "try --quantity margin", file=sys.stderr)
    print(f"top {result.top.size} training points ({args.order}): {result.top_poison_count} carry the trigger")
    _write(influence_figure(result), ctx.output / "explain_influence.html")
    return 0


# ---------------------------------------------------------------------------------------------
# verify / heatmap
# ---------------------------------------------------------------------------------------------
def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="retrain a study's trials on the poisoned training set and compare with the slope",
        description="Retrain the Pareto front (or all trials) on the poisoned training set, store clean and "
                    "backdoor accuracy on the study, print Spearman(slope, backdoor accuracy) and the robust "
                    "region; writes verification.html, verification.csv and heatmap_<learner>.html.")
    _add_study_arguments(parser)
    parser.add_argument("--trials", choices=("pareto", "all"), default="pareto",
                        help="which completed trials to retrain (default: pareto)")
    parser.add_argument("--tolerance", type=fraction, default=0.02,
                        help="robust region: clean accuracy within this of the best (default: 0.02)")
    parser.add_argument("--max-backdoor", type=fraction, default=0.2,
                        help="robust region: backdoor accuracy at most this (default: 0.2)")
    parser.add_argument("--bins", type=positive_int, default=6, help="log bins per axis of the heatmaps (default: 6)")
    _add_output_argument(parser)
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    import csv

    from robust_hpo.plots import verification_figure
    from robust_hpo.analysis import verify_study

    if not _uses_study(args):
        raise ValueError("verify needs a study: give STUDY.toml or --storage")
    ctx = _study_context(args)

    def progress(done: int, total: int) -> None:
        print(f"\rretrained {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    report = verify_study(ctx.study, ctx.split, trials=args.trials, seed=ctx.seed, tolerance=args.tolerance,
                          max_backdoor=args.max_backdoor, progress=progress if sys.stderr.isatty() else None)
    print(report.render())
    _write(verification_figure(report), ctx.output / "verification.html")
    path = ctx.output / "verification.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "learner", "params", "slope", "clean_accuracy", "poisoned_clean_accuracy",
                         "backdoor_accuracy", "robust"])
        robust = {t.number for t in report.robust}
        for t in report.trials:
            writer.writerow([t.number, t.learner, ";".join(f"{k}={v}" for k, v in t.params.items()), t.slope,
                             "" if t.clean_accuracy is None else t.clean_accuracy, t.poisoned_clean_accuracy,
                             t.backdoor_accuracy, t.number in robust])
    print(f"wrote {path}")
    _study_heatmaps(list(report.trials), ctx.output, args.bins)
    return 0


def _study_heatmaps(trials: list[Any], output: Path, bins: int) -> None:
    from robust_hpo.plots import grid_figure
    from robust_hpo.analysis import bin_trials

    for learner in sorted({t.learner for t in trials}):
        grid = bin_trials(trials, learner=learner, n_bins=bins)
        _write(grid_figure(grid, title=f"{learner}: verified trials"), output / f"heatmap_{learner}.html")


def _add_heatmap(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "heatmap", help="heatmaps over (C, γ) of clean accuracy, backdoor accuracy and slope",
        description="From a study: bin the trials stored by `robust-hpo verify` (run it with --trials all for "
                    "a dense map). From flags: evaluate the --C × --gamma grid directly (the paper's Fig. 8): a "
                    "clean fit (slope) and a poisoned retraining per cell. Writes heatmap*.html.")
    _add_study_arguments(parser)
    _add_flag_arguments(parser)
    parser.add_argument("--bins", type=positive_int, default=6, help="log bins per axis for a study (default: 6)")
    _add_output_argument(parser)
    parser.set_defaults(handler=_heatmap)


def _heatmap(args: argparse.Namespace) -> int:
    from robust_hpo.plots import grid_figure
    from robust_hpo.analysis import paper_grid, stored_verification

    if _uses_study(args):
        ctx = _study_context(args)
        trials = stored_verification(ctx.study)
        if not trials:
            raise ValueError(f"study {ctx.study.study_name!r} has no verification stored; run "
                             f"`{PROG} verify ... --trials all` first")
        _study_heatmaps(trials, ctx.output, args.bins)
        return 0
    if args.learner is None or args.C is None:
        raise ValueError("give a study, or --learner and --C (and --gamma for rbf_svm)")
    if args.learner == "rbf_svm" and args.gamma is None:
        raise ValueError("--learner rbf_svm needs --gamma")
    if args.learner != "rbf_svm" and args.gamma is not None:
        raise ValueError(f"--gamma applies to --learner rbf_svm only, not {args.learner}")
    ctx = _flags_context(args)
    grid = paper_grid(ctx.split, learner=args.learner, C=sorted(args.C),
                      gamma=sorted(args.gamma) if args.gamma is not None else None)
    rho, p, note = grid.spearman()
    print(f"{args.learner}: Spearman(slope, backdoor accuracy) = "
          + ("undefined" if rho is None else f"{rho:.3f} (p = {p:.2g})") + f", {note}")
    for key, reason in grid.errors.items():
        print(f"  {key}: {reason}", file=sys.stderr)
    _write(grid_figure(grid), ctx.output / f"heatmap_{args.learner}.html")
    return 0


COMMANDS = (_add_curves, _add_deviation, _add_explain, _add_verify, _add_heatmap)
