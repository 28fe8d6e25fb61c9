"""A short table of a trained supernet's largest and smallest subnet."""

from __future__ import annotations

import dataclasses
from typing import Any

from jointopt.cost.size import float_size_costs
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.supernet import ViTSupernet
from jointopt.train import scores

__all__ = ["subnet_rows", "subnet_table"]


def _float_arch(cfg: JointConfig) -> JointConfig:
    return dataclasses.replace(cfg, tome_r=0, w_bits=32, a_bits=32)


def subnet_rows(study: Study, net: ViTSupernet, splits: tuple[str, ...] = ("val",)
                ) -> list[dict[str, Any]]:
    """Accuracy, balanced accuracy, params and MACs of the largest and smallest architecture
    (fp32) on each of ``splits`` (keys ``<split>_accuracy``, ``<split>_balanced_accuracy``)."""
    data = study.data()
    rows = []
    for name, cfg in (("largest", study.space.max_config),
                      ("smallest", _float_arch(study.space.min_config))):
        net.set_active(cfg)
        cost = float_size_costs(cfg, net.shape, in_chans=net.in_chans,
                                num_classes=net.num_classes)
        row: dict[str, Any] = {"subnet": name, "config": cfg.to_dict()}
        for split in splits:
            got = scores(net, *data.split(split), len(data.classes))
            row.update({f"{split}_{k}": v for k, v in got.items()})
        row.update(params=cost["params"], macs=cost["macs"])
        rows.append(row)
    net.set_active(net.max_config)
    return rows


def subnet_table(study: Study, net: ViTSupernet, splits: tuple[str, ...] = ("val",)) -> str:
    rows = subnet_rows(study, net, splits)
    heads = "".join(f" {s + ' acc':>9} {s + ' bal':>9}" for s in splits)
    lines = [f"{'subnet':<9}{heads} {'params':>10} {'MACs':>12}  config"]
    for r in rows:
        c = r["config"]
        arch = (f"depth={c['depth']} embed={c['embed_dim']} heads={c['num_heads']} "
                f"mlp={c['mlp_ratio']}")
        accs = "".join(f" {r[f'{s}_accuracy']:>9.4f} {r[f'{s}_balanced_accuracy']:>9.4f}"
                       for s in splits)
        lines.append(f"{r['subnet']:<9}{accs} {r['params']:>10,} {r['macs']:>12,}  {arch}")
    return "\n".join(lines)
