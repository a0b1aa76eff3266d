"""``robust-hpo curves | deviation | explain | verify | heatmap``: the analysis subcommands.

Every command works on a study (``STUDY.toml``, or ``--storage`` alone: the problem stored with the
study; see :mod:`robust_hpo.cli._resolve`) — the poisoned splits are rebuilt from the study's data,
attacks and features, configurations come from its trials, and each trial is analysed on its attack
(``--attack``: by default the attack that decided its objective) — or, except ``verify``, from
flags (``--dataset``, ``--trigger`` and the trigger's own flags, ``--learner``, ``--C``, ...; the
trigger and learner flags derive from the trigger registry and the convex family table). Figures
are standalone plotly HTML files written to the study's output folder (or ``--output``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robust_hpo.attacks import TRIGGERS, PoisonedSplit, ThreatModel, TriggerParameter
from robust_hpo.cli._args import (
    PROG,
    add_override_arguments,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from robust_hpo.cli._resolve import add_study_arguments, resolve_study, uses_study
from robust_hpo.errors import ValidationError
from robust_hpo.learners import CONVEX_FAMILIES
from robust_hpo.objective import DEFAULT_TOLERANCE
from robust_hpo.search_space import format_config
from robust_hpo.study import OUTPUT_ROOT

FLAGS_OUTPUT = OUTPUT_ROOT / "analysis"
"""Output folder of the commands run from flags (no study)."""

WORST = "worst"


# ---------------------------------------------------------------------------------------------
# Argument groups
# ---------------------------------------------------------------------------------------------
def _class_id(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _trigger_flags() -> dict[str, list[tuple[str, TriggerParameter]]]:
    """Each trigger parameter's flag name -> the (trigger kind, parameter) pairs that use it."""
    flags: dict[str, list[tuple[str, TriggerParameter]]] = {}
    for kind, cls in TRIGGERS.items():
        for name, parameter in cls.parameters().items():
            flags.setdefault(name, []).append((kind, parameter))
    return flags


def _hyperparameters() -> dict[str, list[str]]:
    """Each convex family hyperparameter -> the families that have it (``C``: all, ``gamma``: rbf_svm)."""
    names: dict[str, list[str]] = {}
    for family in CONVEX_FAMILIES:
        for name in family.space:
            names.setdefault(name, []).append(family.name)
    return names


_DATA_DEFAULTS: dict[str, Any] = {"dataset": "digits", "classes": [3, 8], "n_train": 250, "n_test": 100,
                                  "root": None, "data_seed": 0, "trigger": "badnets", "fraction": 0.1,
                                  "attack_seed": 0, "learner": None}


def _flag_defaults() -> dict[str, Any]:
    """Every flag of the flag mode and its default (a study cannot be combined with any of them)."""
    return {**_DATA_DEFAULTS, **{name: None for name in _trigger_flags()},
            **{name: None for name in _hyperparameters()}}


def _add_flag_arguments(parser: argparse.ArgumentParser, *, grid: bool = True) -> None:
    data = parser.add_argument_group("data and attack from flags (when no study is given)")
    data.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    data.add_argument("--classes", nargs=2, metavar="CLASS", type=_class_id, default=[3, 8],
                      help="the class pair (default: 3 8)")
    data.add_argument("--n-train", type=positive_int, default=250, help="training points (default: 250)")
    data.add_argument("--n-test", type=positive_int, default=100, help="test points (default: 100)")
    data.add_argument("--root", metavar="DIR", help="data folder (e.g. ../shared/datasets/mnist)")
    data.add_argument("--data-seed", type=non_negative_int, default=0, help="data subsample seed (default: 0)")
    data.add_argument("--trigger", choices=list(TRIGGERS), default="badnets", help="trigger kind (default: badnets)")
    for name, users in _trigger_flags().items():
        parameter = users[0][1]
        kinds = " and ".join(kind for kind, _ in users)
        defaults = ", ".join(f"{p.default!r} for {kind}" for kind, p in users)
        data.add_argument(f"--{name.replace('_', '-')}", dest=name, type=parameter.type, choices=parameter.choices,
                          help=f"{parameter.help} ({kinds} only; default {defaults})")
    data.add_argument("--fraction", type=positive_float, default=0.1, help="poisoned fraction (default: 0.1)")
    data.add_argument("--attack-seed", type=non_negative_int, default=0, help="poison/trigger seed (default: 0)")
    learner = parser.add_argument_group("configurations from flags")
    learner.add_argument("--learner", choices=[f.name for f in CONVEX_FAMILIES],
                         help="convex learner family (required without a study)")
    for name, families in _hyperparameters().items():
        only = "" if len(families) == len(CONVEX_FAMILIES) else f" ({', '.join(families)} only)"
        learner.add_argument(f"--{name}", dest=name, type=positive_float, nargs="+" if grid else None,
                             metavar=name[0].upper(),
                             help=f"{name} value(s){only}" + ("; several values are crossed" if grid else ""))


