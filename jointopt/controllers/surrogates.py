"""The axiswise sampler's surrogates: ridge regressions of each objective on a config's
features (:mod:`jointopt.controllers.axiswise` screens candidates with them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jointopt.space import JointConfig, SearchSpace, merge_limits

_ACCURACY = ("accuracy", "balanced_accuracy")


def _features(cfg: JointConfig, space: SearchSpace, precisions: list[str]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The surrogates' inputs, in two parts: the architecture's (intercept, log MACs with the
    tokens left after merging, log weight entries, depth) and the cheap axes' (merged share,
    precision one-hot). The accuracy model fits the second part within architectures."""
    s = space.supernet
    e, hd = cfg.embed_dim, s.head_dim
    patches = s.num_tokens - 1
    macs = patches * s.patch_size**2 * e
    weights = s.patch_size**2 * e
    for (n, _), r, h, m in zip(merge_limits(s.num_tokens, cfg.merges), cfg.merges, cfg.heads,
                               cfg.mlp_dims(), strict=True):
        w = h * hd
        macs += n * e * 4 * w + 2 * n * n * w + (n - r) * 2 * e * m
        weights += 4 * e * w + 2 * e * m
    merged = sum(cfg.merges) / max(1, s.num_tokens)
    onehot = [1.0 if cfg.precision == p else 0.0 for p in precisions]
    return (np.array([1.0, math.log(macs), math.log(weights), cfg.depth / s.depth]),
            np.array([merged, *onehot]))


def _row(cfg: JointConfig, space: SearchSpace, precisions: list[str]) -> np.ndarray:
    return np.concatenate(_features(cfg, space, precisions))


def _arch(cfg: JointConfig) -> tuple[Any, ...]:
    return cfg.depth, cfg.embed_dim, cfg.heads, cfg.ratios


#: Ridge penalty of the surrogates' coefficients.
ALPHA = 0.3


class _Ridge:
    """Ridge regression of ``y`` on ``x`` (intercept in column 0, not shrunk).

    With ``groups`` (one architecture key per row), the coefficients of the columns from
    ``n_arch`` on (merging and precision) are estimated within architectures only: from the
    differences between configs of one architecture, as a fixed-effects regression does. The
    first trials measure each precision once, on unrelated architectures; a pooled fit credited
    their accuracy to the precision (on WM-811K it taught the model that a precision costs 3
    points, and the search never measured it again), and a strong prior instead kept every
    penalty near zero (on DeepPCB merging then looked free, new architectures were measured
    merged, and they scored just under the baseline's accuracy). Within
    architectures, a precision or merging step is compared with its own parent, so the
    coefficient is zero until such pairs exist and then follows them.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, alpha: float = ALPHA,
                 groups: np.ndarray | None = None, n_arch: int = 0) -> None:
        if groups is None:
            self.coef = self._fit(x, y, alpha)
        else:
            xc, yc = x[:, n_arch:].copy(), y.astype(float).copy()
            for g in np.unique(groups):
                rows = groups == g
                xc[rows] -= xc[rows].mean(axis=0)
                yc[rows] -= yc[rows].mean()
            cheap = np.linalg.solve(xc.T @ xc + alpha * np.eye(xc.shape[1]), xc.T @ yc)
            arch = self._fit(x[:, :n_arch], y - x[:, n_arch:] @ cheap, alpha)
            self.coef = np.concatenate([arch, cheap])
        resid = y - x @ self.coef
        self.sigma = float(np.sqrt(np.mean(resid**2))) if len(y) > 1 else 0.1

    @staticmethod
    def _fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        reg = alpha * np.eye(x.shape[1])
        reg[0, 0] = 0.0  # no shrinkage of the intercept
        return np.linalg.solve(x.T @ x + reg, x.T @ y)

    def __call__(self, x: np.ndarray) -> float:
        return float(x @ self.coef)
