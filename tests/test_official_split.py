"""Folder datasets with an official train/test split, board-grouped validation, per-class cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, SHARED
from PIL import Image

from jointopt.data.folder import AUTO_GROUP_PATTERN, class_files, file_groups, load_image_folder
from jointopt.data.splits import grouped_split
from jointopt.errors import UserError

DEEPPCB = SHARED / "data" / "deeppcb" / "images"
ORIGIN = {"train": 10, "test": 20, "val": 30}


def _official(root: Path, *, boards: dict[str, range], classes: tuple[str, ...] = ("a", "b", "c"),
              per_board: int = 2) -> Path:
    """DeepPCB-like tree: ``root/<split>/<class>/<split>_<board>_<k>.png``.

    Pixels say where an image came from: [0, 0] its split folder, [0, 1] its board, [0, 2] its
    index on the board, [0, 3] its class.
    """
    for split, ids in boards.items():
        for ci, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for b in ids:
                for k in range(per_board):
                    idx = k * len(classes) + ci
                    img = np.full((8, 8), 128, dtype=np.uint8)
                    img[0, :4] = (ORIGIN[split], b, idx, ci)
                    Image.fromarray(img).save(d / f"{split}_{b:08d}_{idx:02d}.png")
    return root


def test_official_split_keeps_test_as_is(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 41), "test": range(100, 110)})
    ds = load_image_folder(tmp_path, image_size=8, seed=0)
    assert ds.official and ds.classes == ("a", "b", "c") and ds.groups == 40
    # test/ is the test split, whole and alone
    test_imgs, test_labels = ds.test
    assert len(test_labels) == 10 * 3 * 2
    assert set(test_imgs[:, 0, 0, 0].tolist()) == {ORIGIN["test"]}
    assert torch.equal(test_imgs[:, 0, 0, 3].long(), test_labels)
    # validation is about 15% of train/, stratified
    n_train, n_val = len(ds.train[1]), len(ds.val[1])
    assert n_train + n_val == 40 * 3 * 2
    for c in range(3):
        share = int((ds.val[1] == c).sum()) / 80
        assert 0.1 <= share <= 0.2, share
    for images, labels in (ds.train, ds.val):
        assert torch.equal(images[:, 0, 0, 3].long(), labels)


def test_no_test_image_reaches_train_or_val(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 21), "test": range(1, 21)})  # same board ids
    for seed in range(4):
        for cap in (None, 5):
            ds = load_image_folder(tmp_path, image_size=8, seed=seed, max_per_class=cap)
            for split in ("train", "val"):
                assert set(ds.split(split)[0][:, 0, 0, 0].tolist()) == {ORIGIN["train"]}
            assert set(ds.test[0][:, 0, 0, 0].tolist()) == {ORIGIN["test"]}


def test_validation_grouped_by_board(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 31), "test": range(50, 53)}, per_board=3)
    for seed in range(3):
        ds = load_image_folder(tmp_path, image_size=8, seed=seed)
        train_boards = set(ds.train[0][:, 0, 0, 1].tolist())
        val_boards = set(ds.val[0][:, 0, 0, 1].tolist())
        assert val_boards and not train_boards & val_boards
        assert train_boards | val_boards == set(range(1, 31))
        assert set(ds.val[1].tolist()) == {0, 1, 2}
    # "none" turns grouping off: with 3 crops a board, some board then lands on both sides
    ds = load_image_folder(tmp_path, image_size=8, seed=0, group_pattern="none")
    assert ds.groups == 0
    assert set(ds.train[0][:, 0, 0, 1].tolist()) & set(ds.val[0][:, 0, 0, 1].tolist())


def test_val_folder_used_as_is(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 6), "val": range(6, 8), "test": range(8, 9)})
    ds = load_image_folder(tmp_path, image_size=8)
    assert len(ds.train[1]) == 5 * 6 and len(ds.val[1]) == 2 * 6 and len(ds.test[1]) == 6
    assert set(ds.val[0][:, 0, 0, 0].tolist()) == {ORIGIN["val"]}


def test_max_per_class_caps_each_split_folder_seeded(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 21), "test": range(30, 40)})
    one = load_image_folder(tmp_path, image_size=8, seed=1, max_per_class=7)
    two = load_image_folder(tmp_path, image_size=8, seed=1, max_per_class=7, workers=1)
    other = load_image_folder(tmp_path, image_size=8, seed=2, max_per_class=7)
    for c in range(3):
        assert int((one.train[1] == c).sum() + (one.val[1] == c).sum()) == 7
        assert int((one.test[1] == c).sum()) == 7
    for split in ("train", "val", "test"):
        assert torch.equal(one.split(split)[0], two.split(split)[0])
    assert not torch.equal(one.test[0], other.test[0])
    # a cap above the class size changes nothing
    full = load_image_folder(tmp_path, image_size=8, seed=1)
    big = load_image_folder(tmp_path, image_size=8, seed=1, max_per_class=10_000)
    assert torch.equal(full.train[0], big.train[0]) and torch.equal(full.test[0], big.test[0])


def test_max_per_class_without_official_split(tmp_path: Path) -> None:
    for cls, n in (("x", 30), ("y", 12)):
        for i in range(n):
            d = tmp_path / cls
            d.mkdir(exist_ok=True)
            Image.new("L", (8, 8), i).save(d / f"{i}.png")
    ds = load_image_folder(tmp_path, image_size=8, max_per_class=10)
    labels = torch.cat([ds.train[1], ds.val[1], ds.test[1]])
    assert int((labels == 0).sum()) == 10 and int((labels == 1).sum()) == 10
    assert not ds.official


def test_official_split_errors(tmp_path: Path) -> None:
    _official(tmp_path, boards={"train": range(1, 5), "test": range(5, 6)})
    (tmp_path / "extra").mkdir()
    with pytest.raises(UserError, match="official split.*'extra'"):
        load_image_folder(tmp_path, image_size=8)
    (tmp_path / "extra").rmdir()
    (tmp_path / "test" / "a").rename(tmp_path / "test" / "z")
    with pytest.raises(UserError, match="differ.*'a', 'z'"):
        load_image_folder(tmp_path, image_size=8, source="s.yaml: dataset.root")
    (tmp_path / "test" / "z").rename(tmp_path / "test" / "a")
    with pytest.raises(UserError, match="group_pattern='q\\(': not a regular"):
        load_image_folder(tmp_path, image_size=8, group_pattern="q(")
    with pytest.raises(UserError, match="does not match"):
        load_image_folder(tmp_path, image_size=8, group_pattern=r"^board_(\d+)$")
    with pytest.raises(UserError, match="max_per_class=0"):
        load_image_folder(tmp_path, image_size=8, max_per_class=0)


def test_grouped_split_counts_and_groups() -> None:
    labels = np.repeat([0, 1, 2], [100, 40, 7])
    keep, held = grouped_split(labels, None, fraction=0.15, seed=0)
    assert np.bincount(labels[held]).tolist() == [15, 6, 1]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(len(labels)))
    groups = np.array([f"g{i // 4}" for i in range(len(labels))])
    a = grouped_split(labels, groups, fraction=0.15, seed=3)
    b = grouped_split(labels, groups, fraction=0.15, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not set(groups[a[0]]) & set(groups[a[1]])


def test_file_groups_auto_only_when_every_name_matches() -> None:
    names = [Path("train_00041000_04.png"), Path("train_00041000_11.png"),
             Path("train_12000101_00.png")]
    assert file_groups(names, "auto") == ["00041000", "00041000", "12000101"]
    assert file_groups([*names, Path("img_3.png")], "auto") is None
    assert file_groups(names, "none") is None
    assert file_groups(names, r"_(\d{5})") == ["00041", "00041", "12000"]
    assert AUTO_GROUP_PATTERN.startswith("^")


def test_deeppcb_boards_and_split() -> None:
    """The real DeepPCB names carry their board, and the grouped split keeps boards apart."""
    if not DEEPPCB.is_dir():
        pytest.skip(f"DeepPCB not present at {DEEPPCB} (needs ../shared)")
    classes, files, labels, _ = class_files(DEEPPCB / "train", None, 2)
    assert classes == ["copper", "mousebite", "normal", "open", "pin_hole", "short", "spur"]
    assert len(files) == 12612
    groups = file_groups(files, "auto")
    assert groups is not None and len(set(groups)) == 1000
    keep, held = grouped_split(labels, groups, fraction=0.15, seed=0)
    g = np.asarray(groups)
    assert not set(g[keep]) & set(g[held])
    y = np.asarray(labels)
    share = np.bincount(y[held], minlength=7) / np.bincount(y, minlength=7)
    assert np.all(np.abs(share - 0.15) < 0.02), share
    _, test_files, _, _ = class_files(DEEPPCB / "test", None, 1, classes)
    assert not {f.name for f in test_files} & {f.name for f in files}
    ds = load_image_folder(DEEPPCB, image_size=64, max_per_class=20)
    assert ds.official and ds.train[0].shape[1:] == (1, 64, 64)
    assert len(ds.test[1]) == 7 * 20 and len(ds.train[1]) + len(ds.val[1]) == 7 * 20


def test_study_dataset_fields(tmp_path: Path) -> None:
    from helpers import write_tiny_study

    from jointopt import Study

    _official(tmp_path / "images", boards={"train": range(1, 21), "test": range(30, 35)})
    ds = {"kind": "folder", "root": "images", "image_size": 32, "channels": 1,
          "max_per_class": 9, "group_pattern": "auto"}
    study = Study.from_yaml(write_tiny_study(tmp_path, dataset=ds))
    data = study.data()
    assert data.official and len(data.test[1]) == 3 * 9
    for bad, why in (({"max_per_class": 0}, "max_per_class=0"),
                     ({"group_pattern": "(("}, "group_pattern='\\(\\('")):
        with pytest.raises(UserError, match=why):
            Study.from_yaml(write_tiny_study(tmp_path, dataset={**ds, **bad}))


def test_deeppcb_study_parses() -> None:
    from jointopt import Study

    study = Study.from_yaml(ROOT / "studies/deeppcb.yaml")
    assert study.data_root == DEEPPCB.resolve()
    assert study.space.supernet.img_size == study.dataset.image_size == 64
    assert study.dataset.channels == 1
    assert [o.key for o in study.search.objectives] == ["accuracy", "throughput_ips", "energy_mj"]


def test_trained_supernet_loads_on_an_official_split(tmp_path: Path) -> None:
    """The checkpoint check counts the classes under ``train/``, not ``train/`` and ``test/``
    themselves (it once refused DeepPCB's supernet: "holds 2 classes ... has 7")."""
    from helpers import write_tiny_study

    from jointopt import Study
    from jointopt.train import train_supernet

    _official(tmp_path / "images", boards={"train": range(1, 11), "test": range(20, 23)})
    path = write_tiny_study(tmp_path, dataset={"kind": "folder", "root": "images",
                                               "image_size": 32, "channels": 1},
                            train={"epochs": 1, "batch_size": 16, "warmup_epochs": 1,
                                   "bf16": False})
    train_supernet(Study.from_yaml(path), progress=False)
    net = Study.from_yaml(path).load_supernet()
    assert net.num_classes == 3
