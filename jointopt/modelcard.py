"""The model card of an exported member: what a line engineer needs to deploy it alone.

Each exported folder gets ``README.md`` (for people) and ``card.json`` (for programs), and the
same facts go into the ONNX graph's ``metadata_props`` and the OpenVINO IR's ``rt_info``
(``jointopt`` section): the class names in output order, the input and output tensors, the
preprocessing (stated exactly, so PIL and numpy reproduce it), the precision plan, the runtime
it was timed on, and its metrics with the split each comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jointopt.precision import PrecisionPlan
from jointopt.runtimes import OnnxRuntimeRuntime, OpenVinoRuntime

__all__ = ["card_facts", "write_card", "metadata", "PREPROCESSING"]

#: How the training and evaluation pipeline turns an image file into the model's input
#: (jointopt.data.folder, jointopt.train.normalize). Stated step by step for deployment.
PREPROCESSING = [
    "open the image file with PIL",
    "16-bit grayscale ('I;16'): divide by 257 (integer division) to 8 bits",
    "convert to mode {mode} ({channels} channel(s))",
    "if it is not {size}x{size}: resize to {size}x{size} with PIL's BOX filter when the image is "
    "larger (in either side), BILINEAR otherwise",
    "take the uint8 pixels as an array [height, width(, channels)] and move channels first: "
    "[{channels}, {size}, {size}]",
    "scale: x = pixel / 127.5 - 1 (float32, values in [-1, 1]); /255 is wrong for this model",
    "stack images into a batch [N, {channels}, {size}, {size}] float32",
]


def card_facts(*, classes: list[str], channels: int, size: int, plan: PrecisionPlan,
               runtime_version: str, config: dict[str, Any], metrics: dict[str, Any],
               test: dict[str, Any], trial: int, study: str, batch: int,
               files: list[str]) -> dict[str, Any]:
    mode = "L" if channels == 1 else "RGB"
    steps = [s.format(mode=mode, channels=channels, size=size) for s in PREPROCESSING]
    linears: dict[str, dict[str, str | None]] = {}
    for p in plan.linear_parts():
        kind = p.name.rsplit(".", 1)[-1] if p.name.startswith("blocks.") else p.name
        linears.setdefault(kind, {"compute": p.compute, "weight": p.weight})
    return {
        "format": "jointopt.modelcard/1",
        "study": study, "trial": trial, "config": config,
        "classes": classes,
        "input": {"name": "input", "shape": ["N", channels, size, size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["N", len(classes)], "dtype": "float32",
                   "meaning": "unnormalised class scores in the order of `classes`; "
                              "argmax is the predicted class"},
        "preprocessing": {"mode": mode, "size": size, "scale": 1 / 127.5, "offset": -1.0,
                          "steps": steps},
        "precision": {"name": plan.precision, "runtime": plan.label,
                      "float_dtype": plan.float_dtype, "linear_layers": linears},
        "runtime_options": {
            "openvino": {"compile_model config": OpenVinoRuntime.precision_options(plan)},
            "onnxruntime": {"SessionOptions.add_session_config_entry":
                            dict(OnnxRuntimeRuntime.SESSION_CONFIG)}},
        "timed_on": {"runtime": plan.runtime, "version": runtime_version,
                     "latency_ms": metrics.get("latency_ms"),
                     "throughput_ips": metrics.get("throughput_ips"), "batch": batch},
        "metrics": {"validation (search)": {k: metrics.get(k) for k in
                                            ("accuracy", "balanced_accuracy") if k in metrics},
                    "test (export)": test,
                    "costs": {k: metrics.get(k) for k in ("params", "macs", "bitops",
                                                          "model_bytes", "energy_mj",
                                                          "energy_source")}},
        "files": files,
    }


def _markdown(c: dict[str, Any]) -> str:
    p, i, o = c["precision"], c["input"], c["output"]
    lines = [
        f"# Model card: {c['study']} trial {c['trial']}", "",
        f"Defect classifier exported by jointopt. Precision `{p['name']}`, executed as "
        f"`{p['runtime']}`.", "",
        "## Files", "", *[f"- `{f}`" for f in c["files"]], "",
        "## Classes (output order)", "",
        *[f"{k}. {name}" for k, name in enumerate(c["classes"])], "",
        "## Input and output", "",
        f"- input `{i['name']}`: {i['dtype']} {i['shape']} (every precision takes float32)",
        f"- output `{o['name']}`: {o['dtype']} {o['shape']}: {o['meaning']}", "",
        "## Preprocessing (exactly as in training)", "",
        *[f"{k}. {s}" for k, s in enumerate(c["preprocessing"]["steps"], 1)], "",
        "## Runtime options (needed to run what was timed)", "",
        "```json", json.dumps(c["runtime_options"], indent=2), "```", "",
        "OpenVINO's default on a bf16-capable CPU is bf16 and ONNX Runtime's default for "
        "weight-only layers quantizes activations on the fly: pass these options.", "",
        "## Precision plan", "",
        f"Float parts run in `{p['float_dtype']}`. Linear layers:", "",
        "| layer | multiply in | weights stored as |", "|---|---|---|",
        *[f"| {k} | {v['compute']} | {v['weight']} |" for k, v in p["linear_layers"].items()],
        "", "## Timing", "",
        f"Timed on {c['timed_on']['runtime']} {c['timed_on']['version']}: "
        f"{c['timed_on']['latency_ms']:.3f} ms at batch 1, "
        f"{c['timed_on']['throughput_ips']:.0f} images/s at batch {c['timed_on']['batch']}.",
        "", "## Metrics", "",
        "```json", json.dumps(c["metrics"], indent=2), "```", "",
        "## Test recall per class", "", "| class | recall |", "|---|---|",
        *[f"| {k} | {'no test images' if v is None else f'{v:.4f}'} |"
          for k, v in c["metrics"]["test (export)"].get("per_class_recall", {}).items()], "",
        "## Config", "", "```json", json.dumps(c["config"]), "```", ""]
    return "\n".join(lines)


def metadata(facts: dict[str, Any]) -> dict[str, str]:
    """The card as string metadata (ONNX metadata_props, OpenVINO rt_info)."""
    return {"jointopt_card": json.dumps(facts), "classes": json.dumps(facts["classes"]),
            "preprocessing": json.dumps(facts["preprocessing"]),
            "precision": facts["precision"]["name"], "runtime": facts["precision"]["runtime"]}


def write_card(folder: Path, facts: dict[str, Any], *, runtime: Any, plan: PrecisionPlan
               ) -> None:
    """Write README.md and card.json, and the same facts into the deployed files' metadata:
    the ONNX graph's metadata_props and the runtime's own format (written again from the ONNX,
    so its weights are the ones that were checked)."""
    import onnx

    (folder / "card.json").write_text(json.dumps(facts, indent=2))
    (folder / "README.md").write_text(_markdown(facts))
    meta = metadata(facts)
    onnx_path = folder / "model.onnx"
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(onnx_path))
    if runtime.name != "onnxruntime":
        runtime.save_native(onnx_path, plan, folder, metadata=meta)
