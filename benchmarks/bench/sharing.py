"""Sections 4 and 5 on WM-811K: what weight sharing buys, and how far its ranking is trusted.

Section 4 (why weight sharing): one mid-sized subnet (the middle value of every architecture
choice, fp32, r = 0). Seconds for a full evaluation with inherited weights (validation accuracy,
costs, latency measured afresh in a private cache) against training the same subnet from
scratch with the supernet's epoch budget and then evaluating it; both scored on test with a
95% bootstrap interval. The trained model's cost measurement is the same work as the inherited
one's, so its evaluation time is its own accuracy pass plus the inherited cost-measurement time.

Section 5 (supernet fidelity): configs spread over the space by MACs (the smallest and the
largest architecture, and the rest at MACs quantiles of 200 random architectures), all fp32 and
r = 0 so that a standalone model is the same network. Inherited-weight accuracy against the
accuracy after a short standalone training with a fixed budget; Kendall's tau between the two
rankings, with its p-value, on the test and on the validation split.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Ctx, log, rel_path, test_correct
from bench.stats import bootstrap_ci

ARCH = ("depth", "embed_dim", "num_heads", "mlp_ratio")


def mid_config(space: Any) -> Any:
    """The middle value of each architecture choice, fp32, no merging."""
    from jointopt.space import JointConfig

    kw = {k: space.choices[k][len(space.choices[k]) // 2] for k in ARCH}
    return space.validate(JointConfig(**kw, tome_r=0, w_bits=32, a_bits=32))


def float_macs(cfg: Any, shape: Any, *, in_chans: int, num_classes: int) -> int:
    """MACs of ``cfg``'s architecture and merging (the count does not depend on precision)."""
    from jointopt.cost.size import float_size_costs

    return float_size_costs(cfg, shape, in_chans=in_chans, num_classes=num_classes)["macs"]


def spread_configs(space: Any, shape: Any, n: int, *, in_chans: int, num_classes: int,
                   seed: int = 0, pool: int = 200) -> list[Any]:
    """n fp32 r=0 architectures spread by MACs: smallest, largest and quantiles between."""
    from jointopt.train import smallest_architecture

    rng = np.random.default_rng(seed)
    drawn = [space.sample(rng, axes=ARCH) for _ in range(pool)]
    drawn = [dataclasses.replace(c, tome_r=0, w_bits=32, a_bits=32) for c in drawn]
    macs = [float_macs(c, shape, in_chans=in_chans, num_classes=num_classes) for c in drawn]
    order = np.argsort(macs, kind="stable")
    inner = [drawn[order[round(i * (pool - 1) / (n - 1))]] for i in range(1, n - 1)]
    out = [smallest_architecture(space), *inner, space.max_config]
    seen, uniq = set(), []
    for c in out:
        if c.key() not in seen:
            seen.add(c.key())
            uniq.append(c)
    return uniq


def run_sharing(ctx: Ctx) -> dict[str, Any]:
    """Section 4."""
    from jointopt.baselines import train_fixed
    from jointopt.cost.latency import MeasureCache
    from jointopt.evaluation import evaluate
    from jointopt.export import deployed_model
    from jointopt.train import accuracy

    study = ctx.study(ctx.wm_yaml)
    net = ctx.ensure_supernet(ctx.wm_yaml)
    cfg = mid_config(study.space)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        m = evaluate(study, cfg, supernet=net, cache=MeasureCache(Path(tmp) / "m.sqlite"))
        inherited_s = time.perf_counter() - t
    cost_s = inherited_s - m.extra["accuracy_seconds"]
    c_inh = test_correct(study, deployed_model(study, cfg, net))
    epochs = study.train.epochs
    name = "subnet:" + json.dumps(cfg.to_dict())
    log(f"section 4: training {cfg.key()} from scratch, {epochs} epochs")
    ctx.commands.append(f"jointopt train-fixed {rel_path(ctx.wm_yaml)} --model '{name}' "
                        f"--epochs {epochs} --seed 0")
    out = train_fixed(study, name, epochs=epochs, progress=True)
    model = out.pop("model_object")
    t = time.perf_counter()
    val_scratch = accuracy(model, *study.data().val)
    acc_s = time.perf_counter() - t
    c_scr = test_correct(study, model)
    scratch_s = out["train_seconds"] + acc_s + cost_s
    n_boot = ctx.budget["n_boot"]
    return {
        "config": cfg.to_dict(), "config_key": cfg.key(), "epochs": epochs,
        "inherited": {"seconds": inherited_s, "accuracy_seconds": m.extra["accuracy_seconds"],
                      "cost_seconds": cost_s, "val_accuracy": m.accuracy,
                      "test": list(bootstrap_ci(c_inh, n_boot=n_boot))},
        "scratch": {"seconds": scratch_s, "train_seconds": out["train_seconds"],
                    "accuracy_seconds": acc_s, "val_accuracy": val_scratch,
                    "test": list(bootstrap_ci(c_scr, n_boot=n_boot))},
        "speedup": scratch_s / inherited_s,
        "latency_ms": m.latency_ms, "macs": m.macs, "params": m.params,
    }


