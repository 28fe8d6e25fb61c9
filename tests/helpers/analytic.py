"""An analytic problem with the structure of the real one, for sampler tests that evaluate no
model: the architecture decides accuracy; precision and merging scale the cost and cost a
little accuracy."""

from __future__ import annotations

import math
from typing import Any

from jointopt import SearchSpace
from jointopt.pareto import Objective

from . import TINY_SPACE

SPACE = SearchSpace.from_dict({**TINY_SPACE, "choices": {
    **{k: v for k, v in TINY_SPACE["choices"].items() if not k.endswith("bits")},
    "precision": ["w32a32", "w16a16", "w8a8", "w4a16"]}})
SPEED = {"w32a32": 1.0, "w16a16": 0.6, "w8a8": 0.35, "w4a16": 0.5}
ACC_COST = {"w32a32": 0.0, "w16a16": 0.002, "w8a8": 0.01, "w4a16": 0.02}
OBJ = [Objective("accuracy", "maximize"), Objective("latency_ms", "minimize"),
       Objective("energy_mj", "minimize")]


def analytic_metrics(cfg: Any) -> dict[str, float]:
    width = cfg.embed_dim * sum(h * (1 + m) for h, m in zip(cfg.heads, cfg.ratios, strict=True))
    size = width / 32
    acc = 0.95 - 0.35 * math.exp(-size / 3) - ACC_COST[cfg.precision] - 0.004 * sum(cfg.merges)
    cost = size * SPEED[cfg.precision] * (1 - 0.03 * sum(cfg.merges)) + 0.2
    return {"accuracy": acc, "latency_ms": cost, "energy_mj": cost * SPEED[cfg.precision]}
