from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention


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


@pytest.fixture
def tiny_study_path(tmp_path: Path) -> Path:
    return write_tiny_study(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _measurement_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the CLI processes they start) share a throw-away measurement cache."""
    import os

    os.environ["JOINTOPT_CACHE"] = str(tmp_path_factory.mktemp("cache"))


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


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny study whose supernet is trained once per session (6 x 40 easy 32x32 images)."""
    from jointopt import Study
    from jointopt.train import train_supernet

    root = tmp_path_factory.mktemp("trained")
    write_pattern_folder(root / "images")
    path = write_tiny_study(
        root, dataset={"kind": "folder", "root": "images", "image_size": 32, "channels": 1},
        # 24 epochs: the largest subnet reaches ~1.0 on validation (12 gave ~0.65 on test),
        # so deployment tests compare models with real decision margins.
        train={"epochs": 24, "batch_size": 16, "warmup_epochs": 1, "lr": 0.003, "bf16": False,
               "shift": 0, "label_smoothing": 0.0, "distill_start": 12},
        search={"n_trials": 6, "sampler": {"name": "random", "seed": 0}})
    train_supernet(Study.from_yaml(path), progress=False)
    return path


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """A throw-away PostgreSQL server on a free loopback port for the session (see
    tests/_postgres.py): ``.url`` (SQLAlchemy URL, password made up at runtime), ``.stop()``,
    ``.start()``. Skips, with the reason, only when no server can be provided."""
    from _postgres import require_postgres  # tests/ is on sys.path for its conftest

    server = require_postgres()
    try:
        yield server
    finally:
        server.close()
