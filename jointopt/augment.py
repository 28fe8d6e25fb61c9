"""Defect-safe training augmentation: flips, quarter turns and shifts.

Every random draw comes from the caller's ``numpy.random.Generator`` (seeded per epoch by the
trainer), so a resumed run sees the same batches. A setting that is off draws nothing, so
turning one on never changes the draws of the others in a study that does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jointopt.study import TrainSpec

__all__ = ["augment", "Targets"]


def augment(x: Tensor, rng: np.random.Generator, spec: TrainSpec) -> Tensor:
    """Flips, quarter turns and small shifts of uint8 images.

    No colour jitter: it could erase a faint defect.
    """
    b, _, h, w = x.shape
    if spec.hflip:
        m = torch.from_numpy(rng.random(b) < 0.5)
        x = torch.where(m[:, None, None, None], x.flip(-1), x)
    if spec.vflip:
        m = torch.from_numpy(rng.random(b) < 0.5)
        x = torch.where(m[:, None, None, None], x.flip(-2), x)
    if spec.rot90 and h == w:
        k = rng.integers(0, 4, size=b)
        x = torch.stack([torch.rot90(xi, int(ki), dims=(-2, -1)) for xi, ki in zip(x, k,
                                                                                   strict=True)])
    if spec.shift:
        s = spec.shift
        # Replicate padding: zero borders would be a fake edge the model could learn from.
        pad = F.pad(x.float(), (s, s, s, s), mode="replicate").to(x.dtype)
        dx, dy = rng.integers(0, 2 * s + 1, size=(2, b))
        x = torch.stack([pad[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w] for i in range(b)])
    return x


@dataclass(frozen=True)
class Targets:
    """The labels a (possibly mixed) batch is scored against: ``lam * y + (1 - lam) * y2``.

    Attributes:
        y: labels of the images as drawn.
        y2: labels of the images mixed in (equal to ``y`` when nothing was mixed).
        lam: weight of ``y``, in [0, 1].
    """

    y: Tensor
    y2: Tensor
    lam: float = 1.0

    @classmethod
    def plain(cls, y: Tensor) -> Targets:
        return cls(y, y, 1.0)

    def loss(self, logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Cross-entropy against the mixed labels."""
        ce = F.cross_entropy(logits, self.y, label_smoothing=label_smoothing)
        if self.lam >= 1.0:
            return ce
        ce2 = F.cross_entropy(logits, self.y2, label_smoothing=label_smoothing)
        return self.lam * ce + (1.0 - self.lam) * ce2
