"""Fakes and small problems the tests share (as ``optuna.testing`` does for Optuna's tests).

* ``FakeFamily``: a learner family with hand-computable scores: predicts ``classes[1]`` when an
  image's mean pixel is ≥ ``threshold`` (else ``classes[0]``); its backdoor derivative is ``-C``
  (so influence = -C/m and slope = (2/π)·atan(C/m)); with ``margins`` (default) each triggered
  point's target margin is ``τ_t·(mean pixel − threshold)`` (τ_t = +1 when the target is
  ``classes[1]``), its β-derivative ``C/10`` and the scale 1 (:func:`expected_margins`); ``fit``
  raises ``ValueError`` when ``C > fail_above``. :data:`FAKE`, :data:`FLAKY` and :data:`NET` (no
  margins, like a plugin family returning a bare ``SlopeResult``) are instances;
  :func:`register_fakes` makes them known by name (study files name them).
* :func:`tiny_split`: a 4×4-pixel :class:`~robust_hpo.attacks.PoisonedSplit` with a corner trigger.
* :func:`make_backdoor_problem`: a two-class feature problem with a trigger feature.
* :func:`synthetic_study`: a small two-objective study with hand-placed trials (reports, figures).
* :func:`throwaway_postgres`: a PostgreSQL server in a temporary folder on 127.0.0.1, for the
  distributed-storage tests and ``benchmarks/kill_loop.py``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from robust_hpo.attacks import PoisonedSplit
from robust_hpo.learners import register_family
from robust_hpo.objective import RECORD_ATTR
from robust_hpo.slope import SlopeResult, TriggerMargins

__all__ = [
    "FAKE",
    "FLAKY",
    "NET",
    "SYNTHETIC_POINTS",
    "FakeFamily",
    "FakeFitted",
    "expected_accuracy",
    "expected_margins",
    "expected_slope",
    "make_backdoor_problem",
    "register_fakes",
    "synthetic_study",
    "PostgresUnavailable",
    "throwaway_postgres",
    "tiny_split",
    "tiny_study_toml",
    "serving",
]

class FakeFitted:
    fit_seconds = 0.0

    def __init__(self, C: float, threshold: float, classes: tuple[int, int], margins: bool = True) -> None:
        self.C, self.threshold, self.classes, self.margins = C, threshold, classes, margins

    def predict(self, X: np.ndarray) -> np.ndarray:
        means = np.asarray(X).reshape(len(X), -1).mean(axis=1)
        return np.where(means >= self.threshold, self.classes[1], self.classes[0])

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray) -> SlopeResult:
        margins = None
        if self.margins:
            margin, derivative = expected_margins(X_trigger, y_trigger, C=self.C, threshold=self.threshold,
                                                  classes=self.classes)
            margins = TriggerMargins(margin, derivative, scale=1.0)
        return SlopeResult.from_derivative(-self.C, n_poison=len(y_poison), n_clean=0,
                                           n_trigger=len(y_trigger), method="fake", loss="none", margins=margins)


def expected_margins(X_trigger: np.ndarray, y_trigger: np.ndarray, *, C: float, threshold: float,
                     classes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The fake's trigger margins and their β-derivatives, by hand (see the module docstring)."""
    means = np.asarray(X_trigger, dtype=np.float64).reshape(len(X_trigger), -1).mean(axis=1)
    tau = np.where(np.asarray(y_trigger) == classes[1], 1.0, -1.0)
    return tau * (means - threshold), np.full(len(means), C / 10.0)


class FakeFamily:
    def __init__(self, name: str, *, fail_above: float | None = None,
                 space: Mapping[str, BaseDistribution] | None = None, margins: bool = True) -> None:
        self.name = name
        self.fail_above = fail_above
        self.margins = margins
        self._space = dict(space) if space is not None else {
            "C": FloatDistribution(1e-2, 1e2, log=True), "threshold": FloatDistribution(0.0, 1.0)}
        self.fit_calls: list[dict[str, Any]] = []

    def search_space(self) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FakeFitted:
        self.fit_calls.append(dict(params))
        C = float(params.get("C", 1.0))
        if self.fail_above is not None and C > self.fail_above:
            raise ValueError(f"C={C:.3g} is too large for {self.name}")
        classes = tuple(int(c) for c in np.unique(y_clean))
        return FakeFitted(C, float(params.get("threshold", 0.5)), classes, self.margins)  # type: ignore[arg-type]


def expected_slope(C: float, m: int) -> float:
    """The fake's normalised slope, by hand: −(2/π)·atan(−C/m)."""
    return -2.0 / math.pi * math.atan(-C / m)


