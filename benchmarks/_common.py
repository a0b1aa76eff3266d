"""Shared set-up for the benchmark scripts: the paper's MNIST 7-1 protocol, or a stand-in."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from robust_hpo.attacks import BadNets, PoisonedSplit, poison
from robust_hpo.datasets import Dataset, load_dataset

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def mnist_pair_split(pair: tuple[int, ...] = (7, 1), *, n_train: int = 1500, n_test: int = 500,
                     trigger_size: int = 3, fraction: float = 0.1, seed: int = 0) -> tuple[PoisonedSplit, str]:
    """The paper's protocol on the shared MNIST split (``pair``: the classes, two or more); a generated
    stand-in when it is absent."""
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        ds = load_dataset("mnist", root=SHARED_MNIST, classes=pair, n_train=n_train, n_test=n_test, seed=seed)
        source = f"MNIST {'-'.join(map(str, pair))} from {SHARED_MNIST} ({n_train} train / {n_test} test)"
    else:
        ds = _stand_in(pair, n_train, n_test, seed)
        source = (f"GENERATED STAND-IN for MNIST {'-'.join(map(str, pair))} (shared split not found at "
                  f"{SHARED_MNIST}): 28x28 random blobs, {n_train} train / {n_test} test")
    return poison(ds, BadNets(size=trigger_size, seed=seed), fraction=fraction, seed=seed), source


def _stand_in(pair: tuple[int, ...], n_train: int, n_test: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    protos = rng.random((len(pair), 1, 28, 28)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        lab = rng.integers(0, len(pair), size=n)
        X = np.clip(protos[lab] + 0.3 * rng.standard_normal((n, 1, 28, 28)), 0, 1).astype(np.float32)
        return X, np.asarray(pair)[lab].astype(np.int64)

    Xtr, ytr = draw(n_train)
    Xte, yte = draw(n_test)
    return Dataset(name="mnist-stand-in", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte,
                   classes=tuple(pair), class_names=tuple(str(c) for c in pair))


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (these machines are noisy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def limit_blas_threads(threads: int | None) -> str:
    """Cap every BLAS/OpenMP pool at ``threads`` for the rest of the process (None: leave them), and
    describe the pools for the benchmark's header (numpy and scipy each ship an OpenBLAS)."""
    if threads is not None:
        threadpool_limits(limits=threads)
    pools = ", ".join(f"{p['internal_api']}×{p['num_threads']}" for p in threadpool_info())
    return f"BLAS threads: {pools or 'none loaded'}" + ("" if threads is not None else " (default; --threads N caps them)")


def run_table(cases: Sequence[Any], run_case: Callable[[Any, Path], Any], header: str,
              row: Callable[[Any, Any], str]) -> list[Any]:
    """Print ``header`` and a rule, run every case in one temporary folder (``run_case(case, folder)``)
    and print its ``row(case, outcome)`` as soon as it finishes; the outcomes, in case order."""
    print(header)
    print("-" * len(header))
    outcomes = []
    with tempfile.TemporaryDirectory() as folder:
        for case in cases:
            outcome = run_case(case, Path(folder))
            outcomes.append(outcome)
            print(row(case, outcome), flush=True)
    return outcomes