def _add_trial_argument(parser: argparse.ArgumentParser, *, many: bool) -> None:
    parser.add_argument("--trial", metavar="N", type=non_negative_int, nargs="+" if many else None,
                        help=("trial numbers (default: the Pareto front)" if many else
                              "trial number (default: the recommended trial)"))


def _add_attack_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attack", metavar="NAME", default=WORST,
                        help="the attack each trial is analysed on: an attack name of the study, or 'worst' "
                             "(default): the attack that decided the trial's objective")


def _add_study(parser: argparse.ArgumentParser) -> None:
    """The study (file or ``--storage``), its location flags, ``--data-root`` and ``--set``."""
    add_study_arguments(parser)
    add_override_arguments(parser)


# ---------------------------------------------------------------------------------------------
# Resolving a study or flags into (splits, configurations, output folder)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Context:
    splits: dict[str, PoisonedSplit]
    output: Path
    study: Any = None
    tolerance: float = DEFAULT_TOLERANCE
    seed: int = 0


@dataclass(frozen=True)
class _Config:
    """One configuration to analyse, on one attack (``stored_slope``: the trial's slope for it)."""

    learner: str
    params: dict[str, Any]
    label: str
    attack: str
    stored_slope: float | None = None


def _check_no_flags(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k, default in _flag_defaults().items()
             if hasattr(args, k) and getattr(args, k) != default]
    if given:
        raise ValidationError(f"{', '.join(given)} cannot be combined with a study: the data, attacks and "
                              "configurations come from the study (use --trial to choose configurations)")


def _study_context(args: argparse.Namespace) -> _Context:
    from robust_hpo.study import build_splits, check_data_content, load_data

    _check_no_flags(args)
    resolved = resolve_study(args)
    dataset = load_data(resolved.config)
    check_data_content(resolved.study, dataset)
    splits = build_splits(resolved.config, dataset=dataset)
    return _Context(splits=splits, output=resolved.location.output, study=resolved.study,
                    tolerance=resolved.tolerance, seed=resolved.config.data.seed)


def _flags_context(args: argparse.Namespace) -> _Context:
    from robust_hpo.attacks import make_trigger, poison
    from robust_hpo.datasets import load_dataset

    dataset = load_dataset(args.dataset, classes=args.classes, n_train=args.n_train, n_test=args.n_test,
                           seed=args.data_seed, root=args.root)
    own = TRIGGERS[args.trigger].parameters()
    params = {}
    for name, users in _trigger_flags().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in own:
            raise ValidationError(f"--{name.replace('_', '-')} applies to --trigger "
                                  f"{' or '.join(kind for kind, _ in users)}, not {args.trigger}")
        params[name] = value
    threat = ThreatModel(trigger=make_trigger(args.trigger, params, seed=args.attack_seed), fraction=args.fraction)
    split = poison(dataset, threat.trigger, fraction=threat.fraction, seed=args.attack_seed)
    output = args.output if args.output is not None else FLAGS_OUTPUT
    return _Context(splits={threat.name: split}, output=output, seed=args.data_seed)


def _context(args: argparse.Namespace) -> _Context:
    return _study_context(args) if uses_study(args) else _flags_context(args)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _flag_values(args: argparse.Namespace) -> tuple[str, dict[str, list[float]]]:
    """The learner of the flags and the values of each of its hyperparameters (all required)."""
    if args.learner is None:
        raise ValidationError("give a study (STUDY.toml or --storage), or --learner and its hyperparameters "
                              "(e.g. --C)")
    family = next(f for f in CONVEX_FAMILIES if f.name == args.learner)
    values: dict[str, list[float]] = {}
    for name, families in _hyperparameters().items():
        given = _as_list(getattr(args, name, None))
        if name in family.space:
            if not given:
                raise ValidationError(f"--learner {args.learner} needs --{name}")
            values[name] = given
        elif given:
            raise ValidationError(f"--{name} applies to --learner {' or '.join(families)} only, not {args.learner}")
    return args.learner, values


