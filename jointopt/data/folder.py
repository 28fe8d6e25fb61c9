"""Load an ImageFolder-style dataset (one sub-folder per class) into memory with fixed splits.

The layout is ``root/<class name>/**/<image>``. Class names are the folder names exactly as on
disk (spaces and mixed case kept) and are sorted for the class index. Every image is decoded with
PIL, converted to grayscale or RGB, resized to a square and kept as ``uint8``. Files are listed in
sorted order, so the split for a seed never depends on the filesystem.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from jointopt.data.splits import DEFAULT_FRACTIONS, min_per_class, stratified_split
from jointopt.errors import UserError

__all__ = ["DatasetSplits", "IMAGE_EXTENSIONS", "load_image_folder"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset held in memory, split into train, val and test.

    Attributes:
        classes: class folder names exactly as on disk, sorted; label ``i`` is ``classes[i]``.
        train: ``(images, labels)``; images ``uint8 [N, C, S, S]``, labels ``int64 [N]``.
        val: same layout as ``train``.
        test: same layout as ``train``.
        skipped: files not loaded: non-image files, and loose files directly in ``root``.
        root: the folder the data came from.
    """

    classes: tuple[str, ...]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    skipped: int
    root: Path

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(images, labels)`` of one split.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.
        """
        if name not in SPLIT_NAMES:
            raise UserError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


def _fail(source: str | None, text: str) -> UserError:
    """A one-line :class:`UserError`, prefixed with ``source`` when given."""
    line = f"{source}: {text}" if source else text
    return UserError(line.replace("\r", " ").replace("\n", " "))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _list_files(class_dir: Path) -> tuple[list[Path], int]:
    """Image files under ``class_dir`` (recursively, sorted) and the count of other files.

    Args:
        class_dir: one class folder.
    """
    images: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Path(dirpath) / name)
            else:
                skipped += 1
    return images, skipped


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert to ``"L"`` or ``"RGB"``; 16-bit grayscale is scaled down instead of clipped."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.uint16)
        img = Image.fromarray((arr // 257).astype(np.uint8), mode="L")
    return img if img.mode == mode else img.convert(mode)


def _decode(path: Path, mode: str, size: int, source: str | None) -> np.ndarray:
    """Decode one image to a ``uint8`` array ``[size, size]`` or ``[size, size, 3]``.

    Args:
        path: the image file.
        mode: PIL mode, ``"L"`` or ``"RGB"``.
        size: output side length.
        source: error-message prefix.
    """
    try:
        with Image.open(path) as img:
            img.load()
            out = _to_mode(img, mode)
            if out.size != (size, size):
                shrink = out.width > size or out.height > size
                method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
                out = out.resize((size, size), method)
            return np.asarray(out, dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise _fail(source, f"cannot read image {str(path)!r}: {why}") from None


def _decode_all(
    files: list[Path], mode: str, size: int, source: str | None, workers: int
) -> list[np.ndarray]:
    """Decode ``files`` in order, in contiguous chunks over ``workers`` threads.

    Args:
        files: image files, in the order wanted.
        mode: PIL mode, ``"L"`` or ``"RGB"``.
        size: output side length.
        source: error-message prefix.
        workers: threads; 1 decodes in this thread.
    """

    def run(chunk: list[Path]) -> list[np.ndarray]:
        return [_decode(p, mode, size, source) for p in chunk]

    if workers <= 1 or len(files) < 2 * workers:
        return run(files)
    step = -(-len(files) // (4 * workers))
    chunks = [files[i : i + step] for i in range(0, len(files), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # map yields in submission order, so the first bad file (in sorted order) is reported
        return [arr for part in pool.map(run, chunks) for arr in part]


def load_image_folder(
    root: str | Path,
    *,
    image_size: int,
    channels: int = 1,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    source: str | None = None,
    workers: int | None = None,
) -> DatasetSplits:
    """Load every image under ``root`` into memory and split it, stratified by class.

    Args:
        root: folder with one sub-folder per class; hidden entries (``.name``) are ignored.
        image_size: side length ``S`` every image is resized to.
        channels: 1 for grayscale (``"L"``) or 3 for RGB.
        seed: seed of the stratified split; the same seed and files give the same split.
        fractions: train, val and test fractions, summing to 1.
        source: prefix for error messages naming where ``root`` came from, such as
            ``"studies/wm811k.yaml: dataset.root"``.
        workers: decoding threads; ``None`` picks ``min(8, cpu count)``. The result does not
            depend on it.

    Returns:
        The splits, with images ``uint8 [N, channels, S, S]`` and labels ``int64 [N]``.

    Raises:
        UserError: one line naming the folder, class or file that is wrong.
    """
    if channels not in (1, 3):
        raise _fail(source, f"channels={channels!r}: must be 1 (grayscale) or 3 (RGB)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise _fail(source, f"image_size={image_size!r}: must be a positive integer")
    fracs = tuple(float(f) for f in fractions)
    if len(fracs) != 3 or min(fracs) <= 0 or abs(sum(fracs) - 1.0) > 1e-6:
        raise _fail(source, f"fractions={fracs!r}: need three positive numbers summing to 1")

    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "folder not found"
        raise _fail(source, f"dataset {what}: {str(root)!r}")

    try:
        entries = sorted(
            (p for p in root.iterdir() if not _is_hidden(p.name)), key=lambda p: p.name
        )
    except OSError as exc:
        raise _fail(source, f"cannot list dataset folder {str(root)!r}: {exc.strerror}") from None
    class_dirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file()]
    if not class_dirs:
        hint = f" (found {len(loose)} files directly in it)" if loose else ""
        raise _fail(
            source, f"no class folders in {str(root)!r}{hint}; expected one sub-folder per class"
        )

    need = min_per_class(fracs)
    files: list[Path] = []
    labels: list[int] = []
    skipped = len(loose)
    for label, class_dir in enumerate(class_dirs):
        images, other = _list_files(class_dir)
        skipped += other
        if len(images) < need:
            raise _fail(
                source,
                f"class {class_dir.name!r} in {str(root)!r} has {len(images)} images; "
                f"need at least {need} so that every split gets one",
            )
        files.extend(images)
        labels.extend([label] * len(images))

    mode = "L" if channels == 1 else "RGB"
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    arrays = _decode_all(files, mode, image_size, source, n_workers)

    stacked = np.stack(arrays)
    if channels == 1:
        stacked = stacked[:, None, :, :]
    else:
        stacked = stacked.transpose(0, 3, 1, 2)
    images_all = torch.from_numpy(np.ascontiguousarray(stacked))
    labels_all = torch.tensor(labels, dtype=torch.int64)

    parts = stratified_split(labels, fractions=fracs, seed=seed)
    train, val, test = (
        (images_all[torch.from_numpy(idx)], labels_all[torch.from_numpy(idx)]) for idx in parts
    )
    log.info(
        "loaded %d images in %d classes from %s; skipped %d non-image files",
        len(files),
        len(class_dirs),
        root,
        skipped,
    )
    return DatasetSplits(
        classes=tuple(p.name for p in class_dirs),
        train=train,
        val=val,
        test=test,
        skipped=skipped,
        root=root,
    )