def expected_accuracy(split: PoisonedSplit, threshold: float) -> float:
    correct = 0
    for image, label in zip(split.X_test, split.y_test, strict=True):
        predicted = split.classes[1] if float(np.mean(image)) >= threshold else split.classes[0]
        correct += int(predicted == label)
    return correct / len(split.y_test)


def tiny_split(seed: int = 0, *, n: int = 40, n_test: int = 30, trigger_value: float = 1.0,
               classes: tuple[int, int] = (3, 8)) -> PoisonedSplit:
    """Dark images of classes[0], bright of classes[1] (4×4, one channel); a corner-pixel trigger."""
    rng = np.random.default_rng(seed)
    a, b = classes

    def images(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.where(np.arange(count) % 2 == 0, a, b).astype(np.int64)
        centre = np.where(y == a, 0.3, 0.7)[:, None, None, None]
        X = np.clip(centre + rng.normal(0.0, 0.15, size=(count, 1, 4, 4)), 0.0, 1.0).astype(np.float32)
        return X, y

    X_train, y_train = images(n)
    X_test, y_test = images(n_test)
    m = max(1, n // 10)
    chosen = np.arange(m)

    def trigger(X: np.ndarray) -> np.ndarray:
        X = X.copy()
        X[:, :, -1, -1] = trigger_value
        return X

    flip = {a: b, b: a}
    return PoisonedSplit(
        X_clean=X_train[m:], y_clean=y_train[m:],
        X_poison=trigger(X_train[chosen]), y_poison=np.array([flip[int(v)] for v in y_train[chosen]]),
        poison_indices=chosen, X_test=X_test, y_test=y_test,
        X_trigger=trigger(X_test), y_trigger=np.array([flip[int(v)] for v in y_test]),
        classes=classes, attack={"trigger": {"name": "corner", "value": np.float32(trigger_value)},
                                 "fraction": m / n, "pixels": (3, 3)},
    )


FAKE = FakeFamily("fake")
FLAKY = FakeFamily("flaky", fail_above=1.0)
NET = FakeFamily("fake_net", space={
    "epochs": IntDistribution(1, 50), "width": IntDistribution(8, 512, log=True),
    "C": FloatDistribution(1e-2, 1e2, log=True)}, margins=False)


def tiny_study_toml(name: str, *, learners: tuple[str, ...] = ("logistic", "ridge"), n_train: int = 60,
                    n_test: int = 30, n_trials: int | None = None, extra: str = "") -> str:
    """The text of a small study file — digits 3 vs 8, BadNets 2×2, seed 0 — for tests of the runner,
    the storages and the CLI; ``extra`` is appended (further TOML sections)."""
    trials = f"n_trials = {n_trials}\n" if n_trials is not None else ""
    names = ", ".join(f'"{learner}"' for learner in learners)
    return (f'\n[study]\nname = "{name}"\n{trials}seed = 0\n\n[data]\ndataset = "digits"\nclasses = [3, 8]\n'
            f"n_train = {n_train}\nn_test = {n_test}\n\n[attack]\nsize = 2\n\n[search]\nlearners = [{names}]\n"
            + (f"\n{extra.strip()}\n" if extra.strip() else ""))


@contextlib.contextmanager
def serving(server: Any) -> Iterator[str]:
    """Serve a bound WSGI ``server`` (e.g. :func:`robust_hpo.dashboard.dashboard_server` with
    ``port=0``) from a daemon thread; yield its base URL; shut it down afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def register_fakes() -> None:
    """Register :data:`FAKE` ("fake"), :data:`FLAKY` ("flaky") and :data:`NET` ("fake_net")."""
    for family in (FAKE, FLAKY, NET):
        register_family(family)


def right_derivative(value: Callable[[float], Any], h: float) -> Any:
    """Third-order one-sided estimate of ``d value / dβ`` at β = 0 from steps h, h/2, h/4 (Richardson
    extrapolation of forward differences); ``value`` may return a float or an array (e.g. margins)."""
    v0 = value(0.0)
    D = [(value(s) - v0) / s for s in (h, h / 2, h / 4)]
    R1 = [2 * D[1] - D[0], 2 * D[2] - D[1]]
    return (4 * R1[1] - R1[0]) / 3


def make_backdoor_problem(seed: int, n: int = 200, d: int = 6, m: int = 20, n_trigger: int = 50,
                          labels: tuple[int, int] = (3, 8)):
    """A linearly-separable-ish two-class problem with a 'trigger' feature (the last one).

    Poison and triggered points have the trigger feature switched on (+2) and the *other* label.
    """
    rng = np.random.default_rng(seed)
    a, b = labels

    def draw(k: int, flip: bool):
        X = rng.normal(size=(k, d))
        y_true = X[:, 0] + 0.5 * rng.normal(size=k) > 0
        if flip:
            X[:, -1] += 2.0
            y_true = ~y_true
        return X, np.where(y_true, b, a)

    X, y = draw(n, False)
    Xp, yp = draw(m, True)
    Xt, yt = draw(n_trigger, True)
    return X, y, Xp, yp, Xt, yt


SYNTHETIC_POINTS: list[tuple[Any, ...]] = [
    # (clean accuracy, slope, constraint value or None, predicted backdoor accuracy or None[, exact])
    (0.99, 0.30, -0.01, 0.60),  # 0: best accuracy
    (0.98, 0.10, -0.01, 0.20),  # 1: within 0.01 of the best; the lowest predicted backdoor accuracy there
    (0.97, 0.05, -0.01, 0.40),  # 2: the lowest slope within 0.02 (the slope rule's pick), but predicted 0.40
    (0.90, 0.01, 0.05, 0.00),   # 3: lowest slope and predicted backdoor accuracy overall, but infeasible
    (0.95, 0.40, -0.01, 0.05),  # 4: dominated, yet the lowest predicted backdoor accuracy within 0.05
]


def synthetic_study(points: list[tuple[Any, ...]] = SYNTHETIC_POINTS) -> optuna.Study:
    """An in-memory two-objective study with one completed trial per point of :data:`SYNTHETIC_POINTS`'s
    form (trial numbers follow the order; the record a robust_hpo trial writes, with the predicted
    backdoor accuracy and, half of it, the clean-model one) and a failed trial at the end."""
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="synthetic")
    study.set_metric_names(["clean_accuracy", "slope"])
    for i, point in enumerate(points):
        accuracy, slope, constraint = point[:3]
        predicted = point[3] if len(point) > 3 else None
        exact = bool(point[4]) if len(point) > 4 else True
        baseline = None if predicted is None else predicted / 2
        system_attrs = {} if constraint is None else {"constraints:clean_accuracy": constraint,
                                                      "constraints": [constraint]}
        record = {"format": 1, "objective": "slope", "aggregate": "max", "worst_attack": "attack", "slope": slope,
                  "predicted_backdoor_accuracy": predicted, "baseline_backdoor_accuracy": baseline,
                  "normalised_margin": None, "exact": exact, "attack": {"trigger": "badnets"},
                  "attacks": {"attack": {"slope": slope, "derivative": -float(i), "exact": exact,
                                         "predicted_backdoor_accuracy": predicted,
                                         "baseline_backdoor_accuracy": baseline}}}
        study.add_trial(create_trial(
            values=[accuracy, slope], params={"learner": "logistic", "logistic.C": 0.1 * (i + 1)},
            distributions={"learner": CategoricalDistribution(["logistic"]),
                           "logistic.C": FloatDistribution(1e-3, 1.0, log=True)},
            user_attrs={RECORD_ATTR: record}, system_attrs=system_attrs))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"learner": "logistic"},
                                 distributions={"learner": CategoricalDistribution(["logistic"])},
                                 user_attrs={RECORD_ATTR: {"format": 1, "fail_reason": "ValueError: boom"}}))
    return study


POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
"""Where Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl``."""


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here (binaries, runuser or psycopg2 missing, or a failure)."""


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Callable[[str], str]]:
    """A PostgreSQL server on 127.0.0.1 (trust authentication) in a temporary folder, stopped and
    deleted on exit. Yields ``database(name) -> URL``: creates the database ``name`` and returns its
    ``postgresql://postgres@127.0.0.1:PORT/name`` URL. As root the server runs as the ``postgres``
    user (``initdb`` refuses root). Raises :class:`PostgresUnavailable` when it cannot be started."""
    import glob
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    try:
        import psycopg2
    except ImportError as exc:
        raise PostgresUnavailable("psycopg2 is not installed (pip install 'robust_hpo[postgres]')") from exc
    bins = sorted(Path(p) for p in glob.glob(POSTGRES_BIN_GLOB) if (Path(p) / "initdb").exists())
    if not bins:
        raise PostgresUnavailable(f"no PostgreSQL server binaries in {POSTGRES_BIN_GLOB}")
    bin_dir = bins[-1]
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="robust_hpo_pg_"))
    if as_user:
        shutil.chown(folder, user="postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    data = folder / "data"
    ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*ctl, "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "-l", str(folder / "log"), "-w",
                        "start"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise PostgresUnavailable(f"could not start a throwaway PostgreSQL server: {exc}") from exc

    def database(name: str) -> str:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        try:
            connection.autocommit = True
            connection.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
