"""Tests for jointopt.data.folder.load_image_folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import WM811K
from PIL import Image

from jointopt.data.folder import DatasetSplits, load_image_folder
from jointopt.errors import UserError

WM811K_CLASSES = {
    "Center",
    "Donut",
    "Edge Local",
    "Edge Ring",
    "Local",
    "Scratch",
    "near full",
    "none",
    "random",
}


def _write(
    path: Path,
    *,
    size: tuple[int, int] = (20, 20),
    mode: str = "L",
    value: int = 0,
    fmt: str | None = None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mode == "L":
        arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    else:
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path, format=fmt)


def _make(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    for name, n in counts.items():
        for i in range(n):
            _write(root / name / f"img_{i:03d}{ext}", value=i)
    return root


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _all_labels(ds: DatasetSplits) -> torch.Tensor:
    return torch.cat([ds.train[1], ds.val[1], ds.test[1]])


def test_class_names_kept_and_sorted(tmp_path: Path) -> None:
    counts = {"near full": 8, "Edge Local": 9, "Center": 10, "none": 7}
    _make(tmp_path, counts)
    (tmp_path / ".hidden").mkdir()
    _write(tmp_path / ".hidden" / "x.png")
    _write(tmp_path / "Center" / ".ghost.png")
    ds = load_image_folder(tmp_path, image_size=8)
    assert ds.classes == ("Center", "Edge Local", "near full", "none")
    assert ds.root == tmp_path
    labels = _all_labels(ds)
    assert labels.dtype == torch.int64
    for i, name in enumerate(ds.classes):
        assert int((labels == i).sum()) == counts[name]
    assert len(labels) == sum(counts.values())


def test_labels_match_pixels(tmp_path: Path) -> None:
    # each class is a constant grey level, so the pixels tell which class an image came from
    levels = {"a": 10, "B": 100, "c c": 200}
    for name, level in levels.items():
        for i in range(7):
            d = tmp_path / name
            d.mkdir(exist_ok=True)
            Image.new("L", (12, 12), level).save(d / f"{i}.png")
    ds = load_image_folder(tmp_path, image_size=6)
    assert ds.classes == ("B", "a", "c c")
    for split in ("train", "val", "test"):
        images, labels = ds.split(split)
        for img, lab in zip(images, labels, strict=True):
            assert int(img[0, 0, 0]) == levels[ds.classes[int(lab)]]


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_modes_and_sizes_resized(tmp_path: Path, channels: int) -> None:
    specs = [((40, 40), "L"), ((9, 13), "RGB"), ((32, 24), "RGB"), ((16, 16), "L")]
    for cls in ("x", "y"):
        for i in range(8):
            size, mode = specs[i % len(specs)]
            ext = [".png", ".JPG", ".bmp", ".tif"][i % 4]
            _write(tmp_path / cls / f"{i}{ext}", size=size, mode=mode, value=i)
    Image.new("P", (10, 10)).save(tmp_path / "x" / "pal.gif")
    Image.new("RGBA", (50, 30), (1, 2, 3, 4)).save(tmp_path / "y" / "alpha.webp")
    ds = load_image_folder(tmp_path, image_size=16, channels=channels)
    for split in ("train", "val", "test"):
        images, labels = ds.split(split)
        assert images.dtype == torch.uint8
        assert images.shape[1:] == (channels, 16, 16)
        assert images.shape[0] == labels.shape[0] > 0
    assert len(_all_labels(ds)) == 18


def test_grayscale_to_rgb_repeats_channel(tmp_path: Path) -> None:
    for i in range(7):
        _write(tmp_path / "k" / f"{i}.png", size=(8, 8), value=i)
    ds = load_image_folder(tmp_path, image_size=8, channels=3)
    img = ds.train[0][0]
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_16bit_grayscale_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[:4] = 257 * 100
    for i in range(7):
        d = tmp_path / "k"
        d.mkdir(exist_ok=True)
        Image.fromarray(arr).save(d / f"{i}.png")
    ds = load_image_folder(tmp_path, image_size=8)
    img = ds.train[0][0, 0]
    assert int(img[0, 0]) == 100 and int(img[7, 7]) == 255


def test_non_images_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _make(tmp_path, {"a": 7, "b": 7})
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / "labels.csv").write_text("x,y")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("loose file in root")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored, not counted
    with caplog.at_level(logging.INFO, logger="jointopt.data.folder"):
        ds = load_image_folder(tmp_path, image_size=4)
    assert ds.skipped == 4
    assert len(_all_labels(ds)) == 14
    assert any("skipped 4" in r.getMessage() for r in caplog.records)


def test_nested_folders_in_class_are_loaded(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 4, "b": 7})
    for i in range(3):
        _write(tmp_path / "a" / "sub" / f"n{i}.png", value=i)
    ds = load_image_folder(tmp_path, image_size=4)
    assert int((_all_labels(ds) == 0).sum()) == 7


def test_splits_deterministic_stratified_and_seeded(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 20, "b": 13, "c": 7})
    one = load_image_folder(tmp_path, image_size=8, seed=3)
    two = load_image_folder(tmp_path, image_size=8, seed=3, workers=1)
    for split in ("train", "val", "test"):
        assert torch.equal(one.split(split)[0], two.split(split)[0])
        assert torch.equal(one.split(split)[1], two.split(split)[1])
        assert set(one.split(split)[1].tolist()) == {0, 1, 2}
    assert len(one.train[1]) + len(one.val[1]) + len(one.test[1]) == 40
    other = load_image_folder(tmp_path, image_size=8, seed=4)
    assert not torch.equal(one.train[0], other.train[0])


def test_split_unknown_name(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 7})
    ds = load_image_folder(tmp_path, image_size=4)
    with pytest.raises(UserError, match="unknown split 'training'"):
        ds.split("training")


def _one_line_error(root: Path, **kwargs: object) -> str:
    before = _tree(root) if root.exists() else None
    with pytest.raises(UserError) as info:
        load_image_folder(root, image_size=kwargs.pop("image_size", 8), **kwargs)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    if before is not None:
        assert _tree(root) == before  # nothing written
    return msg


def test_error_missing_folder(tmp_path: Path) -> None:
    root = tmp_path / "no such"
    msg = _one_line_error(root)
    assert str(root) in msg and "not found" in msg
    msg = _one_line_error(root, source="studies/x.yaml: dataset.root")
    assert msg.startswith("studies/x.yaml: dataset.root: ") and str(root) in msg


def test_error_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file.png"
    root.write_text("x")
    msg = _one_line_error(root)
    assert str(root) in msg and "not a folder" in msg


def test_error_no_class_folders(tmp_path: Path) -> None:
    _write(tmp_path / "loose.png")
    (tmp_path / ".git").mkdir()
    msg = _one_line_error(tmp_path)
    assert str(tmp_path) in msg and "no class folders" in msg


def test_error_class_too_small(tmp_path: Path) -> None:
    _make(tmp_path, {"Edge Ring": 9, "near full": 4})
    (tmp_path / "near full" / "x.txt").write_text("not an image")
    msg = _one_line_error(tmp_path, source="studies/x.yaml: dataset.root")
    assert msg.startswith("studies/x.yaml: dataset.root: ")
    assert "'near full'" in msg and "has 4 images" in msg and "at least 7" in msg


def test_error_class_too_small_custom_fractions(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 9})
    msg = _one_line_error(tmp_path, fractions=(0.8, 0.1, 0.1))
    assert "'a'" in msg and "has 9 images" in msg and "at least 10" in msg


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a png at all", None],
    ids=["empty", "garbage", "truncated"],
)
def test_error_corrupt_image(tmp_path: Path, content: bytes | None) -> None:
    _make(tmp_path, {"a": 7, "b": 7})
    bad = tmp_path / "b" / "bad\nname 01.png"
    if content is None:
        _write(bad, size=(64, 64), value=1)
        bad.write_bytes(bad.read_bytes()[:80])
    else:
        bad.write_bytes(content)
    msg = _one_line_error(tmp_path)
    assert "cannot read image" in msg and "bad\\nname 01.png" in msg


def test_error_bad_arguments(tmp_path: Path) -> None:
    _make(tmp_path, {"a": 7})
    assert "channels=2" in _one_line_error(tmp_path, channels=2)
    assert "image_size=0" in _one_line_error(tmp_path, image_size=0)
    assert "fractions" in _one_line_error(tmp_path, fractions=(0.5, 0.5, 0.0))


def test_wm811k_real_data() -> None:
    if not WM811K.is_dir():
        pytest.skip(f"real WM-811K folder not present at {WM811K} (needs ../shared)")
    start = time.perf_counter()
    ds = load_image_folder(WM811K, image_size=32, channels=3, source="wm811k")
    elapsed = time.perf_counter() - start
    assert set(ds.classes) == WM811K_CLASSES and len(ds.classes) == 9
    labels = _all_labels(ds)
    assert len(labels) == 902
    for split in ("train", "val", "test"):
        images, lab = ds.split(split)
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
        assert set(lab.tolist()) == set(range(9))
    assert elapsed < 30, f"loading took {elapsed:.1f}s"
