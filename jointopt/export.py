"""Export Pareto-optimal configs: tables, configs, weights and the deployed models.

Each exported member gets the graph that was timed (``model.onnx``, float32 input for every
precision) and the runtime's own format where it has one (OpenVINO IR ``model.xml/.bin``). It
is re-scored on the test split (``test_accuracy``) both by the accuracy model and by the
deployed runtime, and checked against its precision plan: the dtypes the runtime's optimized
graph executes, ``model_bytes`` against the deployed weight files, and the runtime's name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

# study_records and objectives_of live with trial_record (torch-free); kept importable here.
from jointopt.controllers.objective import objectives_of, study_records
from jointopt.deploy import accuracy_model, check_deployment, export_onnx
from jointopt.errors import UserError
from jointopt.evaluation import build_deployable, config_plan, quantize_subnet
from jointopt.metrics import balanced_accuracy, per_class_recall
from jointopt.modelcard import card_facts, write_card
from jointopt.pareto import front_table, pareto_front
from jointopt.precision import PrecisionPlan
from jointopt.runtimes import get_runtime
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.train import normalize

__all__ = ["study_records", "export_study", "deployed_model", "as_deployed", "deploy_member",
           "runtime_predictions", "batched_top1", "torch_predictions", "DeployedMember"]


def deployed_model(study: Study, cfg: JointConfig, net: Any) -> nn.Module:
    """The PyTorch model that computes like the deployed graph (what accuracy is computed
    with)."""
    sub, q = build_deployable(study, cfg, net)
    return accuracy_model(config_plan(study, cfg), sub, q)


def as_deployed(study: Study, cfg: JointConfig, sub: nn.Module) -> nn.Module:
    """What :func:`deployed_model` gives, from a float model ``sub`` of ``cfg``'s architecture
    (e.g. one trained standalone by ``jointopt train-fixed``): the same precision plan and the
    same post-training quantization and calibration."""
    return accuracy_model(config_plan(study, cfg), sub, quantize_subnet(study, cfg, sub))


@dataclasses.dataclass
class DeployedMember:
    """A config deployed into ``folder``: its plan, model files and the check of both."""

    plan: PrecisionPlan
    model: nn.Module
    onnx: Path
    files: list[Path]
    check: dict[str, Any]


def deploy_member(study: Study, cfg: JointConfig, net: Any, folder: Path, *,
                  model_bytes: int | None = None) -> DeployedMember:
    """Export ``cfg``'s deployed graph into ``folder`` and check it against its plan."""
    from jointopt.cost.latency import eval_threads
    from jointopt.cost.size import size_costs

    plan = config_plan(study, cfg)
    runtime = get_runtime(plan.runtime)
    sub, q = build_deployable(study, cfg, net)
    s = net.shape
    example = torch.zeros(1, net.in_chans, s.img_size, s.img_size)
    onnx_path = export_onnx(plan, sub, q, example, folder / "model.onnx")
    files = runtime.save_native(onnx_path, plan, folder)
    if model_bytes is None:
        model_bytes = size_costs(cfg, s, plan, in_chans=net.in_chans,
                                 num_classes=net.num_classes)["model_bytes"]
    executed = runtime.executed(onnx_path, plan, threads=eval_threads(study.evaluation))
    check = check_deployment(plan, executed, model_bytes=model_bytes,
                             deployed=runtime.weight_bytes(files), runtime_label=plan.label,
                             runtime_name=runtime.name,
                             weight_storage=runtime.caps().weight_storage)
    return DeployedMember(plan, accuracy_model(plan, sub, q), onnx_path, files, check)


def runtime_predictions(study: Study, plan: PrecisionPlan, onnx_path: Path,
                        images: torch.Tensor, *, batch: int = 64) -> np.ndarray:
    """Top-1 of the deployed graph on the study's runtime, on uint8 images (the last batch is
    padded: the runtime runs a fixed batch size)."""
    from jointopt.cost.latency import eval_threads

    run = get_runtime(plan.runtime).load(onnx_path, plan, threads=eval_threads(
        study.evaluation), batch=batch)
    return batched_top1(run, images, batch=batch)


