from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WM811K = SHARED / "data" / "wm811k" / "images"

TINY_SPACE = {
    "supernet": {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2,
                 "head_dim": 8, "mlp_ratio": 2.0},
    "choices": {"depth": [1, 2, 3], "embed_dim": [16, 24, 32], "num_heads": [1, 2],
                "mlp_ratio": [1.0, 2.0], "tome_r": [0, 1, 2], "w_bits": [32, 16, 8, 4],
                "a_bits": [32, 16, 8]},
}


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def write_tiny_study(tmp_path: Path, **overrides: object) -> Path:
    """A study over a tiny synthetic set (6 x 12 images, 32x32) and a tiny supernet."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    study = {
        "name": "tiny", "output": "out", "seed": 0,
        "dataset": {"kind": "synthetic", "image_size": 32, "channels": 1, "per_class": 12},
        "search_space": "space.yaml",
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "bf16": False},
        "evaluate": {"calib_batches": 1, "batch_size": 8, "latency_runs": 3, "warmup_runs": 1},
    }
    study.update(overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.fixture
def tiny_study_path(tmp_path: Path) -> Path:
    return write_tiny_study(tmp_path)
