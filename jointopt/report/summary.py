"""A short table of a trained supernet's largest and smallest subnet."""

from __future__ import annotations

import dataclasses
from typing import Any

from jointopt.cost.size import size_costs
from jointopt.evaluation import config_plan
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.supernet import ViTSupernet
from jointopt.train import accuracy

__all__ = ["subnet_rows", "subnet_table"]


def _float_arch(cfg: JointConfig) -> JointConfig:
    return dataclasses.replace(cfg, tome_r=0, w_bits=32, a_bits=32)


def subnet_rows(study: Study, net: ViTSupernet) -> list[dict[str, Any]]:
    """Validation accuracy, params and MACs of the largest and smallest architecture (fp32)."""
    data = study.data()
    rows = []
    for name, cfg in (("largest", study.space.max_config),
                      ("smallest", _float_arch(study.space.min_config))):
        net.set_active(cfg)
        cost = size_costs(cfg, net.shape, config_plan(study, cfg), in_chans=net.in_chans,
                          num_classes=net.num_classes)
        rows.append({"subnet": name, "config": cfg.to_dict(),
                     "val_accuracy": accuracy(net, *data.val),
                     "params": cost["params"], "macs": cost["macs"]})
    net.set_active(net.max_config)
    return rows


def subnet_table(study: Study, net: ViTSupernet) -> str:
    rows = subnet_rows(study, net)
    lines = [f"{'subnet':<9} {'val acc':>8} {'params':>10} {'MACs':>12}  config"]
    for r in rows:
        c = r["config"]
        arch = (f"depth={c['depth']} embed={c['embed_dim']} heads={c['num_heads']} "
                f"mlp={c['mlp_ratio']}")
        lines.append(f"{r['subnet']:<9} {r['val_accuracy']:>8.4f} {r['params']:>10,} "
                     f"{r['macs']:>12,}  {arch}")
    return "\n".join(lines)