def _flag_configs(args: argparse.Namespace, ctx: _Context) -> list[_Config]:
    """One configuration per combination of the flags' hyperparameter values."""
    learner, values = _flag_values(args)
    names = list(values)
    attack = _flag_attack(args, ctx)
    configs = []
    for combination in itertools.product(*(values[n] for n in reversed(names))):
        params = dict(zip(reversed(names), combination))
        params = {n: params[n] for n in names}
        configs.append(_Config(learner, params, format_config(learner, params), attack))
    return configs


def _flag_attack(args: argparse.Namespace, ctx: _Context) -> str:
    (name,) = ctx.splits
    choice = getattr(args, "attack", WORST)
    if choice not in (WORST, name):
        raise ValidationError(f"--attack: the flags define one attack, {name!r}; got {choice!r}")
    return name


def _trial_configs(args: argparse.Namespace, ctx: _Context, *, single: bool) -> list[_Config]:
    from optuna.trial import TrialState

    from robust_hpo.analysis import attack_slope, trial_attack
    from robust_hpo.search_space import learner_config
    from robust_hpo.study import pareto_trials, recommend

    study = ctx.study
    numbers = _as_list(getattr(args, "trial", None))
    if numbers:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        trials = []
        for n in numbers:
            if n not in by_number:
                raise ValidationError(f"--trial {n}: study {study.study_name!r} has trials 0..{len(by_number) - 1}")
            if by_number[n].state != TrialState.COMPLETE:
                raise ValidationError(f"--trial {n}: the trial is {by_number[n].state.name}, not COMPLETE")
            trials.append(by_number[n])
    else:
        front = pareto_trials(study)
        if not front:
            raise ValidationError(f"study {study.study_name!r} has no completed trial on its Pareto front; "
                                  "pass --trial")
        if single:
            chosen = recommend(study, ctx.tolerance)
            trials = [chosen.trial if chosen is not None else front[0]]
        else:
            trials = front
    configs = []
    names = list(ctx.splits)
    for t in trials:
        learner, params = learner_config(t.params)
        attack = trial_attack(t, names, getattr(args, "attack", WORST))
        slope = attack_slope(t, attack, len(names), study.metric_names)
        configs.append(_Config(learner, params, f"trial {t.number}: {format_config(learner, params)}", attack, slope))
    return configs


def _configs(args: argparse.Namespace, ctx: _Context, *, single: bool = False) -> list[_Config]:
    if ctx.study is not None:
        return _trial_configs(args, ctx, single=single)
    return _flag_configs(args, ctx)


def _write(figure: Any, path: Path) -> Path:
    from robust_hpo.plots import write_html

    written = write_html(figure, path)
    print(f"wrote {written}")
    return written


def _on(config: _Config, ctx: _Context) -> str:
    """`` on attack 'name'`` when the study has several attacks."""
    return f" on attack {config.attack!r}" if len(ctx.splits) > 1 else ""


# ---------------------------------------------------------------------------------------------
# curves / deviation
# ---------------------------------------------------------------------------------------------
def _add_path_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--betas", type=non_negative_float, nargs="+", metavar="B",
                        help="β grid with 0 (default: 0 0.001 0.002 0.005 0.01 0.02 0.05 0.1 0.2 0.5 1)")
    parser.add_argument("--tol", type=positive_float, default=1e-6,
                        help="solver tolerance of every fit along β (default: 1e-6; scikit-learn's defaults "
                             "blur the curve near β = 0)")


def _paths(args: argparse.Namespace) -> tuple[_Context, list[tuple[_Config, Any]]]:
    from robust_hpo.analysis import convex_estimator, fit_path

    ctx = _context(args)
    paths = []
    for config in _configs(args, ctx):
        est = convex_estimator(config.learner, config.params)
        path = fit_path(est, ctx.splits[config.attack], betas=args.betas, label=config.label + _on(config, ctx),
                        tol=args.tol)
        paths.append((config, path))
        print(f"fitted {path.label} at {path.betas.size} values of β")
    return ctx, paths


