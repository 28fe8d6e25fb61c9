"""Deterministic stratified train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_split", "grouped_split", "DEFAULT_FRACTIONS", "min_per_class"]

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


def grouped_split(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
    *,
    fraction: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held out), stratified by label, whole groups at a time.

    Groups (e.g. the board a crop was cut from) never straddle the two parts, so a held-out
    score is not inflated by near-duplicates of training images. Groups are visited in a seeded
    random order and one is held out when that brings every class's held-out count closer to
    ``fraction`` of the class (sum of squared shortfalls, each relative to the class size).
    With one sample per group this holds out exactly ``round(fraction * n)`` of every class.

    Args:
        labels: class index of each sample.
        groups: group key of each sample; ``None`` makes every sample its own group.
        fraction: share of each class to hold out, in (0, 1).
        seed: the same seed, labels and groups always give the same split.

    Returns:
        Two sorted index arrays.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    if groups is None:
        gid = np.arange(n)
    else:
        _, gid = np.unique(np.asarray(groups), return_inverse=True)
    classes, y = np.unique(labels, return_inverse=True)
    n_groups = int(gid.max()) + 1 if n else 0
    counts = np.zeros((n_groups, len(classes)), dtype=np.int64)
    np.add.at(counts, (gid, y), 1)
    size = counts.sum(axis=0).astype(np.float64)
    # At least one held-out sample per class that has two or more (else train would lose it).
    target = np.where(size >= 2, np.maximum(1.0, np.round(fraction * size)), 0.0)
    held = np.zeros(len(classes))
    chosen = np.zeros(n_groups, dtype=bool)
    rng = np.random.default_rng(seed)
    for g in rng.permutation(n_groups):
        gap = target - held
        if not (gap > 0).any():
            break
        after = gap - counts[g]
        # A group only helps if it moves the held-out counts towards the targets overall.
        if (np.square(after / size).sum() < np.square(gap / size).sum()):
            chosen[g] = True
            held += counts[g]
    out = chosen[gid]
    return np.flatnonzero(~out), np.flatnonzero(out)
