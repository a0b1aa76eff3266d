"""Every error robust_hpo raises derives from :class:`RobustHPOError`.

``except RobustHPOError`` catches anything the library raises on bad input, bad files or a failed
solve. Each class keeps the built-in base it had (``ValueError``, ``FileNotFoundError``,
``RuntimeError``, ``ImportError``) as a second base, so ``except ValueError`` keeps working.

Which class when:

* :class:`ValidationError` — an argument, a settings value or a study-file key is wrong (the message
  names it and what was expected).
* :class:`MissingFileError` — a file or folder the caller named does not exist.
* :class:`DataFileError` — a data file exists but is corrupt, oversized or not what its format allows
  (nothing in it is executed).
* :class:`StorageError` — a study storage cannot be used safely (torn journal, foreign file, a study
  robust_hpo did not create, a different problem).
* :class:`SingularHessianError`, :class:`DegenerateSolveError`, :class:`NotConvergedError`,
  :class:`InfluenceSolveError` — the slope is not defined or not computable at this configuration;
  a study records the reason on the trial and fails only that trial.
* :class:`NotFittedError` — a model was asked for a result before it was fitted.
* :class:`WeightsUnavailableError` — pretrained weights cannot be downloaded or read.
* :class:`MissingDependencyError` — an optional extra (e.g. ``robust_hpo[torch]``) is not installed;
  :func:`requires_torch` / :func:`require_torch` raise it for torch, torchvision and Pillow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

TORCH_EXTRA = "pip install 'robust_hpo[torch]'"
"""How to install what the network learners, pretrained features and folder datasets need."""

TORCH_MODULES = ("torch", "torchvision", "PIL")
"""The modules of the ``[torch]`` extra; the light install (``pip install robust_hpo``) lacks them."""

__all__ = [
    "TORCH_EXTRA",
    "TORCH_MODULES",
    "DataFileError",
    "DegenerateSolveError",
    "InfluenceSolveError",
    "MissingDependencyError",
    "MissingFileError",
    "NotFittedError",
    "NotConvergedError",
    "RobustHPOError",
    "SingularHessianError",
    "StorageError",
    "ValidationError",
    "WeightsUnavailableError",
    "require_torch",
    "requires_torch",
]


class RobustHPOError(Exception):
    """Base of every error robust_hpo raises."""


class ValidationError(RobustHPOError, ValueError):
    """An argument, setting or study-file key has a wrong type or value."""


class MissingFileError(RobustHPOError, FileNotFoundError):
    """A file or folder named by the caller does not exist."""


class DataFileError(RobustHPOError, ValueError):
    """A data file is corrupt, larger than allowed, or holds something its format does not allow."""


class StorageError(RobustHPOError, ValueError):
    """A study storage cannot be used safely (torn journal, foreign file or study, different problem)."""


class SingularHessianError(RobustHPOError, ValueError):
    """The Hessian is (numerically) singular at the clean solution; the slope is not defined."""


class DegenerateSolveError(RobustHPOError, ValueError):
    """The optimality conditions at the clean solution do not determine the derivative."""


class NotConvergedError(RobustHPOError, ValueError):
    """The clean fit is not at the optimum the slope differentiates (optimality residual too large)."""


class InfluenceSolveError(RobustHPOError, ValueError):
    """The linear solve behind an influence slope failed (indefinite, diverging or not converged)."""


class NotFittedError(RobustHPOError, RuntimeError):
    """A model was asked for a result before ``fit`` was called."""


class WeightsUnavailableError(RobustHPOError, RuntimeError):
    """Pretrained weights could not be downloaded or read from the torch hub cache."""


class MissingDependencyError(RobustHPOError, ImportError):
    """An optional dependency (an extra such as ``robust_hpo[torch]``) is not installed."""


@contextmanager
def requires_torch(purpose: str) -> Iterator[None]:
    """Turn a missing torch/torchvision/Pillow inside the block into a :class:`MissingDependencyError`
    naming ``purpose`` (the outermost block's) and the ``[torch]`` extra; any other
    ``ModuleNotFoundError`` passes through."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in TORCH_MODULES:
            raise
        raise _torch_missing(purpose, missing) from exc
    except MissingDependencyError as exc:
        missing = getattr(exc, "module", None)
        if missing is None:
            raise
        raise _torch_missing(purpose, missing) from exc.__cause__


def _torch_missing(purpose: str, module: str) -> MissingDependencyError:
    error = MissingDependencyError(f"{purpose} needs the module {module!r}, which this installation lacks (the "
                                   f"light install leaves torch out): {TORCH_EXTRA}")
    error.module = module  # type: ignore[attr-defined]
    return error


def require_torch(purpose: str) -> None:
    """Import torch and torchvision, or raise :class:`MissingDependencyError` (see :func:`requires_torch`)."""
    with requires_torch(purpose):
        import torch  # noqa: F401
        import torchvision  # noqa: F401
