"""Helpers shared by the tests: paths, tiny studies, and the ways to run ``jointopt``.

Test files import from here (``from helpers import ...``; ``tests/`` is on ``sys.path``, see
pyproject.toml); ``conftest.py`` holds only fixtures. Submodules with heavier set-up:
``helpers.browser`` (headless Chromium), ``helpers.corpus`` (the bad-input corpus),
``helpers.postgres`` (a throw-away PostgreSQL server).
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

if TYPE_CHECKING:
    import optuna
    import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
WM811K = SHARED / "data" / "wm811k" / "images"

#: A test Ray cluster's head: no CPUs (it runs the driver only), and workers at the user's
#: priority, as jointopt's own local Ray runs them. Ray's default nice 15 starves the trials on
#: a busy machine (README, "Running on a cluster").
RAY_HEAD = {"num_cpus": 0, "_system_config": {"worker_niceness": 0}}

TINY_SPACE = {
    "supernet": {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2,
                 "head_dim": 8, "mlp_ratio": 2.0},
    "choices": {"depth": [1, 2, 3], "embed_dim": [16, 24, 32], "num_heads": [1, 2],
                "mlp_ratio": [1.0, 2.0], "tome_r": [0, 1, 2], "w_bits": [32, 16, 8, 4],
                "a_bits": [32, 16, 8]},
}


# ---- running the CLI -------------------------------------------------------------------------
def run_cli(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 300, preexec_fn: Callable[[], object] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``python -m jointopt *args`` in a fresh interpreter, text output captured.

    ``env`` replaces the environment (None: inherit this process's); ``preexec_fn`` runs in
    the child before it starts (e.g. to set resource limits)."""
    return subprocess.run([sys.executable, "-m", "jointopt", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout, preexec_fn=preexec_fn)


def run_main(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process; stdout and stderr captured at the file-descriptor level, so a
    stray print from C code would show up too."""
    from jointopt.cli import main

    capfd.readouterr()
    rc = main(list(argv))
    out, err = capfd.readouterr()
    return rc, out, err


# ---- studies ---------------------------------------------------------------------------------
def write_tiny_study(tmp_path: Path, **overrides: object) -> Path:
    """A study over a tiny synthetic set (6 x 12 images, 32x32) and a tiny supernet."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    study = {
        "name": "tiny", "output": "out", "seed": 0,
        "dataset": {"kind": "synthetic", "image_size": 32, "channels": 1, "per_class": 12},
        "search_space": "space.yaml",
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "bf16": False},
        # max_foreign_load 1: a test study never waits for the machine to quiet down (a busy
        # laptop would triple every timing); the retry logic has its own tests with scripted
        # load readings (test_contention.py).
        "evaluate": {"calib_batches": 1, "batch_size": 8, "latency_runs": 3, "warmup_runs": 1,
                     "max_foreign_load": 1},
    }
    study.update(overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def write_pattern_folder(root: Path, *, per_class: int = 40, size: int = 32) -> Path:
    """An easy ImageFolder set (class = where a bright square sits, on noise) that a tiny ViT
    learns in seconds, so tests get a trained model with clear decision margins."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(6):
        d = root / f"class {c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 70, size=(size, size)).astype(np.uint8)
            r, col = (c // 3) * (size // 2) + rng.integers(0, 4), (c % 3) * (size // 3)
            img[r:r + size // 4, col:col + size // 4] = 240
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


def variant(trained: Path, tmp_path: Path, name: str, **search: object) -> Path:
    """The trained tiny study with its own storage and search settings (same supernet)."""
    data = yaml.safe_load(trained.read_text())
    data["output"] = str(trained.parent / "out")
    data["dataset"]["root"] = str(trained.parent / "images")
    data["search_space"] = str(trained.parent / "space.yaml")
    base = {"study_name": name, "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
            "n_trials": 6, "sampler": {"name": "nsga2", "population_size": 4, "seed": 0},
            "constraints": ["accuracy >= 0.2"]}
    data["search"] = {**base, **search}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load_trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    """Every trial stored for the study at ``path`` (its own study name and storage)."""
    import optuna

    from jointopt import Study

    s = Study.from_yaml(path)
    return optuna.load_study(study_name=s.search.study_name, storage=s.storage_url).trials


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (one installer at a time across test processes)."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- deployment checks ---------------------------------------------------------------------
def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """{plan part name: (in_features, out_features)} of each ``nn.Linear`` in ``model``."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            name = name.removeprefix("inner.")  # a 16-bit float plan's cast wrapper
            shapes[name.removesuffix(".proj") if name.startswith("patch_embed") else name] = (
                m.in_features, m.out_features)
    return shapes


def unexplained_problems(problems: list[str], model: torch.nn.Module, plan: object) -> list[str]:
    """``check_deployment``'s problems less each "<part>: weight operand <plan's float dtype>,
    plan says <i8|i4>" of an OpenVINO plan whose layer (found in ``model`` by name) has a
    shape this CPU's OpenVINO does not keep compressed (``OpenVinoRuntime.keeps_compressed``:
    the tiny test models' 16- and 32-wide layers on an AMX CPU)."""
    import re

    from jointopt.runtimes import OpenVinoRuntime

    shapes = linear_shapes(model)
    left = []
    for p in problems:
        got = re.fullmatch(r"(\S+): weight operand (\w+), plan says (i8|i4)", p)
        if got and plan.runtime == "openvino" and got[2] == plan.float_dtype \
                and got[1] in shapes and not OpenVinoRuntime.keeps_compressed(
                    *shapes[got[1]], got[3], plan.float_dtype):
            continue
        left.append(p)
    return left
