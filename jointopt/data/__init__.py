"""Datasets: the synthetic IC-package X-ray set and any ImageFolder tree, with fixed splits."""

from __future__ import annotations

import contextlib
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from jointopt.data.folder import DatasetSplits, load_image_folder
from jointopt.data.splits import stratified_split
from jointopt.errors import field_error

if TYPE_CHECKING:
    from jointopt.study import Study

__all__ = ["DatasetSplits", "load_image_folder", "stratified_split", "load_study_data",
           "ensure_synthetic"]

_MARKER = ".jointopt-synth.json"


def ensure_synthetic(root: Path, *, per_class: int, size: int, seed: int,
                     source: str | None = None) -> Path:
    """Generate the synthetic set into ``root`` unless the same one is already there.

    Generation writes into a sibling temporary folder and renames it, so an interrupted run
    never leaves a half-written dataset that a later run would trust. A ``root`` that holds
    anything jointopt did not write is the user's: a :class:`UserError` (naming ``source``,
    the study's ``dataset.root``), never an overwrite.
    """
    from jointopt.data.synth import generate

    spec = {"per_class": per_class, "size": size, "seed": seed}
    marker = root / _MARKER
    with contextlib.suppress(OSError, ValueError):
        if marker.is_file() and json.loads(marker.read_text()) == spec:
            return root
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not marker.is_file())):
        raise field_error(source, "dataset.root", str(root),
                          "exists and was not written by jointopt; kind: synthetic generates "
                          "its images there, so point root at a new folder (or use kind: "
                          "folder to read it)")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, per_class=per_class, size=size, seed=seed)
    (tmp / _MARKER).write_text(json.dumps(spec))
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(root)
    return root


@lru_cache(maxsize=4)
def _load(root: str, size: int, channels: int, seed: int, source: str,
          max_per_class: int | None = None, group_pattern: str = "auto") -> DatasetSplits:
    return load_image_folder(root, image_size=size, channels=channels, seed=seed, source=source,
                             max_per_class=max_per_class, group_pattern=group_pattern)


def load_study_data(study: Study) -> DatasetSplits:
    """Load a study's dataset (generating the synthetic one first when needed)."""
    ds = study.dataset
    root = study.data_root
    if ds.kind == "synthetic":
        ensure_synthetic(root, per_class=ds.per_class, size=ds.image_size, seed=ds.seed,
                         source=str(study.path))
    return _load(str(root), ds.image_size, ds.channels, ds.split_seed,
                 f"{study.path}: dataset.root", ds.max_per_class, ds.group_pattern)
