"""Load an ImageFolder-style dataset (one sub-folder per class) into memory with fixed splits.

The layout is ``root/<class name>/**/<image>``, split 70/15/15 (stratified, seeded), or, when the
root holds exactly ``train/`` and ``test/`` (and optionally ``val/``), an official split:
``root/{train,test}/<class name>/**/<image>``. Then ``test/`` is the test split as is, and
validation is ``val/`` or else 15% of ``train/``, stratified, seeded and grouped by the board
(or scene) a file name carries, so no board sits in both train and validation.

Class names are the folder names exactly as on disk (spaces and mixed case kept) and are sorted
for the class index. Every image is decoded with PIL, converted to grayscale or RGB, resized to a
square and kept as ``uint8``. Files are listed in sorted order, so the split for a seed never
depends on the filesystem.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from jointopt.data.splits import (
    DEFAULT_FRACTIONS,
    grouped_split,
    min_per_class,
    stratified_split,
)
from jointopt.errors import UserError

__all__ = ["DatasetSplits", "IMAGE_EXTENSIONS", "AUTO_GROUP_PATTERN", "load_image_folder",
           "file_groups", "class_files", "class_names", "is_official_split"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: File stems naming their board: DeepPCB's ``train_<board>_<k>`` (the k-th crop of a board).
AUTO_GROUP_PATTERN = r"^(?:train|val|test)_(.+)_\d+$"
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
        official: True when ``root`` held its own ``train/`` and ``test/`` folders.
        groups: groups (boards) the validation split was drawn by; 0 when ungrouped.
    """

    classes: tuple[str, ...]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    skipped: int
    root: Path
    official: bool = False
    groups: int = 0

    def fingerprint(self, name: str = "train") -> str:
        """SHA-1 of one split's images and labels: equal only for the same images in order."""
        import hashlib

        images, labels = self.split(name)
        h = hashlib.sha1(np.ascontiguousarray(images.numpy()).tobytes())
        h.update(np.ascontiguousarray(labels.numpy()).tobytes())
        return h.hexdigest()

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


def _entries(root: Path, source: str | None) -> tuple[list[Path], list[Path]]:
    """Sub-folders and loose files of ``root`` (hidden ones left out), sorted by name."""
    try:
        entries = sorted(
            (p for p in root.iterdir() if not _is_hidden(p.name)), key=lambda p: p.name
        )
    except OSError as exc:
        raise _fail(source, f"cannot list dataset folder {str(root)!r}: {exc.strerror}") from None
    return [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]


def is_official_split(names: set[str]) -> bool:
    """Whether a dataset root whose sub-folders are ``names`` holds an official split."""
    return {"train", "test"} <= names


def class_names(root: Path) -> list[str]:
    """A folder dataset's class names without reading an image: the sub-folders of
    ``root/train`` with an official split, else of ``root``."""
    dirs, _ = _entries(root, None)
    if is_official_split({p.name for p in dirs}):
        dirs, _ = _entries(root / "train", None)
    return [p.name for p in dirs]


def class_files(
    root: Path, source: str | None, need: int, classes: Sequence[str] | None = None
) -> tuple[list[str], list[Path], list[int], int]:
    """Class names, image files, labels and the count of skipped files of one ImageFolder tree.

    Args:
        root: folder with one sub-folder per class.
        source: error-message prefix.
        need: fewest images a class must have.
        classes: the class names another split of the same set has; this tree must match them.
    """
    class_dirs, loose = _entries(root, source)
    if not class_dirs:
        hint = f" (found {len(loose)} files directly in it)" if loose else ""
        raise _fail(
            source, f"no class folders in {str(root)!r}{hint}; expected one sub-folder per class"
        )
    names = [p.name for p in class_dirs]
    if classes is not None and names != list(classes):
        odd = sorted(set(names) ^ set(classes))
        raise _fail(source, f"class folders of {str(root)!r} differ from the other splits' "
                            f"(not in both: {', '.join(repr(c) for c in odd)})")
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
    return names, files, labels, skipped