def _add_curves(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curves", help="backdoor learning curves with the slope's tangent",
        description="Retrain each configuration with poison weight β over a grid and plot loss and accuracy on "
                    "the clean and the triggered test set, with the exact slope's tangent at β = 0. "
                    "Writes curves.html.")
    _add_study(parser)
    _add_trial_argument(parser, many=True)
    _add_attack_argument(parser)
    _add_flag_arguments(parser)
    _add_path_arguments(parser)
    parser.add_argument("--zoom", type=positive_float, default=0.05,
                        help="β range of the zoomed panel (default: 0.05)")
    parser.set_defaults(handler=_curves)


def _curves(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import curve_from_path
    from robust_hpo.plots import curves_figure

    ctx, paths = _paths(args)
    curves = []
    for config, path in paths:
        c = curve_from_path(path)
        curves.append(c)
        stored = f" (stored {config.stored_slope:.4f})" if config.stored_slope is not None else ""
        print(f"{c.label}: slope {c.slope.slope:.4f}{stored}, dL/dβ {c.derivative:.4g} ({c.loss}); triggered loss "
              f"{c.trigger_loss[0]:.4f} -> {c.trigger_loss[-1]:.4f}, backdoor accuracy "
              f"{c.trigger_accuracy[0]:.3f} -> {c.trigger_accuracy[-1]:.3f}")
    _write(curves_figure(curves, zoom=args.zoom), ctx.output / "curves.html")
    return 0


def _add_deviation(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deviation", help="parameter deviation (weight norm, angle) along β",
        description="Retrain each configuration with poison weight β over a grid and plot ‖w_β‖ and the angle "
                    "to the clean weights (RKHS for the RBF SVM). Writes deviation.html.")
    _add_study(parser)
    _add_trial_argument(parser, many=True)
    _add_attack_argument(parser)
    _add_flag_arguments(parser)
    _add_path_arguments(parser)
    parser.set_defaults(handler=_deviation)


def _deviation(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import deviation_from_path
    from robust_hpo.plots import deviation_figure

    ctx, paths = _paths(args)
    results = [deviation_from_path(path) for _, path in paths]
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
    _add_study(parser)
    _add_trial_argument(parser, many=False)
    _add_attack_argument(parser)
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
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import convex_estimator, explain_maps, influential_points
    from robust_hpo.plots import explanation_figure, influence_figure

    ctx = _context(args)
    configs = _configs(args, ctx, single=True)
    if len(configs) != 1:
        raise ValidationError("explain takes one configuration: one --trial, or one value per hyperparameter flag")
    config = configs[0]
    est = convex_estimator(config.learner, config.params)
    split = ctx.splits[config.attack]
    label = config.label + _on(config, ctx)
    print(f"{label}: explained on attack {config.attack!r}")
    maps = explain_maps(est, split, index=args.index, points=args.points, label=label)
    if maps.window is not None:
        c, p = maps.window_shares()
        print(f"{label}: share of |∂f/∂x| inside the trigger patch: clean {c:.1%}, poisoned {p:.1%}")
    _write(explanation_figure(maps), ctx.output / "explain_maps.html")
    result = influential_points(est, split, index=args.index, points=args.points, model=args.model,
                                k=args.k, order=args.order, quantity=args.quantity, label=label)
    if not result.influence.any():
        print(f"note: every influence is 0 — the {config.learner} loss is flat at this point (beyond the margin); "
              "try --quantity margin", file=sys.stderr)
    print(f"top {result.top.size} training points ({args.order}): {result.top_poison_count} carry the trigger")
    _write(influence_figure(result), ctx.output / "explain_influence.html")
    return 0


# ---------------------------------------------------------------------------------------------
# verify / heatmap
# ---------------------------------------------------------------------------------------------
def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="check the recommendation by retraining on the poisoned training set",
        description="Retrain the recommendation's candidates (the feasible trials within the tolerance of the "
                    "best clean accuracy, as `report` chooses from; or the Pareto front, or all trials, with the "
                    "candidates) on the poisoned training set of their attack; print the recommended trial's "
                    "predicted and true backdoor accuracy, the best candidate's and the regret, Spearman(slope, "
                    "backdoor accuracy) and the robust region; store the results as one study attribute; write "
                    "verification.html, verification.csv and heatmap_<learner>.html.")
    _add_study(parser)
    _add_attack_argument(parser)
    parser.add_argument("--trials", choices=("candidates", "pareto", "all"), default="candidates",
                        help="which completed trials to retrain, the recommendation's candidates always among them "
                             "(default: candidates)")
    parser.add_argument("--tolerance", type=fraction, default=None,
                        help=f"the recommendation's tolerance: candidates are the feasible trials within this of the "
                             f"best clean accuracy (default: the study's [report] tolerance, else {DEFAULT_TOLERANCE})")
    parser.add_argument("--max-backdoor", type=fraction, default=0.2,
                        help="robust region: candidates with backdoor accuracy at most this (default: 0.2)")
    parser.add_argument("--bins", type=positive_int, default=6, help="log bins per axis of the heatmaps (default: 6)")
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    import csv

    from robust_hpo.analysis import verify_study
    from robust_hpo.plots import verification_figure

    if not uses_study(args):
        raise ValidationError("verify needs a study: give STUDY.toml or --storage")
    ctx = _study_context(args)

    def progress(done: int, total: int) -> None:
        print(f"\rretrained {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    tolerance = args.tolerance if args.tolerance is not None else ctx.tolerance
    report = verify_study(ctx.study, ctx.splits, trials=args.trials, attack=args.attack, seed=ctx.seed,
                          tolerance=tolerance, max_backdoor=args.max_backdoor,
                          progress=progress if sys.stderr.isatty() else None)
    print(report.render())
    _write(verification_figure(report), ctx.output / "verification.html")
    path = ctx.output / "verification.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "learner", "params", "attack", "slope", "clean_accuracy",
                         "predicted_backdoor_accuracy", "poisoned_clean_accuracy", "backdoor_accuracy", "candidate",
                         "recommended", "robust"])
        robust = {t.number for t in report.robust}
        recommended = report.check.recommended.number if report.check is not None else None
        for t in report.trials:
            writer.writerow([t.number, t.learner, ";".join(f"{k}={v}" for k, v in t.params.items()), t.attack or "",
                             t.slope, "" if t.clean_accuracy is None else t.clean_accuracy,
                             "" if t.predicted_backdoor_accuracy is None else t.predicted_backdoor_accuracy,
                             t.poisoned_clean_accuracy, t.backdoor_accuracy, t.candidate, t.number == recommended,
                             t.number in robust])
    print(f"wrote {path}")
    _study_heatmaps(list(report.trials), ctx.output, args.bins)
    return 0