def run_fidelity(ctx: Ctx) -> dict[str, Any]:
    """Section 5 on WM-811K: standalone models trained here, for ``fidelity_epochs``."""
    from jointopt.baselines import train_fixed

    study = ctx.study(ctx.wm_yaml)
    net = ctx.ensure_supernet(ctx.wm_yaml)
    epochs = ctx.budget["fidelity_epochs"]
    cfgs = spread_configs(study.space, net.shape, ctx.budget["fidelity_configs"],
                          in_chans=net.in_chans, num_classes=net.num_classes)
    rows = []
    for i, cfg in enumerate(cfgs):
        row = _inherited(study, net, cfg)
        name = "subnet:" + json.dumps(cfg.to_dict())
        log(f"section 5: config {i + 1}/{len(cfgs)} {cfg.key()}: standalone {epochs} epochs")
        out = train_fixed(study, name, epochs=epochs, progress=False)
        model = out.pop("model_object")
        c_std = test_correct(study, model)
        ctx.commands.append(f"jointopt train-fixed {rel_path(ctx.wm_yaml)} --model '{name}' "
                            f"--epochs {epochs} --seed 0")
        rows.append({
            **row, "standalone_val": out["val_accuracy"], "standalone_test": float(c_std.mean()),
            "train_seconds": out["train_seconds"]})
    res: dict[str, Any] = {"dataset": "wm811k", "epochs": epochs,
                           "supernet_epochs": study.train.epochs,
                           "supernet_stem": study.space.supernet.stem, "configs": rows}
    return _taus(res)


def _inherited(study: Any, net: Any, cfg: Any) -> dict[str, Any]:
    """A config's inherited-weight accuracies (fp32 subnet of the supernet) and MACs."""
    from jointopt.train import accuracy

    sub = net.extract(cfg).eval()
    sub.prop_attn = study.evaluation.proportional_attention
    return {"config": cfg.to_dict(), "config_key": cfg.key(),
            "macs": float_macs(cfg, net.shape, in_chans=net.in_chans,
                               num_classes=net.num_classes),
            "inherited_val": accuracy(sub, *study.data().val),
            "inherited_test": float(test_correct(study, sub).mean())}


