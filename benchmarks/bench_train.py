"""Train every model the benchmark needs for one study, in parallel and resumably
(``make bench-train``).

Jobs, each one ``jointopt`` command (what a user would run) in its own process:

* ``supernet``: ``jointopt train STUDY`` (the study's supernet, as the search uses it);
* ``resnet10t`` and ``deit``: the section-1 references, ``jointopt train-fixed`` for the
  supernet's epochs (resnet10t is also the teacher of the next two);
* ``soft`` and ``hard``: the supernet again with ``train.teacher`` = that resnet10t (soft or hard
  targets; the arms of benchmarks/teacher.py, in ``runs/bench-teacher-<study>/``). A study
  whose own ``train.teacher`` is resnet10t trains resnet10t before its supernet, and its own
  mode's arm is that supernet (not trained twice);
* ``fid-<k>``: the supernet-fidelity configs (section 5), each trained standalone for the
  supernet's epochs: architectures spread by MACs, some with token merging.

A finished job is skipped when run again (its ``.json`` result is kept under the run folder,
with :func:`train_key`, a hash of the training revision, recipe, data and, for the models built
from it, the search space; a job finished under another key stops the run, or with
``--retrain`` is trained again from scratch), and
``jointopt train`` resumes a supernet from its last epoch. ``--deadline`` stops what is
still running after that many seconds (a supernet keeps its last finished epoch).

The same script moves the results between machines. Training runs where the study's
``train.device`` (default ``auto``) finds a GPU; ``--pack DIR`` writes every trained weight
file, as float16 to fit a transfer, with the job results and logs, into tar parts of at most
15 MiB; ``--unpack DIR`` on the machine that runs the benchmark puts them back (as float32)
where ``jointopt`` and the benchmark look for them, and checks that they were trained on the
same images (the train split's fingerprint). Every accuracy the benchmark reports is computed
again there, from the unpacked weights.

Usage:
  python benchmarks/bench_train.py STUDY [--jobs N] [--only supernet,resnet10t,...]
      [--fidelity-configs 12] [--deadline SECONDS] [--retrain]
  python benchmarks/bench_train.py STUDY --pack DIR      (after training)
  python benchmarks/bench_train.py STUDY --unpack DIR    (on the benchmark machine)
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench.common import TEACHER_FIELDS  # noqa: E402 (after the path setup)

CNN = "timm:resnet10t"
DEIT = "timm:deit_tiny_patch16_224"


def _deit(study: Any) -> str:
    s = study.space.supernet
    return DEIT + json.dumps({"img_size": s.img_size, "patch_size": s.patch_size})


def fidelity_configs(study: Any, n: int) -> list[Any]:
    """``n`` configs for section 5: two thirds architectures spread by MACs (fp32, no
    merging), the rest the middle ones of those with every block merging (the space's
    largest ``r`` that fits)."""
    import dataclasses

    from bench.sharing import spread_configs

    space = study.space
    n_merge = n // 3 if len(space.choices["tome_r"]) > 1 else 0
    archs = spread_configs(space, space.supernet, n - n_merge, in_chans=study.dataset.channels,
                           num_classes=len(study.data().classes))
    out = list(archs)
    for cfg in archs[1: 1 + n_merge]:
        r = tuple(max(space.merge_choices(i)) for i in range(cfg.depth))
        out.append(space.validate(dataclasses.replace(cfg, tome_r=r)))
    return out


def teacher_dir(study: Any) -> Path:
    return ROOT / "runs" / f"bench-teacher-{study.name}"


def jobs(study_path: Path, study: Any, n_fid: int) -> list[dict[str, Any]]:
    """Every job: name, argv (a jointopt command), the job it waits for."""
    from teacher import arm_yaml

    rel = os.path.relpath(study_path, ROOT)
    teacher_weights = teacher_dir(study) / "base" / "fixed" / "timm-resnet10t.safetensors"
    # A study that learns from resnet10t (``train.teacher``) trains it first; the teacher arm
    # of its own mode is then the study's supernet itself, and is not trained twice.
    taught = study.train.teacher == CNN
    out = [{"name": "supernet", "argv": ["train", rel, "--quiet"],
            "after": "resnet10t" if taught else None},
           {"name": "resnet10t", "argv": ["train-fixed", rel, "--model", CNN, "--json",
                                          "--quiet"], "after": None},
           {"name": "deit", "argv": ["train-fixed", rel, "--model", _deit(study), "--json",
                                     "--quiet"], "after": None}]
    teacher_dir(study).mkdir(parents=True, exist_ok=True)
    for arm in ("soft", "hard"):
        if taught and arm == study.train.teacher_mode:
            continue
        path = arm_yaml(study_path.resolve(), teacher_dir(study), arm, teacher_weights, None)
        out.append({"name": arm, "argv": ["train", str(path), "--quiet"],
                    "after": "resnet10t"})
    for k, cfg in enumerate(fidelity_configs(study, n_fid)):
        out.append({"name": f"fid-{k:02d}", "after": None, "config": cfg.to_dict(),
                    "argv": ["train-fixed", rel, "--model",
                             "subnet:" + json.dumps(cfg.to_dict()), "--json", "--quiet"]})
    return out


#: The training code; its hash is recorded with each job, and a job trained by other code is
#: reported, not retrained: a refactor would otherwise retrain hours of models. What training
#: produces is ``jointopt.train.TRAINING_REVISION``, which is part of the key. The data code is
#: not hashed: the train split's fingerprint (its decoded images and labels) says whether the
#: data a model learns from changed, and a refactor of the loader does not.
TRAIN_CODE = ("jointopt/train.py", "jointopt/augment.py", "jointopt/baselines.py",
              "jointopt/tokens.py", "jointopt/supernet/*.py")

#: Jobs whose model is not built from the search space (the references): a new space, e.g. a
#: conv stem, leaves them as they are.
SPACE_FREE = ("resnet10t", "deit")

#: Settings that do not change what training produces: where and on how many threads it runs.
#: For ``train-fixed`` (one model, no teacher: ``baselines.train_fixed``) the supernet's
#: sandwich, in-place distillation and teacher settings do not either, so a study that adds a
#: teacher does not retrain the teacher.
NOT_KEYED = ("device", "threads")
NOT_KEYED_FIXED = ("sandwich", "distill", "distill_start", *TEACHER_FIELDS)


def code_hash() -> str:
    import hashlib

    h = hashlib.sha1()
    for pattern in TRAIN_CODE:
        for f in sorted(ROOT.glob(pattern)):
            h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _rel(arg: str) -> str:
    """A path under the repository as a relative one: keys do not depend on the checkout."""
    p = Path(arg)
    return p.relative_to(ROOT).as_posix() if p.is_absolute() and p.is_relative_to(ROOT) else arg


def train_key(study: Any, job: dict[str, Any] | None = None) -> str:
    """What a finished job's model depends on, hashed: the training revision, the study's
    recipe and data settings, its train split's fingerprint, the job's command and, unless
    the job is a reference (:data:`SPACE_FREE`), the search space. A finished job is reused
    only under the same key. Without ``job``, the key of a supernet-shaped job."""
    import dataclasses
    import hashlib

    from jointopt.train import TRAINING_REVISION

    job = job or {"name": "supernet", "argv": []}
    argv = job.get("argv", [])
    drop = NOT_KEYED + (NOT_KEYED_FIXED if argv[:1] == ["train-fixed"] else ())
    recipe = {k: v for k, v in dataclasses.asdict(study.train).items() if k not in drop}
    h = hashlib.sha1(json.dumps({
        "revision": TRAINING_REVISION, "train": recipe,
        "dataset": dataclasses.asdict(study.dataset), "root": str(study.data_root),
        "argv": [_rel(a) for a in argv if a != "--quiet"]},
        sort_keys=True, default=str).encode())
    h.update(study.data().fingerprint("train").encode())
    if job["name"] not in SPACE_FREE:
        h.update(study.space_path.read_bytes())
    return h.hexdigest()[:12]


def _after(job: dict[str, Any], study: Any) -> None:
    """What a finished job leaves for the jobs after it: resnet10t's weights as the arms'
    teacher."""
    import shutil

    from jointopt.baselines import fixed_weights_path

    if job["name"] == "resnet10t":
        dst = teacher_dir(study) / "base" / "fixed" / "timm-resnet10t.safetensors"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fixed_weights_path(study, CNN), dst)


def stale_jobs(run_dir: Path, todo: list[dict[str, Any]], keys: dict[str, str]) -> list[str]:
    """Finished jobs trained under another key than ``keys[name]`` (another training
    revision, recipe, data or space); a job trained by other training code under the same key
    is reported on stderr and kept."""
    out, code = [], code_hash()
    for j in todo:
        path = run_dir / f"{j['name']}.json"
        if not path.is_file():
            continue
        done = json.loads(path.read_text())
        if done.get("key") != keys[j["name"]]:
            out.append(j["name"])
        elif done.get("code", code) != code:
            print(f"note: {path}: trained by other training code ({done['code']}, now {code}) "
                  "under the same training revision: reused", file=sys.stderr)
    return out


def only(todo: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The jobs ``names`` picks (a name, or a prefix ending in ``*``), with the jobs they wait
    on: a finished one is then kept as done, an unfinished one trained first (without it, a
    picked job waiting on a job left out would never start)."""
    by_name = {j["name"]: j for j in todo}
    keep = {j["name"] for j in todo if j["name"] in names or any(
        j["name"].startswith(k.rstrip("*")) for k in names if k.endswith("*"))}
    stack = list(keep)
    while stack:
        after = by_name[stack.pop()]["after"]
        if after is not None and after not in keep:
            keep.add(after)
            stack.append(after)
    return [j for j in todo if j["name"] in keep]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1


