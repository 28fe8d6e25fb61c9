"""Defect-safe training augmentation: flips, quarter turns, shifts, resized crops, mixup, cutmix.

Every random draw comes from the caller's ``numpy.random.Generator`` (seeded per epoch by the
trainer), so a resumed run sees the same batches. A setting that is off draws nothing, so
turning one on never changes the draws of the others in a study that does not use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jointopt.study import TrainSpec

__all__ = ["augment", "random_resized_crop", "Targets", "mix"]


def augment(x: Tensor, rng: np.random.Generator, spec: TrainSpec) -> Tensor:
    """Flips, quarter turns, small shifts and (opt-in) resized crops of uint8 images.

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
    if spec.rrc_scale is not None:
        x = random_resized_crop(x, rng, spec.rrc_scale)
    return x


def random_resized_crop(x: Tensor, rng: np.random.Generator, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Crop each image to a random box of ``scale`` x its area and aspect ``ratio``, resized
    back to the full size (bilinear); uint8 in, uint8 out.

    Args:
        x: images ``[B, C, H, W]``.
        rng: random source.
        scale: smallest and largest share of the area kept. A floor such as 0.8 keeps a crop
            centred on a defect (DeepPCB's 1.5x context) from cutting the defect away.
        ratio: range of the box's width / height, drawn log-uniformly.
    """
    b, _, h, w = x.shape
    area = rng.uniform(scale[0], scale[1], size=b)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=b))
    # Box sides as a share of the image side, clipped so the box fits.
    sw = np.clip(np.sqrt(area * aspect), 0.0, 1.0)
    sh = np.clip(np.sqrt(area / aspect), 0.0, 1.0)
    cx = rng.uniform(-1.0, 1.0, size=b) * (1.0 - sw)
    cy = rng.uniform(-1.0, 1.0, size=b) * (1.0 - sh)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.from_numpy(sw)
    theta[:, 0, 2] = torch.from_numpy(cx)
    theta[:, 1, 1] = torch.from_numpy(sh)
    theta[:, 1, 2] = torch.from_numpy(cy)
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.round_().clamp_(0, 255).to(x.dtype)


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

    def to(self, device: torch.device) -> Targets:
        """The same targets on ``device``."""
        return Targets(self.y.to(device), self.y2.to(device), self.lam)

    def loss(self, logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Cross-entropy against the mixed labels."""
        ce = F.cross_entropy(logits, self.y, label_smoothing=label_smoothing)
        if self.lam >= 1.0:
            return ce
        ce2 = F.cross_entropy(logits, self.y2, label_smoothing=label_smoothing)
        return self.lam * ce + (1.0 - self.lam) * ce2


def mix(x: Tensor, y: Tensor, rng: np.random.Generator, spec: TrainSpec
        ) -> tuple[Tensor, Targets]:
    """Mixup (Zhang et al., 2018) or cutmix (Yun et al., 2019) of a normalised float batch.

    Each batch is paired with a random permutation of itself. With both alphas set, one of the
    two is picked per batch with equal odds (as timm does). Cutmix's weight is the share of the
    image actually left uncovered after the box is clipped to the image.
    """
    if spec.mixup <= 0 and spec.cutmix <= 0:
        return x, Targets.plain(y)
    use_cutmix = spec.cutmix > 0 and (spec.mixup <= 0 or rng.random() < 0.5)
    alpha = spec.cutmix if use_cutmix else spec.mixup
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    if not use_cutmix:
        return lam * x + (1.0 - lam) * x[perm], Targets(y, y[perm], lam)
    h, w = x.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(round(h * cut)), int(round(w * cut))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = max(0, cy - ch // 2), min(h, cy + ch - ch // 2)
    x0, x1 = max(0, cx - cw // 2), min(w, cx + cw - cw // 2)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return out, Targets(y, y[perm], lam)
