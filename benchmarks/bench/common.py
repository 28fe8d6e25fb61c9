"""What every section shares: the run context, raw records, derived studies, references.

A *run* is one `run_bench.py` invocation: one folder ``runs/bench-<mode>/<run id>/`` with the
run's measurement cache (``JOINTOPT_CACHE`` points there), its search storage (``search.db``),
the derived study and search-space YAMLs, and ``evaluated.jsonl`` (every config the run
evaluated outside a search).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.stats import bootstrap_ci

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent

#: Budgets of the two modes. 0 epochs = the study's own ``train.epochs``. The quick mode's
#: WM-811K supernet (and its references, trained with the same budget) is kept in
#: runs/bench-quick/wm811k-e<epochs>/ and the references' weights are reused by later runs, so
#: only the first quick run pays for the training. Section 2 asks for 2 seeds; the full run
#: gives 4 (the seed-to-seed spread of 2 was as large as the gaps), then continues the arch
#: and joint studies of the first ``long_seeds`` seeds to ``long_trials`` trials (0 = skip), to
#: see whether the larger joint space needs a larger budget (WM-811K cells only: see
#: bench.joint.run_cell). The quick budgets were sized on a
#: 2-core machine. At 30 epochs / 24 trials, with both WM-811K cells and 2 precision rounds,
#: ``make bench-quick`` took 20.9 min after ``make demo`` (2026-12-02, commit 26341be), over its
#: 15 min: section 1 trains the DeiT-Tiny shape for the supernet's epochs (issue 13's fairness
#: rule), 6-10 s an epoch. At 15 epochs, 16 trials, the WM-811K latency cell only (``wm_cells``:
#: the first that many of bench.joint.CELLS' WM-811K cells) and one precision round it took
#: 15.3 min (the precision section's agreement check 2 min of it) and, without the agreement,
#: 18.0 min on a slower spell of the same machine (every section about 1.4x). It now trains 10
#: epochs (the synthetic set's references 2), and the precision section times the largest
#: architecture only, merging at r = 0 and 8 only, without the agreement (Makefile).
BUDGETS: dict[str, dict[str, int]] = {
    "quick": {"wm_epochs": 10, "syn_baseline_epochs": 2, "trials": 16, "seeds": 1,
              "wm_cells": 1, "pcb_cells": 0,
              "long_trials": 0, "long_seeds": 0,
              "sampler_trials": 16, "fidelity_epochs": 5, "fidelity_configs": 6,
              "latency_repeats": 10, "costmodel_min_configs": 20, "n_boot": 2000},
    "full": {"wm_epochs": 0, "syn_baseline_epochs": 0, "trials": 40, "seeds": 4,
             "wm_cells": 2, "pcb_cells": 1,
             "long_trials": 120, "long_seeds": 2,
             "sampler_trials": 40, "fidelity_epochs": 10, "fidelity_configs": 6,
             "latency_repeats": 10, "costmodel_min_configs": 40, "n_boot": 2000},
}
WM_YAML = ROOT / "studies" / "wm811k.yaml"
SYN_YAML = ROOT / "studies" / "quickstart.yaml"
METRIC_FIELDS = ("accuracy", "params", "macs", "bitops", "model_bytes", "latency_ms",
                 "throughput_ips", "latency_runtime", "energy_mj", "energy_source")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def git(*args: str) -> str:
    """``git ARGS`` run in the repository root: its stdout, stripped ("" when git fails)."""
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} {cpu} {os.cpu_count()} cores"


@dataclass
class Ctx:
    """One benchmark run."""

    mode: str
    budget: dict[str, int]
    run_dir: Path
    command: str
    header: dict[str, Any] = field(default_factory=dict)
    _cache: Any = None
    _nets: dict[str, Any] = field(default_factory=dict)
    _studies: dict[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    results: Path = RESULTS

    @classmethod
    def create(cls, mode: str, budget: dict[str, int], run_dir: Path | None, *,
               overrides: dict[str, int] | None = None, results: Path | None = None) -> Ctx:
        run_id = time.strftime("%Y%m%d-%H%M%S")
        if run_dir is None:
            run_dir = ROOT / "runs" / f"bench-{mode}" / run_id
        run_dir = run_dir.resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        # One measurement cache for every study of the run, and only for this run.
        os.environ["JOINTOPT_CACHE"] = str(run_dir / "cache")
        import onnxruntime
        import torch

        header = {
            "run_id": run_dir.name, "mode": mode, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": git("rev-parse", "--short", "HEAD"),
            # Code changes only: the records and RESULTS.md a previous run regenerated are not.
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                              ":!benchmarks/results", ":!benchmarks/RESULTS.md",
                              ":!benchmarks/fig_*.png")),
            "machine": machine(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "budget": dict(budget), "overrides": dict(overrides or {}),
            "run_dir": rel_path(run_dir),
        }
        cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
        return cls(mode=mode, budget=budget, run_dir=run_dir, command=cmd, header=header,
                   results=Path(results) if results else RESULTS)

    # ---- shared state --------------------------------------------------------------------
    @property
    def cache(self) -> Any:
        if self._cache is None:
            from jointopt.cost.latency import MeasureCache

            self._cache = MeasureCache()  # JOINTOPT_CACHE: the run's folder
        return self._cache

    def supernet(self, study: Any) -> Any:
        key = str(study.checkpoint)
        if key not in self._nets:
            self._nets[key] = study.load_supernet()
        return self._nets[key]

    def run(self, argv: list[str]) -> None:
        """Run a jointopt command line (recorded in the section's commands)."""
        cmd = " ".join(shlex.quote(a) for a in argv)
        self.commands.append(cmd)
        log(f"$ {cmd}")
        subprocess.run([str(BIN / argv[0]), *argv[1:]], check=True, cwd=ROOT)

    # ---- records -------------------------------------------------------------------------
    def record(self, bench: str, data: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Append one raw record to benchmarks/results/bench_<bench>.jsonl right away."""
        rec = {"bench": bench, **self.header, "command": self.command,
               "commands": list(self.commands), "seconds": seconds,
               "loadavg": list(os.getloadavg()), **data}
        self.results.mkdir(parents=True, exist_ok=True)
        path = self.results / f"bench_{bench}.jsonl"
        with path.open("a") as fh:
            fh.write(json.dumps(_jsonable(rec)) + "\n")
        self.commands.clear()
        log(f"wrote {rel_path(path)} ({seconds:.0f} s)")
        return rec

    def note_evaluated(self, dataset: str, cfg: Any, metrics: dict[str, Any]) -> None:
        with (self.run_dir / "evaluated.jsonl").open("a") as fh:
            fh.write(json.dumps(_jsonable({"dataset": dataset, "config": cfg.to_dict(),
                                           **{k: metrics.get(k) for k in METRIC_FIELDS}}))
                     + "\n")

    # ---- studies -------------------------------------------------------------------------
    @property
    def wm_yaml(self) -> Path:
        """The WM-811K study of this mode: as is (full), or a reduced copy (quick)."""
        if self.mode == "full" and not self.budget["wm_epochs"]:
            return WM_YAML
        epochs = self.budget["wm_epochs"]
        path = self.run_dir / f"wm811k-e{epochs}.yaml"
        if not path.is_file():
            src = load_yaml(WM_YAML)
            orig = int(src.get("train", {}).get("epochs", 20))
            train = dict(src.get("train") or {})
            train["epochs"] = epochs
            for k in ("warmup_epochs", "distill_start"):
                if k in train:  # keep their place in the schedule
                    train[k] = max(1 if k == "warmup_epochs" else 0,
                                   round(int(train[k]) * epochs / orig))
            derive_yaml(WM_YAML, path, {
                "name": f"wm811k-e{epochs}", "train": train,
                "output": str(ROOT / "runs" / f"bench-{self.mode}" / f"wm811k-e{epochs}")})
        return path

    def derived_study(self, src: Path, name: str) -> Path:
        """A study of this mode: as is (full), or a copy with ``<name>_epochs`` epochs and
        ``<name>_per_class`` training images per class (quick runs only, never a headline)."""
        epochs = self.budget.get(f"{name}_epochs", 0)
        cap = self.budget.get(f"{name}_per_class", 0)
        if self.mode == "full" or not (epochs or cap):
            return src
        path = self.run_dir / f"{name}-e{epochs}-c{cap}.yaml"
        if not path.is_file():
            data = load_yaml(src)
            train = dict(data.get("train") or {})
            orig = int(train.get("epochs", 20))
            if epochs:
                train["epochs"] = epochs
                for k in ("warmup_epochs", "distill_start"):
                    if k in train:
                        train[k] = max(1 if k == "warmup_epochs" else 0,
                                       round(int(train[k]) * epochs / orig))
            ds = dict(data.get("dataset") or {})
            if cap:
                ds["max_per_class"] = cap
            derive_yaml(src, path, {
                "name": f"{name}-e{epochs}-c{cap}", "train": train, "dataset": ds,
                "output": str(ROOT / "runs" / f"bench-{self.mode}" / f"{name}-e{epochs}-c{cap}")})
        return path

    def study(self, path: Path) -> Any:
        from jointopt import Study

        key = str(path)
        if key not in self._studies:
            self._studies[key] = Study.from_yaml(path)
        return self._studies[key]

    def ensure_supernet(self, path: Path) -> Any:
        """The study's trained supernet; trains (or finishes) it with `jointopt train`."""
        import torch

        study = self.study(path)
        done = 0
        if study.checkpoint.is_file() and study.train_state.is_file():
            done = int(torch.load(study.train_state, weights_only=True)["epoch"])
        if not study.checkpoint.is_file() or done < study.train.epochs:
            log(f"supernet {study.checkpoint} missing or at epoch {done}: training")
            self.run(["jointopt", "train", rel_path(path), "--quiet"])
            self._nets.pop(str(study.checkpoint), None)
        return self.supernet(study)

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.run_dir / 'search.db'}"


def rel_path(path: Path) -> str:
    """``path`` relative to the repository root when inside it (for commands and records)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) or {}


def derive_yaml(src: Path, dst: Path, overrides: dict[str, Any]) -> Path:
    """Copy a study YAML with its relative paths made absolute and ``overrides`` applied."""
    data = load_yaml(src)
    base = Path(src).resolve().parent

    def absolute(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    if data.get("output"):
        data["output"] = absolute(data["output"])
    if data.get("search_space"):
        data["search_space"] = absolute(data["search_space"])
    ds = data.get("dataset") or {}
    if ds.get("root"):
        ds["root"] = absolute(ds["root"])
    for k, v in overrides.items():
        data[k] = v
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(f"# derived by benchmarks/bench from {rel_path(src)}\n"
                   + yaml.safe_dump(data, sort_keys=False))
    return dst


# ---- scoring ------------------------------------------------------------------------------
def threads_of(study: Any) -> int:
    n = study.evaluation.threads
    return int(n) if n else len(os.sched_getaffinity(0))


def test_correct(study: Any, model: Any) -> np.ndarray:
    """0/1 per test image for a model at its deployed precision."""
    from jointopt.export import torch_predictions

    x, y = study.data().test
    return (torch_predictions(model, x) == y.numpy()).astype(np.int8)


def jointopt_modelled_energy(study: Any, net: Any, cfg: Any) -> float:
    """jointopt's Horowitz-45nm figure for a config, whatever energy source the study uses."""
    from jointopt.cost.energy import modelled_energy_mj
    from jointopt.cost.registry import EvalContext
    from jointopt.cost.size import size_costs
    from jointopt.evaluation import config_plan

    ev = study.evaluation
    plan = config_plan(study, cfg)
    costs = size_costs(cfg, net.shape, plan, in_chans=net.in_chans,
                       num_classes=net.num_classes)
    ectx = EvalContext(cfg=cfg, shape=net.shape, in_chans=net.in_chans,
                       num_classes=net.num_classes, io_bits=ev.io_bits,
                       batch_size=ev.batch_size, metrics=dict(costs), plan=plan)
    return modelled_energy_mj(ectx)


def score_config(ctx: Ctx, study: Any, net: Any, cfg: Any, *, dataset: str, test: bool = True,
                 cache: Any = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """Evaluate a config on validation (measurements from ``cache``, default the run's); with
    ``test``, score it on the test split with a 95% bootstrap interval (a second deployment of
    the config: calibration included)."""
    from jointopt.evaluation import evaluate
    from jointopt.export import deployed_model

    m = evaluate(study, cfg, supernet=net, cache=cache or ctx.cache).to_dict()
    ctx.note_evaluated(dataset, cfg, m)
    out = {k: m[k] for k in METRIC_FIELDS}
    if m.get("latency_contended"):  # timed while other processes kept its cores busy
        out["latency_contended"] = m["latency_contended"]
    out.update(config=cfg.to_dict(), val_accuracy=m["accuracy"],
               energy_model_mj=jointopt_modelled_energy(study, net, cfg),
               eval_seconds=m.get("eval_seconds"))
    if not test:
        return out, None
    correct = test_correct(study, deployed_model(study, cfg, net))
    acc, lo, hi = bootstrap_ci(correct, n_boot=ctx.budget["n_boot"])
    out.update(test_accuracy=acc, test_ci=[lo, hi])
    return out, correct


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:48]


#: Train settings a reference (``jointopt train-fixed``) does not use.
TEACHER_FIELDS = ("teacher", "teacher_mode", "teacher_weight", "teacher_temperature")


def reference_paths(study: Any, name: str, epochs: int) -> tuple[Path, Path]:
    """Where :func:`fixed_reference` caches model ``name`` (weights, meta json): under a key of
    the model, budget, recipe and data in ``<study output>/bench-baselines/``."""
    # A reference learns from the labels only (baselines.train_fixed drops train.teacher), so
    # the teacher settings are keyed at their defaults: a study that adds a teacher reuses its
    # references, and a study without one keeps the keys it had.
    defaults = {f: getattr(type(study.train)(), f) for f in TEACHER_FIELDS}
    spec = dataclasses.replace(study.train, epochs=epochs, **defaults)
    recipe = dataclasses.asdict(spec)
    recipe.pop("device")  # where it trained is not part of the recipe (keys stay as before)
    key_src = json.dumps({"name": name, "epochs": epochs, "seed": 0,
                          "train": recipe, "root": str(study.data_root),
                          "split_seed": study.dataset.split_seed,
                          "size": study.dataset.image_size, "chans": study.dataset.channels},
                         sort_keys=True)
    key = hashlib.sha1(key_src.encode()).hexdigest()[:10]
    folder = study.output / "bench-baselines"
    return folder / f"{_slug(name)}-{key}.safetensors", folder / f"{_slug(name)}-{key}.json"


def fixed_reference(ctx: Ctx, study_yaml: Path, name: str, epochs: int, *, cache: Any = None
                    ) -> tuple[dict[str, Any], np.ndarray, Any]:
    """A model trained standalone (`jointopt train-fixed`), costed and timed like a config;
    returns its metrics, its 0/1 test correctness and the trained model (eval mode).

    The trained weights are kept in ``<study output>/bench-baselines/`` under a key of the
    model, budget, recipe and data, and reused by later runs (``reused: true``): training is
    the slow part of a run and does not change between runs of the same commit.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from jointopt.baselines import build_fixed_model, train_fixed
    from jointopt.cost.generic import module_costs, time_model

    study = ctx.study(study_yaml)
    weights, meta_path = reference_paths(study, name, epochs)
    cmd = (f"jointopt train-fixed {rel_path(study_yaml)} --model {shlex.quote(name)} "
           f"--epochs {epochs} --seed 0")
    if weights.is_file() and meta_path.is_file():
        model = build_fixed_model(study, name, seed=0)
        model.load_state_dict(load_file(str(weights)))
        meta = json.loads(meta_path.read_text())
        meta["reused"] = True
        log(f"{name}: reusing weights trained {meta['trained_at']} ({weights.name})")
    else:
        log(f"{name}: training {epochs} epochs on {study.name}")
        out = train_fixed(study, name, epochs=epochs, progress=True)
        model = out.pop("model_object")
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        meta = {k: out[k] for k in ("train_seconds", "val_accuracy")}
        meta.update(trained_at=time.strftime("%Y-%m-%d %H:%M:%S"), command=cmd,
                    commit=ctx.header["commit"])
        meta_path.write_text(json.dumps(meta, indent=2))
        meta["reused"] = False
    ctx.commands.append(meta.get("command", cmd))
    model.eval()
    ev = study.evaluation
    chans, size = study.dataset.channels, study.dataset.image_size
    from jointopt.train import accuracy

    with torch.no_grad():
        costs = module_costs(model, chans, size, batch_size=ev.batch_size)
    timing = time_model(model, chans, size, batch_size=ev.batch_size, runtime=ev.runtime,
                        threads=threads_of(study), runs=ev.latency_runs,
                        warmup=ev.warmup_runs, cache=cache or ctx.cache,
                        max_foreign_load=ev.max_foreign_load,
                        key=f"{name}|k{len(study.data().classes)}")
    correct = test_correct(study, model)
    acc, lo, hi = bootstrap_ci(correct, n_boot=ctx.budget["n_boot"])
    out = {**costs, **timing, "model": name, "epochs": epochs,
           "train_seconds": meta["train_seconds"], "reused": meta["reused"],
           "val_accuracy": accuracy(model, *study.data().val), "test_accuracy": acc,
           "test_ci": [lo, hi], "energy_model_mj": costs["energy_mj"]}
    return out, correct, model


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t
