"""Fixtures only; the helpers they use (and that tests import) are in tests/helpers/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import write_pattern_folder, write_tiny_study


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention


@pytest.fixture
def tiny_study_path(tmp_path: Path) -> Path:
    return write_tiny_study(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _measurement_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the CLI processes they start) share a throw-away measurement cache."""
    import os

    os.environ["JOINTOPT_CACHE"] = str(tmp_path_factory.mktemp("cache"))


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
    tests/helpers/postgres.py): ``.url`` (SQLAlchemy URL, password made up at runtime), ``.stop()``,
    ``.start()``. Skips, with the reason, only when no server can be provided."""
    from helpers.postgres import require_postgres

    server = require_postgres()
    try:
        yield server
    finally:
        server.close()