def _taus(res: dict[str, Any]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    rows = res["configs"]
    for split in ("test", "val"):
        a = [r[f"inherited_{split}"] for r in rows]
        b = [r[f"standalone_{split}"] for r in rows]
        tau, p = kendalltau(a, b)
        res[f"kendall_tau_{split}"], res[f"p_{split}"] = float(tau), float(p)
    return res


def trained_fidelity(ctx: Ctx, study_yaml: Path) -> dict[str, Any] | None:
    """Section 5 from ``make bench-train``'s fidelity jobs (``fid-<k>``: configs spread by MACs,
    some with every block merging, each trained standalone for the supernet's epochs and scored
    where it trained); the inherited accuracies are computed here. None when no job finished.
    """
    from bench_train import train_key, where

    from jointopt.space import JointConfig

    study = ctx.study(study_yaml)
    folder = Path(__file__).resolve().parents[2] / "runs" / "bench-train" / study.name
    jobs = sorted(folder.glob("fid-*.json"))
    if not jobs:
        return None
    net = ctx.ensure_supernet(study_yaml)
    planned = [j for j in json.loads((folder / "plan.json").read_text())
               if j["name"].startswith("fid-")] if (folder / "plan.json").is_file() else []
    rows = []
    for path in jobs:
        job = json.loads(path.read_text())
        out = json.loads(job["stdout"])
        if job.get("key") != (key := train_key(study, job)):  # other recipe, data or space
            log(f"section 5 ({study.name}): {job['name']} left out: trained under key "
                f"{job.get('key')}, not {key} (run make bench-train)")
            continue
        cfg = study.space.validate(JointConfig.from_dict(job["config"]))
        log(f"section 5 ({study.name}): {job['name']} {cfg.key()}: inherited accuracy")
        row = {"job": job["name"], "precision": "w32a32", **_inherited(study, net, cfg),
               "standalone_val": out["val_accuracy"], "standalone_test": out["test_accuracy"],
               "train_seconds": out["train_seconds"], "epochs": out["epochs"],
               "trained_on": where(job.get("machine"))}
        rows.append(row)
        rows += _precision_rows(study, net, job, cfg, row)
    if not rows:
        return None
    ctx.commands.append(f"python benchmarks/bench_train.py {rel_path(study_yaml)} "
                        f"(fidelity jobs; standalone accuracies from runs/bench-train/"
                        f"{study.name}/fid-*.json)")
    epochs = sorted({r["epochs"] for r in rows})
    res = {"dataset": study.name, "epochs": epochs[0] if len(epochs) == 1 else epochs,
           "supernet_epochs": study.train.epochs, "configs": rows,
           "supernet_stem": study.space.supernet.stem, "planned_configs": len(planned),
           "standalone_trained_on": sorted({r["trained_on"] for r in rows}),
           "standalone_scored": "fp32 where trained; other precisions here, quantized after "
                                "training as the search quantizes inherited weights",
           "fid_precisions": [f"w{w}a{a}" for w, a in FID_PRECISIONS]}
    res = _taus(res)
    fp32 = _taus({"configs": [r for r in rows if r["precision"] == "w32a32"]})
    res["fp32_only"] = {k: v for k, v in fp32.items() if k != "configs"}
    res["fp32_only"]["configs"] = len(fp32["configs"])
    return res


#: Precisions at which section 5 also ranks each fidelity config whose standalone weights are
#: on this machine. The standalone fp32 model is quantized after training exactly as the search
#: quantizes a subnet's inherited weights (same precision plan, post-training quantization and
#: calibration batches: ``jointopt.export.as_deployed``), so both sides deploy the same graph
#: and only the weights differ. w8a8 is the integer path; w4a16 is the most aggressive weights.
FID_PRECISIONS = ((8, 8), (4, 16))


def _precision_rows(study: Any, net: Any, job: dict[str, Any], cfg: Any,
                    fp32: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``job``'s config at :data:`FID_PRECISIONS` (none without its weights here,
    e.g. a job trained elsewhere whose weights were not packed)."""
    from jointopt.baselines import fixed_weights_path, load_fixed_model
    from jointopt.errors import UserError
    from jointopt.export import as_deployed
    from jointopt.train import accuracy

    name = job["argv"][job["argv"].index("--model") + 1]
    if not fixed_weights_path(study, name).is_file():
        log(f"section 5 ({study.name}): {job['name']}: no standalone weights here "
            f"({fixed_weights_path(study, name).name}); its precision rows are left out")
        return []
    standalone = load_fixed_model(study, name, key=f"section 5 {job['name']}")
    inherited = net.extract(cfg).eval()
    inherited.prop_attn = standalone.prop_attn = study.evaluation.proportional_attention
    val = study.data().val
    rows = []
    for w, a in FID_PRECISIONS:
        try:
            qcfg = study.space.validate(dataclasses.replace(cfg, w_bits=w, a_bits=a))
        except UserError:  # a precision this space does not offer
            continue
        log(f"section 5 ({study.name}): {job['name']} {qcfg.key()}: both quantized")
        row = {**fp32, "precision": qcfg.precision, "config": qcfg.to_dict(),
               "config_key": qcfg.key()}
        for side, model in (("inherited", inherited), ("standalone", standalone)):
            deployed = as_deployed(study, qcfg, model)
            row[f"{side}_val"] = accuracy(deployed, *val)
            row[f"{side}_test"] = float(test_correct(study, deployed).mean())
        rows.append(row)
    return rows