def _study_heatmaps(trials: list[Any], output: Path, bins: int) -> None:
    from robust_hpo.analysis import bin_trials
    from robust_hpo.plots import grid_figure

    for learner in sorted({t.learner for t in trials}):
        grid = bin_trials(trials, learner=learner, n_bins=bins)
        _write(grid_figure(grid, title=f"{learner}: verified trials"), output / f"heatmap_{learner}.html")


def _add_heatmap(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "heatmap", help="heatmaps over (C, γ) of clean accuracy, backdoor accuracy and slope",
        description="From a study: bin the trials stored by `robust-hpo verify` (run it with --trials all for "
                    "a dense map). From flags: evaluate the --C × --gamma grid directly (the paper's Fig. 8): a "
                    "clean fit (slope) and a poisoned retraining per cell. Writes heatmap*.html.")
    _add_study(parser)
    _add_flag_arguments(parser)
    parser.add_argument("--bins", type=positive_int, default=6, help="log bins per axis for a study (default: 6)")
    parser.set_defaults(handler=_heatmap)


def _heatmap(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import paper_grid, stored_verification
    from robust_hpo.plots import grid_figure

    if uses_study(args):
        ctx = _study_context(args)
        trials = stored_verification(ctx.study)
        if not trials:
            raise ValidationError(f"study {ctx.study.study_name!r} has no verification stored; run "
                                  f"`{PROG} verify ... --trials all` first")
        _study_heatmaps(trials, ctx.output, args.bins)
        return 0
    learner, values = _flag_values(args)
    ctx = _flags_context(args)
    (split,) = ctx.splits.values()
    grid = paper_grid(split, learner=learner, C=sorted(values["C"]),
                      gamma=sorted(values["gamma"]) if "gamma" in values else None)
    rho, p, note = grid.spearman()
    print(f"{learner}: Spearman(slope, backdoor accuracy) = "
          + ("undefined" if rho is None else f"{rho:.3f} (p = {p:.2g})") + f", {note}")
    for key, reason in grid.errors.items():
        print(f"  {key}: {reason}", file=sys.stderr)
    _write(grid_figure(grid), ctx.output / f"heatmap_{learner}.html")
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_curves, _add_deviation, _add_explain, _add_verify, _add_heatmap)

__all__ = ["COMMANDS", "FLAGS_OUTPUT"]
