"""Benchmark: supernet accuracy after `jointopt train`, and standalone references.

For a trained study, records the largest and smallest subnet (inherited weights) and trains the
given reference models standalone with the same recipe and budget (`jointopt train-fixed`).

Usage: .venv/bin/python benchmarks/training.py STUDY [--ref timm:resnet10t ...] [--epochs N]
Appends records to benchmarks/results/training.jsonl.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--ref", action="append", default=[])
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    from jointopt import Study
    from jointopt.baselines import train_fixed
    from jointopt.report.summary import subnet_rows
    from jointopt.train import accuracy, smallest_architecture

    study = Study.from_yaml(args.study)
    net = study.load_supernet()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    date = time.strftime("%Y-%m-%d %H:%M:%S")
    cmd = " ".join([Path(sys.executable).name, *sys.argv])
    state = study.output / "train_state.pt"
    import torch

    hist = torch.load(state, weights_only=True) if state.is_file() else None
    out = []
    for row in subnet_rows(study, net):
        cfg = study.space.max_config if row["subnet"] == "largest" else \
            smallest_architecture(study.space)
        net.set_active(cfg)
        out.append({"model": f"supernet {row['subnet']} (inherited)",
                    "epochs": int(hist["epoch"]) if hist else 0,
                    "train_seconds": float("nan"), "val_accuracy": row["val_accuracy"],
                    "test_accuracy": accuracy(net, *study.data().test),
                    "params": row["params"]})
    for ref in args.ref:
        r = train_fixed(study, ref, epochs=args.epochs, progress=False)
        r.pop("model_object")
        out.append(r)
    with (ROOT / "benchmarks" / "results" / "training.jsonl").open("a") as fh:
        for r in out:
            rec = {"bench": "training", "date": date, "commit": commit, "study": study.name,
                   "command": cmd, **r}
            fh.write(json.dumps(rec) + "\n")
            print(json.dumps(rec))


if __name__ == "__main__":
    main()
