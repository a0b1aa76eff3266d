"""Data-only products reused across fits on the same training array (one per HPO study).

Every trial of a study fits on the same clean training set; only the hyperparameters change.
``X Xᵀ`` (the dual space's n×n Gram) and ``Xᵀ X`` (ridge's primal Gram: its curvature does not
depend on θ) are the dominant cost of an exact slope and depend on the data alone, so a study
computes them once — and with them the cheap data-only helpers every trial would otherwise redo
(the used features, X on them, the row norms). Entries are keyed by the *identity* of the array and
hold a strong reference to it (so the identity cannot be reused); the arrays must not be modified in
place while cached.
"""

from __future__ import annotations

import threading
from numbers import Integral
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from robust_hpo._validation import Interval, check, flatten_images


def used_features(X: np.ndarray, block_bytes: int = 4 * 2 ** 20) -> np.ndarray:
    """Indices of the columns of X with a nonzero entry (over row blocks: no n×d temporary)."""
    n, d = X.shape
    rows = max(1, block_bytes // (8 * max(d, 1)))
    used = np.zeros(d, dtype=bool)
    for start in range(0, n, rows):
        used |= np.any(X[start:start + rows] != 0, axis=0)
    return np.flatnonzero(used)


def row_norms(X: np.ndarray) -> np.ndarray:
    """‖x_i‖² per row."""
    return np.einsum("ij,ij->i", X, X)


class GramCache:
    """A small LRU of flattened training arrays and their Gram matrices.

    ``max_entries`` bounds the number of distinct arrays kept; ``max_primal_features`` bounds the
    size of a cached ``Xᵀ X`` (d×d floats).
    """

    def __init__(self, *, max_entries: int = 2, max_primal_features: int = 4096) -> None:
        check("max_entries", max_entries, [Interval(Integral, 1, None)])
        check("max_primal_features", max_primal_features, [Interval(Integral, 0, None)])
        self.max_entries = max_entries
        self.max_primal_features = max_primal_features
        self._entries: OrderedDict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # Optuna's n_jobs > 1 runs trials in threads

    def _slot(self, X: np.ndarray) -> dict[str, np.ndarray]:
        key = id(X)
        with self._lock:
            if key in self._entries and self._entries[key][0] is X:
                self._entries.move_to_end(key)
                return self._entries[key][1]
            self._entries[key] = (X, {})
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return self._entries[key][1]

    def _get(self, X: np.ndarray, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        slot = self._slot(X)
        if name in slot:
            self.hits += 1
            return slot[name]
        self.misses += 1
        value = compute()  # outside the lock: two threads may both compute once, harmlessly
        slot[name] = value
        return value

    def has(self, X: np.ndarray, name: str) -> bool:
        """Whether the product ``name`` (``"outer"`` or ``"inner"``) of ``X`` is already cached."""
        with self._lock:
            entry = self._entries.get(id(X))
            return entry is not None and entry[0] is X and name in entry[1]

    def flat(self, images: np.ndarray) -> np.ndarray:
        """``images`` (n, ...) as 2-D float64 rows, computed once per array object."""
        return self._get(images, "flat", lambda: flatten_images(images))

    def outer(self, X: np.ndarray) -> np.ndarray:
        """``X Xᵀ`` (n×n)."""
        return self._get(X, "outer", lambda: X @ X.T)

    def _helper(self, X: np.ndarray, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A data-only helper of ``X`` (not a Gram product: not counted in hits / misses)."""
        slot = self._slot(X)
        if name not in slot:
            slot[name] = compute()
        return slot[name]

    def used_features(self, X: np.ndarray) -> np.ndarray:
        """Indices of the columns of ``X`` some row uses (nonzero somewhere)."""
        return self._helper(X, "used", lambda: used_features(X))

    def row_norms(self, X: np.ndarray) -> np.ndarray:
        """‖x_i‖² per row of ``X`` (the subset preconditioner ranks points by it)."""
        return self._helper(X, "row_norms", lambda: row_norms(X))

    def on_used_features(self, X: np.ndarray) -> np.ndarray:
        """``X`` restricted to :meth:`used_features` (a copy: conjugate gradients and the
        factorisations work on it)."""
        return self._helper(X, "on_used", lambda: np.take(X, self.used_features(X), axis=1))

    def inner(self, X: np.ndarray) -> np.ndarray | None:
        """``Xᵀ X`` (d×d), or ``None`` when d exceeds ``max_primal_features``."""
        if X.shape[1] > self.max_primal_features:
            return None
        return self._get(X, "inner", lambda: X.T @ X)
