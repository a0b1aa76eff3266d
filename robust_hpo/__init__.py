"""robust_hpo: the backdoor learning slope as a cheap, first-class Optuna objective."""

from __future__ import annotations

__version__ = "0.1.0"

__all__: list[str] = ["__version__"]
