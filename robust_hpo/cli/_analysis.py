"""``robust-hpo curves | deviation | explain | verify | heatmap``: the analysis subcommands.

Every command works on a study (``STUDY.toml``, or ``--storage`` alone: the problem stored with the
study; see :mod:`robust_hpo.cli._resolve`) — the poisoned splits are rebuilt from the study's data,
attacks and features, configurations come from its trials, and each trial is analysed on its attack
(``--attack NAME|worst|all``: by default the attack that decided its objective; ``all``: every
attack of the study) — or, except ``verify``, from flags (``--dataset``, ``--trigger`` and the
trigger's own flags, ``--learner``, ``--C``, ...; the trigger and learner flags derive from the
trigger registry and the convex family table). Each command prints, and titles its figures with,
the attack it used.

Outputs: HTML figures (sharing one plotly.js per folder) and tables, written atomically to the
study's output folder, or for flags to ``<root>/analysis/<data and attack>/``, or to ``--output``
(the folder for the command's files, never where the study is looked up); the folder's
``index.html`` is rewritten after each command. File names say what a non-default choice analysed
(``curves_trials-3-4.html``, ``curves_all-attacks.html``, ``curves_ridge_C-0.1-1.html``). Absolute
paths are printed; progress bars (stderr, terminals only) show long loops.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
from robust_hpo.cli._output import check_writable
from robust_hpo.study import OUTPUT_ROOT, output_root

FLAGS_OUTPUT = OUTPUT_ROOT / "analysis"
"""Parent of the output folders of the commands run from flags (no study), under the output root."""

WORST = "worst"
ALL = "all"


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
        listed = parameter.type is tuple  # a list-valued parameter: several words
        data.add_argument(f"--{name.replace('_', '-')}", dest=name, type=str if listed else parameter.type,
                          nargs="+" if listed else None, choices=parameter.choices,
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
                        help=("trial numbers (default: the recommended trial and the Pareto front)" if many else
                              "trial number (default: the recommended trial)"))


def _add_attack_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attack", metavar="NAME|worst|all", default=WORST,
                        help="the attack each trial is analysed on: 'worst' (default): the attack that decided "
                             "the trial's objective; an attack name of the study; or 'all': every attack")


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
    index_title: str = "robust_hpo analysis"
    index_details: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    family_lookup: Callable[[str], Any] | None = None
    """Learner name -> family as the study's trials built it (``[options.<learner>]``, ``[search] scale``);
    None: the registry's (flags)."""


@dataclass(frozen=True)
class _Config:
    """One configuration to analyse, on one attack (``stored_slope``: the trial's slope for it)."""

    learner: str
    params: dict[str, Any]
    label: str
    attack: str
    stored_slope: float | None = None
    trial: int | None = None


def _check_no_flags(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k, default in _flag_defaults().items()
             if hasattr(args, k) and getattr(args, k) != default]
    if given:
        raise ValidationError(f"{', '.join(given)} cannot be combined with a study: the data, attacks and "
                              "configurations come from the study (use --trial to choose configurations)")


def _study_context(args: argparse.Namespace) -> _Context:
    from robust_hpo.objective import check_user_split
    from robust_hpo.study import build_splits, check_data_content, load_data

    _check_no_flags(args)
    resolved = resolve_study(args)
    if resolved.config is None:
        raise ValidationError(f"study {resolved.location.name!r} was scored by your own objective (score_trial): its "
                              "data are yours; give a study file whose [data] and [attack] describe them "
                              "(robust-hpo COMMAND STUDY.toml --storage URL --study-name NAME), or call "
                              "robust_hpo.analysis.verify_study(study, split) in Python")
    check_writable(resolved.location.output)
    _check_attack_choice(args, [a.name for a in resolved.config.attacks])
    dataset = load_data(resolved.config)
    check_data_content(resolved.study, dataset)
    location = resolved.location
    splits = build_splits(resolved.config, dataset=dataset, progress=True)
    check_user_split(resolved.study, splits)  # a study scored by your own objective (score_trial)
    return _Context(splits=splits, output=location.output, family_lookup=_study_families(resolved.config),
                    study=resolved.study, tolerance=resolved.tolerance, seed=resolved.config.data.seed,
                    index_title=f"robust_hpo study {location.name!r}",
                    index_details=[f"Storage: {location.storage.describe()}"])


