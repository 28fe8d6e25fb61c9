"""An exported member deploys alone: raw image files, the card, and a runtime (no jointopt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from jointopt import Study
from jointopt.controllers import run_search
from jointopt.export import export_study

# Run in a fresh interpreter that imports only numpy, PIL, onnxruntime, openvino and json:
# a line engineer's script, following card.json.
CLASSIFY = r'''
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image

folder, images, scale_name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
card = json.loads((folder / "card.json").read_text())
pre = card["preprocessing"]
files = sorted(images.glob("*.png"))
batch = []
for f in files:
    img = Image.open(f)
    img = img.convert(pre["mode"])
    if img.size != (pre["size"], pre["size"]):
        larger = img.width > pre["size"] or img.height > pre["size"]
        img = img.resize((pre["size"], pre["size"]),
                         Image.Resampling.BOX if larger else Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    x = a.astype(np.float32) * pre["scale"] + pre["offset"] if scale_name == "card" \
        else a.astype(np.float32) / 255.0
    batch.append(x)
x = np.stack(batch).astype(np.float32)
labels = [card["classes"].index(f.name.split("__")[0]) for f in files]
import onnxruntime as ort
so = ort.SessionOptions()
opts = card["runtime_options"]
for k, v in opts["onnxruntime"]["SessionOptions.add_session_config_entry"].items():
    so.add_session_config_entry(k, v)
sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
ort_pred = sess.run(None, {card["input"]["name"]: x})[0].argmax(-1)
import openvino as ov
compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU",
                                   opts["openvino"]["compile_model config"])
ov_pred = np.concatenate([compiled(x[i:i + 1])[0].argmax(-1) for i in range(len(x))])
print(json.dumps({"ort": float((ort_pred == labels).mean()),
                  "openvino": float((ov_pred == labels).mean()), "n": len(files)}))
'''


@pytest.mark.slow
def test_an_export_classifies_raw_images_with_only_a_runtime_and_the_card(
        trained_tiny: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(trained_tiny.read_text())
    data["output"] = str(trained_tiny.parent / "out")
    data["dataset"]["root"] = str(trained_tiny.parent / "images")
    data["search_space"] = str(trained_tiny.parent / "space.yaml")
    arch = {"depth": 3, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2.0, "tome_r": 0}
    data["search"] = {"study_name": "deploy", "storage": f"sqlite:///{tmp_path / 'o.db'}",
                      "n_trials": 4, "sampler": {"name": "random", "seed": 0},
                      "seed_configs": [{**arch, "precision": p}
                                       for p in ("w16a16", "w8a8", "w4a16")]}
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(data))
    study = Study.from_yaml(path)
    run_search(study, progress=False)
    out = tmp_path / "export"
    summary = export_study(study, out, trials=[0, 1, 2, 3], progress=False)
    # the test split as raw image files named by class
    ds = study.data()
    images = tmp_path / "raw"
    images.mkdir()
    for k, (img, label) in enumerate(zip(*ds.test, strict=True)):
        a = img.numpy()
        Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(
            images / f"{ds.classes[int(label)]}__{k:04d}.png")
    n = len(ds.test[1])
    for info in summary["exported"]:
        folder = out / f"trial_{info['trial']:04d}"
        card = json.loads((folder / "card.json").read_text())
        assert card["classes"] == list(ds.classes)
        assert card["input"]["dtype"] == "float32" and card["precision"]["name"] == \
            info["precision"]
        assert not any(str(v).startswith("/") for v in yaml.safe_load(
            (folder / "config.yaml").read_text()).values() if isinstance(v, str))
        meta = {p.key: p.value for p in __import__("onnx").load(
            str(folder / "model.onnx")).metadata_props}
        assert json.loads(meta["classes"]) == list(ds.classes)
        assert "jointopt" in (folder / "model.xml").read_text()  # the IR's rt_info
        reported = card["metrics"]["test (export)"]["deployed_accuracy"]
        assert reported >= 0.9
        r = subprocess.run([sys.executable, "-c", CLASSIFY, str(folder), str(images), "card"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["n"] == n
        for runtime in ("ort", "openvino"):
            assert abs(got[runtime] - reported) <= 1 / n + 1e-9, (info["precision"], got)
        bad = json.loads(subprocess.run(
            [sys.executable, "-c", CLASSIFY, str(folder), str(images), "255"],
            capture_output=True, text=True, timeout=300, check=True).stdout)
        assert bad["ort"] <= got["ort"] - 0.20, (info["precision"], bad)  # negative control
    precisions = {i["precision"] for i in summary["exported"]}
    assert {"w32a32", "w16a16", "w8a8", "w4a16"} <= precisions
    table = (out / "pareto.csv").read_text()
    assert "[" in table  # per-layer fields as JSON lists
    assert np.isfinite(summary["front"])
