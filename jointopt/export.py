"""Export Pareto-optimal configs: tables, configs, weights and ONNX models.

Every exported member is re-scored on the test split (``test_accuracy``), so the accuracy a
user reads is not the one that selected it, and its ONNX model is checked against PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from jointopt.controllers.objective import trial_record
from jointopt.controllers.storage import open_storage, open_study
from jointopt.errors import UserError
from jointopt.evaluation import _half, build_deployable
from jointopt.pareto import Objective, front_table, pareto_front
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.train import accuracy, normalize

__all__ = ["study_records", "export_study", "onnx_predictions", "deployed_model"]


def study_records(study: Study) -> tuple[list[dict[str, Any]], dict[str, Any] | None,
                                         optuna.Study]:
    """(records of finished trials, the baseline record or None, the Optuna study)."""
    ostudy = open_study(study, open_storage(study, create=False), create=False)
    # A repeat reuses an earlier trial's measurement; listing it again would only duplicate
    # that trial on the front.
    records = [r for t in ostudy.get_trials(deepcopy=False)
               if (r := trial_record(t)) and "repeat_of" not in t.user_attrs]
    base = next((r for r in records if r["baseline"] and r["valid"]), None)
    return records, base, ostudy


def objectives_of(study: Study) -> list[Objective]:
    return list(study.search.objectives)


def deployed_model(study: Study, cfg: JointConfig, net: Any) -> nn.Module:
    """The model at the config's own precision (what accuracy is computed with)."""
    sub, q = build_deployable(study, cfg, net)
    if q is not None:
        return q
    if min(cfg.w_bits, cfg.a_bits) == 16:
        return _half(sub)
    return sub


def export_onnx(study: Study, cfg: JointConfig, net: Any, model: nn.Module, path: Path) -> Path:
    """ONNX at the config's precision: QCDQ integer graph, fp16 graph, or fp32 graph."""
    from jointopt import quant

    s = net.shape
    example = torch.zeros(1, net.in_chans, s.img_size, s.img_size)
    if not cfg.is_float and cfg.w_bits < 16:
        return quant.export_int_onnx(model, example, path)
    inner = model.m if hasattr(model, "m") else model  # unwrap the fp16 adapter
    half = min(cfg.w_bits, cfg.a_bits) == 16
    # export_float_onnx works on a copy: converting `inner` here would turn the deployed fp16
    # model into fp32 under the caller's feet.
    return quant.export_float_onnx(inner, example, path, half=half)


def onnx_predictions(path: Path, images: torch.Tensor, *, batch: int = 256) -> np.ndarray:
    """Top-1 of an ONNX model under ONNX Runtime on uint8 images."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    half = inp.type == "tensor(float16)"
    preds = []
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch]).numpy()
        x = x.astype(np.float16) if half else x
        preds.append(np.asarray(sess.run(None, {inp.name: x})[0]).argmax(-1))
    return np.concatenate(preds)


@torch.no_grad()
def torch_predictions(model: nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(normalize(images[i:i + batch])).argmax(-1).numpy()
                           for i in range(0, len(images), batch)])


def export_study(study: Study, out: Path, *, trials: list[int] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Write pareto.yaml/.csv and one folder per chosen trial; returns a summary."""
    records, base, _ = study_records(study)
    objectives = objectives_of(study)
    front = pareto_front(records, objectives)
    by_number = {r["number"]: r for r in records}
    chosen = trials if trials else [r["number"] for r in front]
    for n in chosen:
        if n not in by_number or not by_number[n]["valid"]:
            raise UserError(f"--trial={n}: no finished valid trial with that number in study "
                            f"{study.search.study_name!r}")
    net = study.load_supernet()
    test_x, test_y = study.data().test
    out.mkdir(parents=True, exist_ok=True)
    exported = []
    for n in chosen:
        rec = by_number[n]
        cfg = JointConfig.from_dict(rec["config"])
        model = deployed_model(study, cfg, net)
        folder = out / f"trial_{n:04d}"
        folder.mkdir(exist_ok=True)
        onnx_path = export_onnx(study, cfg, net, model, folder / "model.onnx")
        pt = torch_predictions(model, test_x)
        ort_pred = onnx_predictions(onnx_path, test_x)
        test_acc = accuracy(model, test_x, test_y)
        agree = float((pt == ort_pred).mean())
        float_sub = net.extract(dataclasses.replace(cfg, w_bits=32, a_bits=32))
        save_file({k: v.contiguous() for k, v in float_sub.state_dict().items()},
                  str(folder / "weights.safetensors"))
        if not cfg.is_float and cfg.w_bits < 16:
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                     if isinstance(v, torch.Tensor)}
            save_file(state, str(folder / "quant_state.safetensors"))
        info = {"trial": n, "config": cfg.to_dict(), "metrics": rec["metrics"],
                "test_accuracy": test_acc, "onnx_test_accuracy":
                float((ort_pred == test_y.numpy()).mean()), "onnx_top1_agreement": agree,
                "supernet": str(study.checkpoint), "study": str(study.path)}
        (folder / "config.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
        rec["metrics"] = {**rec["metrics"], "test_accuracy": test_acc}
        exported.append(info)
        if progress:
            print(f"trial {n}: test_accuracy={test_acc:.4f} onnx agreement={agree:.4f} "
                  f"-> {folder}")
    table = front_table(front, objectives, base) if base is not None else front_table(
        front, objectives, front[0])
    table.to_csv(out / "pareto.csv", index=False)
    (out / "pareto.yaml").write_text(yaml.safe_dump(
        {"study": study.search.study_name, "objectives": [dataclasses.asdict(o)
                                                          for o in objectives],
         "members": json.loads(table.to_json(orient="records"))}, sort_keys=False))
    return {"front": len(front), "exported": exported}