def default_jobs(cores: int, gpu: bool) -> int:
    """Jobs at once when ``--jobs`` is not given: one per core on a CPU-only machine, each on
    one thread (a training step of these small models gains little from a second thread: on
    2 cores a DeepPCB supernet epoch took about 92 s alone on 2 threads and 92-126 s alone on
    1, while two jobs side by side on one thread each took 115-131 s an epoch each, about 1.4x
    the epochs per hour; README "Benchmarks"), one on a GPU machine."""
    return 1 if gpu else max(1, cores)


def threads_per_job(cores: int, n_jobs: int) -> int:
    """Threads of each job (``OMP_NUM_THREADS``, unless set): the cores shared by the jobs."""
    return max(1, cores // max(1, n_jobs))


def run(study_path: Path, study: Any, run_dir: Path, todo: list[dict[str, Any]], n_jobs: int,
        deadline: float, keys: dict[str, str], machine: dict[str, Any]) -> int:
    threads = os.environ.get("OMP_NUM_THREADS") or str(threads_per_job(usable_cores(), n_jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    done = {j["name"] for j in todo if (run_dir / f"{j['name']}.json").is_file()}
    for j in todo:
        if j["name"] in done:
            _after(j, study)
    waiting = [j for j in todo if j["name"] not in done]
    running: dict[str, tuple[subprocess.Popen[bytes], dict[str, Any], float]] = {}
    code = code_hash()  # the code the jobs start with (an edit during a run is not theirs)
    t0, failed = time.time(), 0
    while waiting or running:
        for name, (p, j, t) in list(running.items()):
            if p.poll() is None:
                continue
            del running[name]
            ok = p.returncode == 0
            print(f"[{time.time() - t0:6.0f} s] {name}: {'done' if ok else 'FAILED'} "
                  f"({time.time() - t:.0f} s)", flush=True)
            if ok:
                (run_dir / f"{name}.json").write_text(json.dumps(
                    {**{k: v for k, v in j.items() if k != "after"}, "key": keys[name],
                     "code": code, "machine": machine,
                     "seconds": time.time() - t,
                     "stdout": (run_dir / f"{name}.out").read_text()[-4000:]}, indent=1))
                done.add(name)
                _after(j, study)
            else:
                failed += 1
        if time.time() - t0 > deadline:
            for name, (p, _, _) in running.items():
                print(f"deadline: stopping {name}", flush=True)
                p.terminate()
            for p, _, _ in running.values():
                p.wait()
            return failed + len(running) + len(waiting)
        ready = [j for j in waiting if j["after"] is None or j["after"] in done]
        ready.sort(key=lambda j: j["after"] is None)  # a waiting job, once free, goes first
        while ready and len(running) < n_jobs:
            j = ready.pop(0)
            waiting.remove(j)
            log = open(run_dir / f"{j['name']}.log", "wb")  # noqa: SIM115 (the child's)
            out = open(run_dir / f"{j['name']}.out", "wb")  # noqa: SIM115
            p = subprocess.Popen([sys.executable, "-m", "jointopt", *j["argv"]], cwd=ROOT,
                                 stdout=out, stderr=log, env=env)
            running[j["name"]] = (p, j, time.time())
            print(f"[{time.time() - t0:6.0f} s] {j['name']}: started", flush=True)
        if waiting and not running and not ready:
            print("jobs wait on a failed job: " + ", ".join(j["name"] for j in waiting))
            return failed + len(waiting)
        time.sleep(1.0)
    return failed


def _weight_files(study: Any) -> list[Path]:
    out = [study.checkpoint, study.checkpoint.with_name(study.checkpoint.name + ".json"),
           study.train_state]
    for arm in ("soft", "hard"):
        d = teacher_dir(study) / arm
        out += [d / "supernet.safetensors", d / "supernet.safetensors.json", d / "train_state.pt"]
    # The references come back, and so do the fidelity configs' weights: their fp32 accuracies
    # were scored where they trained (job results), and section 5 quantizes them here to rank
    # the configs at integer precisions too (a few MiB each in float16).
    from jointopt.baselines import fixed_weights_path

    out += [fixed_weights_path(study, CNN), fixed_weights_path(study, _deit(study))]
    for j in jobs_plan(study):
        if j["name"].startswith("fid-"):
            out.append(fixed_weights_path(study, j["argv"][j["argv"].index("--model") + 1]))
    return [p for p in out if p.is_file()]


def jobs_plan(study: Any) -> list[dict[str, Any]]:
    """The jobs of the study's last run (plan.json), or none."""
    path = ROOT / "runs" / "bench-train" / study.name / "plan.json"
    return json.loads(path.read_text()) if path.is_file() else []


def pack(study: Any, run_dir: Path, dst: Path) -> None:
    """Every trained file, weights as float16 and the train states of finished supernets
    without the optimizer's moments (they need none; an unfinished one keeps them, so that it
    resumes as one run would have), in tar parts of at most 15 MiB."""
    import io
    import tarfile

    import torch
    from safetensors import safe_open
    from safetensors.torch import save

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for p in _weight_files(study):
            rel = str(p.resolve().relative_to(ROOT))
            if p.suffix == ".safetensors":
                with safe_open(str(p), "pt") as f:
                    meta = f.metadata() or {}
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                tensors = {k: v.half() if v.dtype == torch.float32 else v
                           for k, v in tensors.items()}
                add(rel, save(tensors, metadata={**meta, "jointopt.packed": "float16"}))
            elif p.name == "train_state.pt":
                state = torch.load(p, weights_only=True, map_location="cpu")
                if int(state["epoch"]) >= study.train.epochs:  # finished: no more steps
                    state["optimizer"]["state"] = {}
                b = io.BytesIO()
                torch.save(state, b)
                add(rel, b.getvalue())
            else:
                add(rel, p.read_bytes())
        for p in sorted(run_dir.glob("*")):
            if p.suffix in (".json", ".log", ".out") and p.is_file():
                add(str(p.resolve().relative_to(ROOT)), p.read_bytes()[-200_000:])
    data = buf.getvalue()
    dst.mkdir(parents=True, exist_ok=True)
    part = 15 * 2**20
    for i in range(0, len(data), part):
        (dst / f"bench-train.tar.{i // part:02d}").write_bytes(data[i: i + part])
    print(f"packed {len(data) / 2**20:.1f} MiB into {dst}")


def unpack(study: Any, src: Path) -> None:
    """Put packed files back under the repository (float32 again) and check each fixed
    model's train-split fingerprint against this machine's data."""
    import io
    import tarfile

    import torch
    from safetensors.torch import load, save

    data = b"".join(p.read_bytes() for p in sorted(src.glob("bench-train.tar.*")))
    fp = study.data().fingerprint("train")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        mpath = f"runs/bench-train/{study.name}/machine.json"
        mfile = tar.extractfile(mpath) if mpath in names else None
        packed_machine = json.loads(mfile.read()) if mfile else {}
        for m in tar.getmembers():
            dst = (ROOT / m.name).resolve()
            if not dst.is_relative_to(ROOT) or not m.isfile():
                raise SystemExit(f"{src}: refusing member {m.name!r}")
            raw = tar.extractfile(m).read()  # type: ignore[union-attr]
            if dst.suffix == ".safetensors":
                from safetensors import safe_open

                tmp = dst.with_suffix(".unpack")
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(raw)
                with safe_open(str(tmp), "pt") as f:
                    meta = dict(f.metadata() or {})
                tmp.unlink()
                if meta.get("train_fingerprint", fp) != fp:
                    raise SystemExit(f"{m.name}: trained on another train split than "
                                     f"{study.path}'s")
                meta.pop("jointopt.packed", None)
                tensors = {k: v.float() if v.dtype == torch.float16 else v
                           for k, v in load(raw).items()}
                raw = save(tensors, metadata=meta or None)
            if dst.suffix == ".json" and dst.parent.name == study.name and b'"stdout"' in raw:
                job = json.loads(raw)
                if "key" not in job:  # packed before jobs carried keys: the packing commit's
                    job.update(key=train_key(study, job), key_stamped="at unpack")
                if "machine" not in job:  # packed before jobs carried their machine
                    job["machine"] = packed_machine
                raw = json.dumps(job, indent=1).encode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(raw)
            print(f"unpacked {m.name}")
    install(study)


def record(study: Any, command: str) -> None:
    """Append one record of the run folder's jobs (seconds of each finished one, which did not
    finish, the machine they ran on) to benchmarks/results/bench_train.jsonl."""
    import subprocess

    folder = ROOT / "runs" / "bench-train" / study.name
    plan = json.loads((folder / "plan.json").read_text()) if (folder / "plan.json").is_file() \
        else []
    jobs = {}
    refs = {"resnet10t": CNN, "deit": _deit(study)}
    for j in plan:
        info = _job(study, j["name"])
        jobs[j["name"]] = {"seconds": info["seconds"], "key": info.get("key"),
                           "on": where(info.get("machine"))} if info else \
            _section1_reference(study, refs[j["name"]]) if j["name"] in refs else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    rec = {"bench": "train", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit,
           "study": os.path.relpath(study.path, ROOT), "command": command,
           "jobs": jobs}
    out = ROOT / "benchmarks" / "results" / "bench_train.jsonl"
    with out.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(f"wrote {os.path.relpath(out, ROOT)}")


def _section1_reference(study: Any, name: str) -> dict[str, Any] | None:
    """A reference this step did not train but section 1 of a benchmark run did (it trains
    a missing one itself and caches it where both look, ``bench.common.reference_paths``)."""
    from bench.common import reference_paths

    weights, meta = reference_paths(study, name, study.train.epochs)
    if not (weights.is_file() and meta.is_file()):
        return None
    m = json.loads(meta.read_text())
    return {"seconds": m["train_seconds"], "key": None,
            "on": m.get("trained_on") or f"section 1 of a benchmark run ({m['trained_at']}, "
                                          f"commit {m.get('commit', '?')}), on its machine"}


def where(machine: dict[str, Any] | None) -> str:
    """Where a job trained, in words (its GPU, else its CPU cores)."""
    m = machine or {}
    if not m:
        return "unknown"
    n = m.get("jobs")
    jobs = f"{n} job{'' if n == 1 else 's'} at once"
    return f"{m['gpu']} ({m.get('cpus')} CPU cores, {jobs})" if m.get("gpu") \
        else f"{m.get('cpus')} CPU cores ({jobs})"


def _job(study: Any, name: str) -> dict[str, Any] | None:
    path = ROOT / "runs" / "bench-train" / study.name / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def install(study: Any) -> None:
    """Put the unpacked references where the benchmark looks for them: section 1's cache
    (``bench.common.reference_paths``) and the teacher benchmark's ``base`` arm and teacher.
    Accuracies are scored again here, from the unpacked (float16-rounded) weights."""
    import shutil

    from bench.common import reference_paths
    from safetensors.torch import load_file

    from jointopt.baselines import build_fixed_model, fixed_weights_path
    from jointopt.train import scores

    data = study.data()
    k = len(data.classes)
    scored: dict[str, dict[str, Any]] = {}
    for job, name in (("resnet10t", CNN), ("deit", _deit(study))):
        src, info = fixed_weights_path(study, name), _job(study, job)
        if not src.is_file() or info is None:
            continue
        out, machine = json.loads(info["stdout"]), info.get("machine") or {}
        model = build_fixed_model(study, name, seed=0)
        model.load_state_dict(load_file(str(src)))
        model.eval()
        val, test = scores(model, *data.val, k), scores(model, *data.test, k)
        scored[job] = {**out, "val_accuracy": val["accuracy"],
                       "val_balanced_accuracy": val["balanced_accuracy"],
                       "test_accuracy": test["accuracy"],
                       "test_balanced_accuracy": test["balanced_accuracy"],
                       "trained_on": where(machine)}
        weights, meta = reference_paths(study, name, int(out["epochs"]))
        weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, weights)
        meta.write_text(json.dumps({
            "train_seconds": out["train_seconds"], "val_accuracy": val["accuracy"],
            "trained_at": machine.get("date", "?"), "trained_on": scored[job]["trained_on"],
            "command": f"python benchmarks/bench_train.py {os.path.relpath(study.path, ROOT)} "
                       f"(job {job}: jointopt {' '.join(info['argv'])}), then --unpack"},
            indent=2))
        print(f"{job}: val {val['accuracy']:.4f} test {test['accuracy']:.4f} "
              f"(scored here) -> {os.path.relpath(weights, ROOT)}")
    # The teacher benchmark's base arm is the study's own supernet; its teacher, resnet10t.
    base = teacher_dir(study) / "base"
    if study.checkpoint.is_file() and "resnet10t" in scored:
        base.mkdir(parents=True, exist_ok=True)
        for f in (study.checkpoint, study.checkpoint.with_name(study.checkpoint.name + ".json"),
                  study.train_state):
            if f.is_file():
                shutil.copy2(f, base / f.name)
        (base / "fixed").mkdir(exist_ok=True)
        shutil.copy2(fixed_weights_path(study, CNN), base / "fixed" / "timm-resnet10t.safetensors")
        (teacher_dir(study) / "teacher.json").write_text(json.dumps(scored["resnet10t"],
                                                                    indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--jobs", type=int, default=0,
                    help="processes at once (default: one per core without a GPU, each on one "
                         "thread; 1 with a GPU); each job gets the cores / jobs threads")
    ap.add_argument("--only", default=None, help="comma-separated job names")
    ap.add_argument("--fidelity-configs", type=int, default=12)
    ap.add_argument("--deadline", type=float, default=float("inf"))
    ap.add_argument("--retrain", action="store_true",
                    help="train again the jobs whose key (training revision, recipe, data, "
                         "space) has changed")
    ap.add_argument("--pack", type=Path, default=None)
    ap.add_argument("--unpack", type=Path, default=None)
    args = ap.parse_args()
    if args.jobs < 0:  # before anything is written
        print(f"error: --jobs: {args.jobs}: must be >= 1 (or 0: one per core without a GPU)",
              file=sys.stderr)
        return 2
    from jointopt.study import Study

    study = Study.from_yaml(args.study)
    run_dir = ROOT / "runs" / "bench-train" / study.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.unpack:
        unpack(study, args.unpack)
        record(study, " ".join(["python", *sys.argv]))
        return 0
    if args.pack:
        pack(study, run_dir, args.pack)
        return 0
    import platform

    import timm
    import torch

    n_jobs = args.jobs or default_jobs(usable_cores(), torch.cuda.is_available())
    machine = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
               "python": platform.python_version(), "torch": torch.__version__,
               "timm": timm.__version__, "gpu": torch.cuda.get_device_name(0)
               if torch.cuda.is_available() else None, "jobs": n_jobs}
    todo = jobs(args.study, study, args.fidelity_configs)
    (run_dir / "plan.json").write_text(json.dumps(todo, indent=1))  # every job, --only or not
    if args.only:
        todo = only(todo, args.only.split(","))
    keys = {j["name"]: train_key(study, j) for j in todo}
    if stale := stale_jobs(run_dir, todo, keys):
        print(f"error: {run_dir}: {', '.join(stale)} trained under another key (training "
              "revision, recipe, data or search space changed); run again with --retrain to "
              "delete their results and train them again", file=sys.stderr)
        if not args.retrain:
            return 2
        for name in stale:
            (run_dir / f"{name}.json").unlink()
            if name in ("supernet", "soft", "hard"):  # start over, not resume
                d = study.output if name == "supernet" else teacher_dir(study) / name
                for f in ("supernet.safetensors", "supernet.safetensors.json", "train_state.pt"):
                    (d / f).unlink(missing_ok=True)
    rc = run(args.study, study, run_dir, todo, n_jobs, args.deadline, keys, machine)
    record(study, " ".join(["python", *sys.argv]))
    return 1 if rc else 0


if __name__ == "__main__":
    raise SystemExit(main())