def batched_top1(run: Any, images: torch.Tensor, *, batch: int) -> np.ndarray:
    """Top-1 of ``run`` (a fixed-batch runtime callable) on uint8 images, normalised as in
    training; the last batch is zero-padded to ``batch``."""
    preds = []
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch]).numpy()
        n = len(x)
        if n < batch:
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        preds.append(np.asarray(run(x))[:n].argmax(-1))
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
    data = study.data()
    classes, (test_x, test_y) = data.classes, data.test
    out.mkdir(parents=True, exist_ok=True)
    exported = []
    for n in chosen:
        rec = by_number[n]
        cfg = JointConfig.from_dict(rec["config"])
        folder = out / f"trial_{n:04d}"
        folder.mkdir(exist_ok=True)
        member = deploy_member(study, cfg, net, folder,
                               model_bytes=rec["metrics"].get("model_bytes"))
        pt = torch_predictions(member.model, test_x)
        deployed = runtime_predictions(study, member.plan, member.onnx, test_x)
        test_acc = float((pt == test_y.numpy()).mean())
        recall = per_class_recall(pt, test_y.numpy(), len(classes))
        test_bal = balanced_accuracy(pt, test_y.numpy(), len(classes))
        agree = float((pt == deployed).mean())
        float_sub = net.extract(dataclasses.replace(cfg, w_bits=32, a_bits=32))
        save_file({k: v.contiguous() for k, v in float_sub.state_dict().items()},
                  str(folder / "weights.safetensors"))
        if member.plan.kind != "float":
            state = {k: v.detach().contiguous() for k, v in
                     build_deployable(study, cfg, net)[1].state_dict().items()  # type: ignore
                     if isinstance(v, torch.Tensor)}
            save_file(state, str(folder / "quant_state.safetensors"))
        test = {"images": len(test_y), "accuracy": test_acc, "balanced_accuracy": test_bal,
                "per_class_recall": {c: (None if np.isnan(r) else float(r))
                                     for c, r in zip(classes, recall, strict=True)},
                "deployed_accuracy": float((deployed == test_y.numpy()).mean()),
                "deployed_top1_agreement": agree}
        info = {"trial": n, "config": cfg.to_dict(), "precision": member.plan.precision,
                "latency_runtime": member.plan.label, "metrics": rec["metrics"],
                "test_accuracy": test_acc, "test_balanced_accuracy": test_bal,
                "test_per_class_recall": test["per_class_recall"],
                "deployed_test_accuracy": test["deployed_accuracy"],
                "deployed_top1_agreement": agree, "deploy_check": member.check}
        runtime = get_runtime(member.plan.runtime)
        files = sorted({p.name for p in folder.iterdir()} | {"README.md", "card.json",
                                                            "config.yaml"})
        write_card(folder, card_facts(
            classes=list(classes), channels=net.in_chans, size=net.shape.img_size,
            plan=member.plan, runtime_version=runtime.version(), config=cfg.to_dict(),
            metrics=rec["metrics"], test=test, trial=n, study=study.search.study_name,
            batch=study.evaluation.batch_size, files=files), runtime=runtime, plan=member.plan)
        (folder / "config.yaml").write_text(yaml.safe_dump({**info, "files": files},
                                                           sort_keys=False))
        rec["metrics"] = {**rec["metrics"], "test_accuracy": test_acc,
                          "test_balanced_accuracy": test_bal}
        exported.append(info)
        if progress:
            status = "ok" if member.check["ok"] else "MISMATCH: " + "; ".join(
                member.check["problems"][:3])
            print(f"trial {n}: {member.plan.label} test_accuracy={test_acc:.4f} "
                  f"balanced={test_bal:.4f} "
                  f"deployed agreement={agree:.4f} plan check {status} -> {folder}")
    table = front_table(front, objectives, base) if base is not None else front_table(
        front, objectives, front[0])
    table.to_csv(out / "pareto.csv", index=False)
    (out / "pareto.yaml").write_text(yaml.safe_dump(
        {"study": study.search.study_name, "objectives": [dataclasses.asdict(o)
                                                          for o in objectives],
         "members": json.loads(table.to_json(orient="records"))}, sort_keys=False))
    return {"front": len(front), "exported": exported}