def _study_families(config: Any) -> Callable[[str], Any]:
    """The study's learner families — with its ``[options.<learner>]`` (tol, max_iter, cache_size) and
    ``[search] scale`` — so that every command rebuilds a trial's estimator as the trial built it."""
    from robust_hpo.learners import get_family

    families = config.families()
    return lambda name: families[name] if name in families else get_family(name)


def _check_attack_choice(args: argparse.Namespace, names: Sequence[str]) -> None:
    choice = getattr(args, "attack", WORST)
    if choice not in (WORST, ALL, *names):
        raise ValidationError(f"--attack must be {WORST!r}, {ALL!r} or one of {list(names)}, got {choice!r}")


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
    _check_attack_choice(args, [threat.name])
    what = (f"{args.dataset}-{'-'.join(map(str, args.classes))}-n{args.n_train}-{args.n_test}-s{args.data_seed}_"
            f"{threat.name}-s{args.attack_seed}")
    output = (Path(args.output) if args.output is not None else output_root() / FLAGS_OUTPUT.name / _slug(what))
    return _Context(splits={threat.name: split}, output=check_writable(output), seed=args.data_seed,
                    index_title=f"robust_hpo analysis of {args.dataset} classes {args.classes[0]}/{args.classes[1]}, "
                                f"attack {threat.name!r}",
                    index_details=[f"{args.n_train} training and {args.n_test} test points (data seed "
                                   f"{args.data_seed}); {threat.name} (attack seed {args.attack_seed})"])


def _slug(text: str, limit: int = 120) -> str:
    """``text`` as a file-name part: letters, digits, ``.``, ``-`` and ``_`` only."""
    text = text.replace("%", "pc")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "x"


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
    return name


def _trial_configs(args: argparse.Namespace, ctx: _Context, *, single: bool) -> list[_Config]:
    from optuna.trial import TrialState

    from robust_hpo.analysis import attack_slope, trial_attack
    from robust_hpo.search_space import learner_config
    from robust_hpo.study import pareto_trials, recommend

    study = ctx.study
    recommended = None
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
        chosen = recommend(study, ctx.tolerance)
        if single:
            trials = [chosen.trial if chosen is not None else front[0]]
        else:  # the recommended trial first, then the front it is compared with
            trials = ([chosen.trial] if chosen is not None else []) + [
                t for t in front if chosen is None or t.number != chosen.trial.number]
        recommended = chosen.trial.number if chosen is not None else None
    configs = []
    names = list(ctx.splits)
    choice = getattr(args, "attack", WORST)
    for t in trials:
        learner, params = learner_config(t.params)
        for attack in (names if choice == ALL else [trial_attack(t, names, choice)]):
            slope = attack_slope(t, attack, len(names), study.metric_names)
            role = " (recommended)" if t.number == recommended and not single else ""  # plots.RECOMMENDED_MARK
            configs.append(_Config(learner, params, f"trial {t.number}{role}: {format_config(learner, params)}",
                                   attack, slope, t.number))
    return configs


def _configs(args: argparse.Namespace, ctx: _Context, *, single: bool = False) -> list[_Config]:
    if ctx.study is not None:
        return _trial_configs(args, ctx, single=single)
    return _flag_configs(args, ctx)


def _write(figure: Any, path: Path, ctx: _Context) -> Path:
    from robust_hpo.plots import write_html

    written = write_html(figure, path)
    ctx.written.append(written)
    print(f"wrote {written}")
    return written


def _finish(ctx: _Context) -> None:
    """Rewrite the output folder's index.html (every command ends here)."""
    from robust_hpo.plots import write_index

    if ctx.written:
        index = write_index(ctx.output, title=ctx.index_title, details=ctx.index_details)
        print(f"index of {ctx.output}: {index}")