def _cap(labels: list[int], cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices keeping at most ``cap`` of each class, drawn with ``seed``."""
    y = np.asarray(labels)
    if cap is None:
        return np.arange(len(y))
    rng = np.random.default_rng([seed, 1])  # its own stream: the split's draws stay the same
    keep = [rng.permutation(np.flatnonzero(y == c))[:cap] for c in np.unique(y)]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def file_groups(files: Sequence[Path], pattern: str, source: str | None = None
                ) -> list[str] | None:
    """The group (board) of each file, read from its name without extension, or None.

    Args:
        files: image files.
        pattern: ``"auto"`` (:data:`AUTO_GROUP_PATTERN` when every name matches it, else no
            groups), ``"none"``, or a regular expression whose first group (or whole match,
            without groups) is the key; every name must match it.
        source: error-message prefix.
    """
    if pattern == "none":
        return None
    auto = pattern == "auto"
    try:
        rx = re.compile(AUTO_GROUP_PATTERN if auto else pattern)
    except re.error as exc:
        raise _fail(source, f"group_pattern={pattern!r}: not a regular expression ({exc})") \
            from None
    keys: list[str] = []
    for f in files:
        m = rx.search(f.stem)
        if m is None:
            if auto:
                return None
            raise _fail(source, f"group_pattern={pattern!r}: file name {f.name!r} does not match")
        keys.append(m.group(1) if rx.groups else m.group(0))
    return keys


def _decode_stack(
    files: list[Path], channels: int, size: int, source: str | None, workers: int | None
) -> torch.Tensor:
    """Decode ``files`` into one ``uint8 [N, channels, size, size]`` tensor."""
    mode = "L" if channels == 1 else "RGB"
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    arrays = _decode_all(files, mode, size, source, n_workers)
    if not arrays:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8)
    stacked = np.stack(arrays)
    stacked = stacked[:, None, :, :] if channels == 1 else stacked.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stacked))


def load_image_folder(
    root: str | Path,
    *,
    image_size: int,
    channels: int = 1,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    source: str | None = None,
    workers: int | None = None,
    max_per_class: int | None = None,
    group_pattern: str = "auto",
) -> DatasetSplits:
    """Load every image under ``root`` into memory and split it, stratified by class.

    Args:
        root: folder with one sub-folder per class, or with ``train/`` and ``test/`` (and
            optionally ``val/``) folders that each hold one sub-folder per class (an official
            split); hidden entries (``.name``) are ignored.
        image_size: side length ``S`` every image is resized to.
        channels: 1 for grayscale (``"L"``) or 3 for RGB.
        seed: seed of the split (and of the cap); the same seed and files give the same split.
        fractions: train, val and test fractions, summing to 1. With an official split and no
            ``val/``, validation is the val fraction of ``train/``.
        source: prefix for error messages naming where ``root`` came from, such as
            ``"studies/wm811k.yaml: dataset.root"``.
        workers: decoding threads; ``None`` picks ``min(8, cpu count)``. The result does not
            depend on it.
        max_per_class: keep at most this many images of each class (in each of ``train/`` and
            ``test/`` with an official split), drawn with ``seed``: for quick runs only.
        group_pattern: how validation is grouped by board with an official split; see
            :func:`file_groups`.

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
    if max_per_class is not None and (isinstance(max_per_class, bool) or max_per_class < 1):
        raise _fail(source, f"max_per_class={max_per_class!r}: must be a positive integer")

    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "folder not found"
        raise _fail(source, f"dataset {what}: {str(root)!r}")
    dirs, _ = _entries(root, source)
    names = {p.name for p in dirs}
    if is_official_split(names):
        if not names <= {"train", "val", "test"}:
            extra = sorted(names - {"train", "val", "test"})
            raise _fail(source, f"{str(root)!r} holds train/ and test/ (an official split) "
                                f"and also {', '.join(repr(e) for e in extra)}; move those out")
        return _load_official(root, image_size, channels, seed, fracs[1], source, workers,
                              max_per_class, group_pattern, has_val="val" in names)

    need = min_per_class(fracs)
    classes, files, labels, skipped = class_files(root, source, need)
    keep = _cap(labels, max_per_class, seed)
    files = [files[i] for i in keep]
    labels = [labels[i] for i in keep]
    images_all = _decode_stack(files, channels, image_size, source, workers)
    labels_all = torch.tensor(labels, dtype=torch.int64)

    parts = stratified_split(labels, fractions=fracs, seed=seed)
    train, val, test = (
        (images_all[torch.from_numpy(idx)], labels_all[torch.from_numpy(idx)]) for idx in parts
    )
    log.info("loaded %d images in %d classes from %s; skipped %d non-image files",
             len(files), len(classes), root, skipped)
    return DatasetSplits(classes=tuple(classes), train=train, val=val, test=test,
                         skipped=skipped, root=root)


def _load_official(
    root: Path, size: int, channels: int, seed: int, val_fraction: float, source: str | None,
    workers: int | None, cap: int | None, group_pattern: str, *, has_val: bool
) -> DatasetSplits:
    """``root/train``, ``root/test`` (and ``root/val``) as given; see load_image_folder."""
    classes, tr_files, tr_labels, skipped = class_files(
        root / "train", source, 1 if has_val else 2)
    parts: dict[str, tuple[list[Path], list[int]]] = {}
    for name in ("val", "test") if has_val else ("test",):
        _, files, labels, other = class_files(root / name, source, 1, classes)
        keep = _cap(labels, cap, seed)
        parts[name] = ([files[i] for i in keep], [labels[i] for i in keep])
        skipped += other
    keep = _cap(tr_labels, cap, seed)
    tr_files, tr_labels = [tr_files[i] for i in keep], [tr_labels[i] for i in keep]
    n_groups = 0
    if not has_val:
        groups = file_groups(tr_files, group_pattern, source)
        n_groups = len(set(groups)) if groups is not None else 0
        tr_idx, val_idx = grouped_split(tr_labels, groups, fraction=val_fraction, seed=seed)
        lost = sorted(set(tr_labels) - {tr_labels[i] for i in tr_idx})
        if lost:
            raise _fail(source, f"class {classes[lost[0]]!r} in {str(root / 'train')!r} has "
                                "all its images in one group: none would be left to train on")
        parts["val"] = ([tr_files[i] for i in val_idx], [tr_labels[i] for i in val_idx])
        tr_files, tr_labels = [tr_files[i] for i in tr_idx], [tr_labels[i] for i in tr_idx]
    parts["train"] = (tr_files, tr_labels)
    # One decode call for all three keeps the thread pool busy once instead of three times.
    order = ("train", "val", "test")
    every = [f for name in order for f in parts[name][0]]
    images = _decode_stack(every, channels, size, source, workers)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    start = 0
    for name in order:
        files, labels = parts[name]
        out[name] = (images[start: start + len(files)], torch.tensor(labels, dtype=torch.int64))
        start += len(files)
    log.info("loaded %d images in %d classes from %s (official split: train %d, val %d, "
             "test %d; %d groups); skipped %d non-image files", len(every), len(classes), root,
             len(out["train"][1]), len(out["val"][1]), len(out["test"][1]), n_groups, skipped)
    return DatasetSplits(classes=tuple(classes), train=out["train"], val=out["val"],
                         test=out["test"], skipped=skipped, root=root, official=True,
                         groups=n_groups)
