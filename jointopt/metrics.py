"""Classification metrics for imbalanced data: per-class recall and balanced accuracy.

On a set like DeepPCB, where "normal" is five times each defect class, plain accuracy rewards a
model that favours the large class; the mean of per-class recall does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["per_class_recall", "balanced_accuracy", "confusion_matrix"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _flat(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64).reshape(-1)


def confusion_matrix(preds: ArrayLike, labels: ArrayLike, n_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``, shape ``[n_classes, n_classes]``.

    Args:
        preds: predicted class of each sample.
        labels: true class of each sample.
        n_classes: number of classes; every value must be in ``0..n_classes-1``.
    """
    p, y = _flat(preds), _flat(labels)
    if p.shape != y.shape:
        raise ValueError(f"preds and labels differ in length: {len(p)} and {len(y)}")
    for name, v in (("preds", p), ("labels", y)):
        if len(v) and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{name} hold values outside 0..{n_classes - 1}")
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (y, p), 1)
    return out


def per_class_recall(preds: ArrayLike, labels: ArrayLike, n_classes: int) -> np.ndarray:
    """Recall of each class (correct / samples of that class); NaN for a class with no samples.

    Args:
        preds: predicted class of each sample.
        labels: true class of each sample.
        n_classes: number of classes.
    """
    cm = confusion_matrix(preds, labels, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def balanced_accuracy(preds: ArrayLike, labels: ArrayLike, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``labels`` (0.0 when there are none).

    Classes absent from ``labels`` are left out of the mean, as scikit-learn's
    ``balanced_accuracy_score`` does, so a small split that misses a class is not penalised
    for it.
    """
    recall = per_class_recall(preds, labels, n_classes)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else 0.0