def _on(config: _Config, ctx: _Context) -> str:
    """`` on attack 'name'`` when the study has several attacks."""
    return f" on attack {config.attack!r}" if len(ctx.splits) > 1 else ""


def _attack_choice(args: argparse.Namespace, ctx: _Context, configs: Sequence[_Config] = ()) -> str:
    """Which attack the command analyses, in words (printed, and in the figures' titles)."""
    names = list(ctx.splits)
    if len(names) == 1:
        return f"attack {names[0]!r}"
    choice = getattr(args, "attack", WORST)
    if choice == ALL:
        return f"every attack of the study ({', '.join(map(repr, names))})"
    if choice == WORST:
        per_trial = sorted({(c.trial, c.attack) for c in configs if c.trial is not None}, key=lambda p: p[0])
        detail = ", ".join(f"trial {n} → {a!r}" for n, a in per_trial[:8]) + (", …" if len(per_trial) > 8 else "")
        return "each trial's worst attack (the one that decided its slope objective)" + \
            (f": {detail}" if detail else "")
    return f"attack {choice!r} (--attack)"


def _short_choice(args: argparse.Namespace, ctx: _Context) -> str:
    """A title-length version of :func:`_attack_choice`."""
    names = list(ctx.splits)
    choice = getattr(args, "attack", WORST)
    if len(names) == 1:
        return f"attack {names[0]!r}"
    return {ALL: "every attack", WORST: "each trial's worst attack"}.get(choice, f"attack {choice!r}")


def _file_name(base: str, args: argparse.Namespace, ctx: _Context, configs: Sequence[_Config] = (),
               attack: str | None = None, ext: str = ".html") -> str:
    """``base`` plus what a non-default choice analysed (see the module docstring)."""
    parts = [base]
    if ctx.study is None:
        if configs:
            learner = configs[0].learner
            values: dict[str, list[Any]] = {}
            for c in configs:
                for k, v in c.params.items():
                    if v not in values.setdefault(k, []):
                        values[k].append(v)
            parts.append(_slug(learner + "".join(f"_{k}-" + "-".join(f"{v:g}" for v in vs)
                                                 for k, vs in values.items()), 100))
    else:
        numbers = _as_list(getattr(args, "trial", None))
        if numbers:
            parts.append("trials-" + "-".join(map(str, numbers)) if len(numbers) > 1 else f"trial-{numbers[0]}")
        choice = getattr(args, "attack", WORST)
        if attack is not None and len(ctx.splits) > 1 and choice == ALL:
            parts.append(_slug(attack, 60))
        elif len(ctx.splits) > 1 and choice == ALL:
            parts.append("all-attacks")
        elif len(ctx.splits) > 1 and choice != WORST:
            parts.append(_slug(choice, 60))
    return "_".join(parts) + ext


