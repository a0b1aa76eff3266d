"""scikit-learn's bundled 8×8 digits (1,797 images, values 0..16 scaled to [0, 1]); always offline."""

from __future__ import annotations

from sklearn.datasets import load_digits

from robust_hpo.datasets._source import Source, array_pool


def digits_source() -> Source:
    """One pool (no official split): train and test are a seeded stratified split of it."""
    bunch = load_digits()
    images = bunch.images[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    pool = array_pool(images, bunch.target, scale=16.0, where="sklearn.datasets.load_digits()")
    ids = tuple(int(c) for c in range(10))
    return Source(name="digits", ids=ids, names=tuple(str(c) for c in ids), train=pool, test=None,
                  split="stratified")
