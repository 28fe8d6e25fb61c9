"""Deterministic stratified train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_split", "DEFAULT_FRACTIONS", "min_per_class"]

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def min_per_class(fractions: Sequence[float] = DEFAULT_FRACTIONS) -> int:
    """Fewest images a class needs so that every split gets at least one of it."""
    smallest = min(f for f in fractions if f > 0)
    return max(len(fractions), int(np.ceil(1.0 / smallest)))


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train/val/test, stratified by label and deterministic for ``seed``.

    Args:
        labels: class index of each sample.
        fractions: train, val and test fractions; they must sum to 1.
        seed: the same seed and labels always give the same split.

    Returns:
        Three sorted index arrays. Every class with at least :func:`min_per_class` samples
        appears in every split.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_val = max(1, int(round(fractions[1] * n)))
        n_test = max(1, int(round(fractions[2] * n)))
        n_train = n - n_val - n_test
        parts[0].extend(idx[:n_train].tolist())
        parts[1].extend(idx[n_train : n_train + n_val].tolist())
        parts[2].extend(idx[n_train + n_val :].tolist())
    train, val, test = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    return train, val, test
