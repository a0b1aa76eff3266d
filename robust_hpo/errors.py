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
* :class:`MissingDependencyError` — an optional extra (e.g. ``robust_hpo[torch]``) is not installed.
"""

from __future__ import annotations

__all__ = [
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
