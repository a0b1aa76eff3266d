"""Shared fixtures: synthetic backdoor problems and the real-data locations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "datasets" / "mnist"


@pytest.fixture
def mnist_dir() -> Path:
    """The shared MNIST test split; skips the test when ``../shared`` is absent."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST files not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a test module: tiny networks run fastest that way (the CI machine has two cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