def _bar(items: Iterable[Any], *, total: int | None = None, desc: str) -> Any:
    """A progress bar on stderr when it is a terminal (silent otherwise)."""
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, disable=None, file=sys.stderr, leave=False, dynamic_ncols=True)


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
    configs = _configs(args, ctx)
    print(f"analysed on {_attack_choice(args, ctx, configs)}")
    paths = []
    for config in _bar(configs, desc="fitting along β"):
        est = convex_estimator(config.learner, config.params, ctx.family_lookup)
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
    configs = [config for config, _ in paths]
    title = f"Backdoor learning curves on {_short_choice(args, ctx)}"
    _write(curves_figure(curves, zoom=args.zoom, title=title), ctx.output / _file_name("curves", args, ctx, configs),
           ctx)
    _finish(ctx)
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
    configs = [config for config, _ in paths]
    title = f"Parameter deviation along β on {_short_choice(args, ctx)}"
    _write(deviation_figure(results, title=title), ctx.output / _file_name("deviation", args, ctx, configs), ctx)
    _finish(ctx)
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
    parser.add_argument("--index", type=non_negative_int, default=None,
                        help="which test point (default: 0, or the first with a non-zero influence)")
    parser.add_argument("--points", choices=("trigger", "test"), default="trigger",
                        help="triggered test set (default) or clean test set")
    parser.add_argument("--model", choices=("poisoned", "clean"), default=None,
                        help="influence in the model trained on the poisoned set (default) or the clean one "
                             "(default switches to clean when every poisoned-model influence is 0)")
    parser.add_argument("-k", type=positive_int, default=7, help="how many training points (default: 7)")
    parser.add_argument("--order", choices=("helpful", "harmful", "absolute"), default="helpful",
                        help="helpful: most negative influence first (default)")
    parser.add_argument("--quantity", choices=("loss", "margin"), default=None,
                        help="influence on the test point's loss (default) or its margin (default switches to "
                             "margin where an SVM's hinge is flat)")
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import convex_estimator, explain_influence, explain_maps
    from robust_hpo.plots import explanation_figure, influence_figure

    ctx = _context(args)
    configs = _configs(args, ctx, single=True)
    if len({(c.learner, tuple(c.params.items())) for c in configs}) != 1:
        raise ValidationError("explain takes one configuration: one --trial, or one value per hyperparameter flag")
    print(f"analysed on {_attack_choice(args, ctx, configs)}")
    for config in _bar(configs, desc="explaining"):
        est = convex_estimator(config.learner, config.params, ctx.family_lookup)
        split = ctx.splits[config.attack]
        label = config.label + _on(config, ctx)
        print(f"{label}: explained on attack {config.attack!r}")
        maps = explain_maps(est, split, index=0 if args.index is None else args.index, points=args.points,
                            label=label)
        if maps.window is not None:
            c, p = maps.window_shares()
            print(f"{label}: share of |∂f/∂x| inside the trigger patch: clean {c:.1%}, poisoned {p:.1%}")
        suffix = {"attack": config.attack} if len(configs) > 1 else {}
        _write(explanation_figure(maps, title=f"Explanation: {label}"),
               ctx.output / _file_name("explain_maps", args, ctx, configs, **suffix), ctx)
        result = explain_influence(est, split, index=args.index, points=args.points, model=args.model,
                                   k=args.k, order=args.order, quantity=args.quantity, label=label)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        if result.all_zero:
            print(f"note: every influence is 0: {result.zero_reason}", file=sys.stderr)
        print(f"top {result.top.size} training points ({args.order}, {result.model} model, quantity "
              f"{result.quantity}, {result.points} point #{result.index}): {result.top_poison_count} carry the trigger")
        _write(influence_figure(result, title=f"Most influential training points: {label}"),
               ctx.output / _file_name("explain_influence", args, ctx, configs, **suffix), ctx)
    _finish(ctx)
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
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="retrainings per network trial, seeds SEED, SEED+1, ... (default: 3; the mean and the "
                             "spread are reported); convex learners have one optimum and are retrained once")
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import verify_study
    from robust_hpo.plots import verification_figure

    if not uses_study(args):
        raise ValidationError("verify needs a study: give STUDY.toml or --storage")
    ctx = _study_context(args)
    tolerance = args.tolerance if args.tolerance is not None else ctx.tolerance
    choices = list(ctx.splits) if args.attack == ALL and len(ctx.splits) > 1 else [args.attack]
    for choice in choices:
        on = _attack_choice(argparse.Namespace(attack=choice), ctx)
        print(f"verifying on {on}")
        bar = _bar([], total=None, desc=f"retraining ({choice})")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = verify_study(ctx.study, ctx.splits, trials=args.trials, attack=choice, seed=ctx.seed,
                              tolerance=tolerance, max_backdoor=args.max_backdoor, progress=progress,
                              seeds=args.seeds, family_lookup=ctx.family_lookup)
        bar.close()
        print(report.render())
        attack = choice if len(choices) > 1 else None
        recommended = report.check.recommended.number if report.check is not None else None
        title = ("Verification by retraining on the poisoned training set, on "
                 + _short_choice(argparse.Namespace(attack=choice), ctx))
        _write(verification_figure(report, title=title, recommended=recommended),
               ctx.output / _file_name("verification", args, ctx, attack=attack), ctx)
        _write_verification_csv(report, ctx.output / _file_name("verification", args, ctx, attack=attack, ext=".csv"),
                                ctx)
        _study_heatmaps(list(report.trials), ctx, args, bins=args.bins, attack=attack, tolerance=tolerance,
                        max_backdoor=args.max_backdoor, choice=choice)
    _finish(ctx)
    return 0


