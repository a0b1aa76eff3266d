"""Shared fixtures: the real-data locations, torch on one thread; the fake learner families registered.

Shared fakes and small problems live in :mod:`robust_hpo.testing` (importable from any test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_hpo.testing import register_fakes

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "datasets" / "mnist"

register_fakes()  # study files in the tests name the fake families "fake", "flaky" and "fake_net"


@pytest.fixture(scope="session", autouse=True)
def _session_output_root(tmp_path_factory: pytest.TempPathFactory):
    """Default output folders and journals under a temporary root, never the working directory
    (session-wide, for module fixtures that run studies)."""
    root = tmp_path_factory.mktemp("robust_hpo_output")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUST_HPO_OUTPUT_ROOT", str(root))
        yield root


@pytest.fixture(autouse=True)
def output_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own output root (``$ROBUST_HPO_OUTPUT_ROOT``): default study folders and journals of
    one test never meet another's."""
    root = tmp_path / "robust_hpo_output"
    monkeypatch.setenv("ROBUST_HPO_OUTPUT_ROOT", str(root))
    return root


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
