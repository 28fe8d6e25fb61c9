"""Benchmark: does a CNN teacher (or a convolutional stem) close the ViT-CNN gap on real data?

Arms, each a copy of STUDY (default studies/wm811k.yaml) with only these changes:

* ``base``: the study as is (sandwich rule, in-place distillation from the largest subnet);
* ``soft`` / ``hard``: ``train.teacher`` = the CNN trained by ``jointopt train-fixed`` (default
  ``timm:resnet10t``), soft or hard targets (DeiT, arXiv 2012.12877);
* ``conv``: the search space's ``supernet.stem: conv`` (Xiao et al., NeurIPS 2021);
* ``aug``: stronger augmentation that keeps a centred defect: random resized crops of 80-100%
  of the area (:data:`AUG`), with mixup (Zhang et al., ICLR 2018) or cutmix (Yun et al., ICCV
  2019) on every batch, at the alphas DeiT trains with (arXiv 2012.12877, Table 9: 0.8, 1.0);
* ``long``: twice the study's epochs (the warm-up and the in-place distillation start scaled
  with them).

Every arm runs ``jointopt train`` (resumable: a finished supernet is reused) and then
``jointopt summary --test --json``; the teacher runs ``jointopt train-fixed`` once. One record,
with the commands, goes to benchmarks/results/teacher.jsonl.

Usage: .venv/bin/python benchmarks/teacher.py [STUDY] [--run-dir runs/bench-teacher]
           [--teacher timm:resnet10t] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARMS = ("base", "soft", "hard", "conv", "aug", "long")
#: The ``aug`` arm's train settings (README, "train" block).
AUG = {"rrc_scale": [0.8, 1.0], "mixup": 0.8, "cutmix": 1.0}


def _run(argv: list[str], commands: list[str]) -> str:
    commands.append(" ".join(argv))
    print("$", " ".join(argv), file=sys.stderr, flush=True)
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def _rel(p: Path) -> str:
    p = p.resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def arm_yaml(src: Path, run_dir: Path, arm: str, teacher: Path | None, epochs: int | None
             ) -> Path:
    """STUDY with the arm's change, its output under run_dir/arm (absolute paths)."""
    data = yaml.safe_load(src.read_text())
    data["name"] = f"{data['name']}-{arm}"
    data["output"] = str(run_dir / arm)
    root = data["dataset"].get("root")
    if root:
        data["dataset"]["root"] = str((src.parent / root).resolve())
    space = (src.parent / data["search_space"]).resolve()
    train = data.setdefault("train", {})
    if epochs:
        train["epochs"] = epochs
    if arm == "aug":
        train.update(AUG)
    if arm == "long":
        base_epochs = int(train.get("epochs", 0)) or _default("epochs")
        train["epochs"] = 2 * base_epochs
        for key in ("warmup_epochs", "distill_start"):
            train[key] = 2 * int(train.get(key, _default(key)))
    if arm in ("soft", "hard"):
        assert teacher is not None
        train.update(teacher=str(teacher), teacher_mode=arm)
    if arm == "conv":
        sp = yaml.safe_load(space.read_text())
        sp["supernet"]["stem"] = "conv"
        space = run_dir / "space-conv.yaml"
        space.write_text(yaml.safe_dump(sp, sort_keys=False))
    data["search_space"] = str(space)
    path = run_dir / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _default(key: str) -> int:
    """A train setting's default (what a study that leaves it out trains with)."""
    from jointopt.study import TrainSpec

    return int(getattr(TrainSpec(), key))


def _progress(folder: Path) -> dict[str, Any]:
    """The epochs an arm reached, of how many, and its per-epoch validation accuracies (the
    ones training logged), so arms stopped early can be compared at equal epochs."""
    import torch

    state = torch.load(folder / "train_state.pt", weights_only=True, map_location="cpu")
    keys = list(state.get("history_keys", []))
    hist = [dict(zip(keys, row, strict=True)) for row in state["history"].tolist()] \
        if keys else []
    planned = yaml.safe_load((folder.parent / f"{folder.name}.yaml").read_text())["train"]
    return {"epochs_done": int(state["epoch"]), "epochs_planned": int(planned["epochs"]),
            "val_history": [{k: h[k] for k in ("epoch", "val_largest", "val_smallest")
                             if k in h} for h in hist]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="?", default=str(ROOT / "studies" / "wm811k.yaml"))
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench-teacher")
    ap.add_argument("--teacher", default="timm:resnet10t")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--note", default="",
                    help="a remark kept in the record and shown in RESULTS.md (e.g. where the "
                         "arms trained)")
    ap.add_argument("--score-only", action="store_true",
                    help="score the arms as they stand (e.g. unpacked from `make bench-train`), "
                         "training none; each arm records the epochs it reached")
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    src = Path(args.study).resolve()
    commands: list[str] = []
    t0 = time.time()

    base = arm_yaml(src, run_dir, "base", None, args.epochs)
    weights = run_dir / "base" / "fixed" / (args.teacher.replace(":", "-") + ".safetensors")
    ref = run_dir / "teacher.json"
    if not (weights.is_file() and ref.is_file()):
        out = _run(["jointopt", "train-fixed", _rel(base), "--model", args.teacher, "--json",
                    "--quiet", *(["--epochs", str(args.epochs)] if args.epochs else [])],
                   commands)
        ref.write_text(out)
    teacher = json.loads(ref.read_text())
    arms: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    todo = args.arms.split(",")
    study_yaml = yaml.safe_load(src.read_text())
    space_yaml = yaml.safe_load((src.parent / study_yaml["search_space"]).read_text())
    if "conv" in todo and space_yaml["supernet"].get("stem", "patch") == "conv":
        print("conv: the study's space has stem: conv already, so base is that arm: skipped")
        todo.remove("conv")
    for arm in todo:
        path = arm_yaml(src, run_dir, arm, weights, args.epochs)
        if not args.score_only:
            _run(["jointopt", "train", _rel(path), "--quiet"], commands)
        rows = json.loads(_run(["jointopt", "summary", _rel(path), "--test", "--json",
                                "--quiet"], commands))
        arms[arm] = {r["subnet"]: {k: v for k, v in r.items() if k != "config"} for r in rows}
        progress[arm] = _progress(run_dir / arm)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    rec = {"bench": "teacher", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit,
           "study": _rel(src), "teacher": {k: teacher.get(k) for k in
                                           ("model", "epochs", "params", "val_accuracy",
                                            "test_accuracy", "test_balanced_accuracy")},
           "arms": arms, "progress": progress, "note": args.note, "commands": commands,
           "seconds": time.time() - t0,
           "machine": f"{os.cpu_count()} cores", "loadavg": list(os.getloadavg())}
    out = ROOT / "benchmarks" / "results" / "teacher.jsonl"
    with out.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(f"wrote {_rel(out)}")


if __name__ == "__main__":
    main()