def _recommended_number(ctx: _Context, tolerance: float | None = None) -> int | None:
    """The study's recommended trial (``report``'s rule), at ``tolerance`` (default the study's)."""
    from robust_hpo.study import recommend

    chosen = recommend(ctx.study, ctx.tolerance if tolerance is None else tolerance)
    return chosen.trial.number if chosen is not None else None


def _write_verification_csv(report: Any, path: Path, ctx: _Context) -> None:
    import csv

    from robust_hpo._files import atomic_open

    robust = {t.number for t in report.robust}
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "learner", "params", "attack", "slope", "clean_accuracy",
                         "predicted_backdoor_accuracy", "poisoned_clean_accuracy", "backdoor_accuracy", "candidate",
                         "recommended", "robust", "backdoor_spread", "seeds"])
        recommended = report.check.recommended.number if report.check is not None else None
        for t in report.trials:
            writer.writerow([t.number, t.learner, ";".join(f"{k}={v}" for k, v in t.params.items()), t.attack or "",
                             t.slope, "" if t.clean_accuracy is None else t.clean_accuracy,
                             "" if t.predicted_backdoor_accuracy is None else t.predicted_backdoor_accuracy,
                             t.poisoned_clean_accuracy, t.backdoor_accuracy, t.candidate, t.number == recommended,
                             t.number in robust, "" if t.backdoor_spread is None else t.backdoor_spread, t.seeds])
    ctx.written.append(path.absolute())
    print(f"wrote {path.absolute()}")


def _study_heatmaps(trials: list[Any], ctx: _Context, args: argparse.Namespace, *, bins: int, attack: str | None,
                    tolerance: float, max_backdoor: float, choice: str) -> None:
    """One heatmap per learner of the verified ``trials``, robust region and recommendation marked."""
    from robust_hpo.analysis import bin_trials, robust_region
    from robust_hpo.plots import grid_figure

    robust = [t.number for t in robust_region(trials, max_backdoor=max_backdoor)]
    recommended = _recommended_number(ctx, tolerance)
    rule = (f"the recommendation's candidates (feasible, clean accuracy within {tolerance:g} of the best) with "
            f"backdoor accuracy after poisoning ≤ {max_backdoor:g}")
    on = _short_choice(argparse.Namespace(attack=choice), ctx)
    for learner in sorted({t.learner for t in trials}):
        if not all("C" in t.params for t in trials if t.learner == learner):  # networks, SGD's alpha: no (C, γ) map
            print(f"no heatmap for {learner}: its trials have no parameter C (the heatmaps are over C and γ; "
                  "see verification.html)")
            continue
        grid = bin_trials(trials, learner=learner, n_bins=bins)
        cells = grid.cells_of([recommended]) if recommended is not None else set()
        figure = grid_figure(grid, title=f"{learner}: verified trials on {on}", robust_cells=grid.cells_of(robust),
                             recommended_cell=next(iter(cells), None), robust_rule=rule,
                             min_accuracy=_min_accuracy(ctx.study))
        _write(figure, ctx.output / _file_name(f"heatmap_{learner}", args, ctx, attack=attack), ctx)


def _min_accuracy(study: Any) -> float | None:
    """The study's ``[constraint] min_accuracy`` (None without one, or with ``within_best``)."""
    from robust_hpo.study import PROBLEM_ATTR

    problem = study.user_attrs.get(PROBLEM_ATTR)
    constraint = problem.get("constraint") if isinstance(problem, dict) else None
    value = constraint.get("min_accuracy") if isinstance(constraint, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _add_heatmap(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "heatmap", help="heatmaps over (C, γ) of clean accuracy, backdoor accuracy and slope",
        description="From a study: bin the trials stored by `robust-hpo verify` (run it with --trials all for "
                    "a dense map). From flags: evaluate the --C × --gamma grid directly (the paper's Fig. 8): a "
                    "clean fit (slope) and a poisoned retraining per cell. Writes heatmap*.html.")
    _add_study(parser)
    _add_attack_argument(parser)
    _add_flag_arguments(parser)
    parser.add_argument("--bins", type=positive_int, default=6, help="log bins per axis for a study (default: 6)")
    parser.add_argument("--tolerance", type=fraction, default=None,
                        help=f"robust region: clean accuracy within this of the best (default: the study's "
                             f"[report] tolerance, else {DEFAULT_TOLERANCE})")
    parser.add_argument("--max-backdoor", type=fraction, default=0.2,
                        help="robust region: backdoor accuracy at most this (default: 0.2)")
    parser.set_defaults(handler=_heatmap)


def _heatmap(args: argparse.Namespace) -> int:
    from robust_hpo.analysis import paper_grid, stored_verification
    from robust_hpo.plots import grid_figure

    if uses_study(args):
        ctx = _study_context(args)
        tolerance = args.tolerance if args.tolerance is not None else ctx.tolerance
        choices = list(ctx.splits) if args.attack == ALL and len(ctx.splits) > 1 else [args.attack]
        for choice in choices:
            trials = stored_verification(ctx.study, attack=choice)
            if not trials:
                raise ValidationError(f"study {ctx.study.study_name!r} has no verification stored on "
                                      f"{_attack_choice(argparse.Namespace(attack=choice), ctx)}; run "
                                      f"`{PROG} verify ... --trials all"
                                      + (f" --attack {choice}" if choice != WORST else "") + "` first")
            print(f"heatmaps of {len(trials)} verified trials on {_attack_choice(argparse.Namespace(attack=choice), ctx)}")
            _study_heatmaps(trials, ctx, args, bins=args.bins, attack=choice if len(choices) > 1 else None,
                            tolerance=tolerance, max_backdoor=args.max_backdoor, choice=choice)
        _finish(ctx)
        return 0
    learner, values = _flag_values(args)
    ctx = _flags_context(args)
    (split,) = ctx.splits.values()
    n_cells = len(values["C"]) * len(values.get("gamma", [None]))
    bar = _bar([], total=n_cells, desc="grid cells (fit + poisoned retraining)")
    grid = paper_grid(split, learner=learner, C=sorted(values["C"]),
                      gamma=sorted(values["gamma"]) if "gamma" in values else None,
                      progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    rho, p, note = grid.spearman()
    print(f"{learner} on {_attack_choice(args, ctx)}: Spearman(slope, backdoor accuracy) = "
          + ("undefined" if rho is None else f"{rho:.3f} (p = {p:.2g})") + f", {note}")
    for key, reason in grid.errors.items():
        print(f"  {key}: {reason}", file=sys.stderr)
    tolerance = args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE
    rule = f"clean accuracy after poisoning within {tolerance:g} of the best cell, backdoor accuracy ≤ {args.max_backdoor:g}"
    configs = _flag_configs(args, ctx)
    figure = grid_figure(grid, title=f"{learner} on {_short_choice(args, ctx)}: accuracy after poisoning and slope",
                         robust_cells=grid.robust_cells(tolerance=tolerance, max_backdoor=args.max_backdoor),
                         robust_rule=rule)
    _write(figure, ctx.output / _file_name("heatmap", args, ctx, configs), ctx)
    _finish(ctx)
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_curves, _add_deviation, _add_explain, _add_verify, _add_heatmap)

__all__ = ["COMMANDS", "FLAGS_OUTPUT"]
