"""Distillation from a trained teacher (train.teacher): storage, checks, and the training loss."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import write_pattern_folder, write_tiny_study
from safetensors import safe_open
from torch import Tensor, nn

from jointopt import Study
from jointopt.baselines import fixed_weights_path, load_fixed_model, train_fixed
from jointopt.errors import UserError
from jointopt.supernet import ViTSupernet
from jointopt.train import normalize, sandwich, teacher_loss, train_model, train_supernet

FOLDER = {"kind": "folder", "root": "images", "image_size": 32, "channels": 1}
FAST = {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "bf16": False, "shift": 0}


def _study(tmp_path: Path, **train: object) -> Study:
    if not (tmp_path / "images").is_dir():
        write_pattern_folder(tmp_path / "images", per_class=10)
    return Study.from_yaml(write_tiny_study(tmp_path, dataset=FOLDER, train={**FAST, **train}))


def test_train_fixed_saves_teacher_at_stable_path(tmp_path: Path) -> None:
    study = _study(tmp_path)
    out = train_fixed(study, "timm:resnet10t", progress=False, save=True)
    path = fixed_weights_path(study, "timm:resnet10t")
    assert out["weights"] == str(path) and path == study.output / "fixed/timm-resnet10t.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "timm:resnet10t" and meta["channels"] == "1"
    assert meta["image_size"] == "32" and len(json.loads(meta["classes"])) == 6
    loaded = load_fixed_model(study, "timm:resnet10t")
    model = out["model_object"].eval()
    x = normalize(study.data().val[0][:4])
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    # long or odd names get distinct, safe file names
    odd = fixed_weights_path(study, 'timm:deit_tiny_patch16_224{"img_size": 32, "patch_size": 4}')
    assert "/" not in odd.name and '"' not in odd.name and len(odd.stem) <= 64


def test_teacher_checks_are_one_line(tmp_path: Path) -> None:
    study = _study(tmp_path)
    with pytest.raises(UserError, match=r"no trained weights.*train-fixed .* --model 'min'"):
        load_fixed_model(study, "min")
    train_fixed(study, "min", progress=False, save=True)
    load_fixed_model(study, "min")
    # the same name in a space with another supernet (here its pool; a stem likewise): the
    # weights may even fit, but they are not the model asked for
    import yaml

    space = study.space_path.read_text()
    pool = study.space.supernet.pool
    other = "max" if pool != "max" else "avg"
    data = yaml.safe_load(space)
    data["supernet"]["pool"] = other
    study.space_path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=rf"another supernet: pool '{pool}' \(now '{other}'\)"):
        load_fixed_model(Study.from_yaml(study.path), "min")
    study.space_path.write_text(space)
    # another split of the same images: the teacher may have trained on this study's val/test
    other = Study.from_yaml(write_tiny_study(tmp_path, dataset={**FOLDER, "split_seed": 1},
                                             train=FAST))
    with pytest.raises(UserError, match="another train split") as info:
        load_fixed_model(other, "min")
    assert "\n" not in str(info.value)
    # other classes (a new folder: loaded data is cached per root)
    import shutil

    shutil.copytree(tmp_path / "images", tmp_path / "renamed")
    for i in range(6):
        (tmp_path / "renamed" / f"class {i}").rename(tmp_path / "renamed" / f"kind {i}")
    renamed = Study.from_yaml(write_tiny_study(tmp_path, dataset={**FOLDER, "root": "renamed"},
                                               train=FAST))
    with pytest.raises(UserError, match="trained with classes"):
        load_fixed_model(renamed, "min")


def test_teacher_settings_checked(tmp_path: Path) -> None:
    for bad, needle in (({"teacher_mode": "medium"}, "train.teacher_mode='medium'"),
                        ({"teacher_weight": 0}, "train.teacher_weight=0"),
                        ({"teacher_weight": 1.5}, "train.teacher_weight=1.5"),
                        ({"teacher_temperature": 0}, "train.teacher_temperature=0"),
                        ({"teacher": " "}, "train.teacher=' '")):
        with pytest.raises(UserError, match=needle.replace("(", r"\(")):
            Study.from_yaml(write_tiny_study(tmp_path, train={**FAST, **bad}))
    ok = Study.from_yaml(write_tiny_study(tmp_path, train={**FAST, "teacher": None}))
    assert ok.train.teacher is None


def test_teacher_loss_modes() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    spec = dataclasses.replace(Study.__dataclass_fields__["train"].default_factory(),
                               teacher_mode="hard")
    assert torch.allclose(teacher_loss(s, t, spec), F.cross_entropy(s, t.argmax(-1)))
    soft = dataclasses.replace(spec, teacher_mode="soft", teacher_temperature=2.0)
    want = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    assert torch.allclose(teacher_loss(s, t, soft), want)
    assert float(teacher_loss(t, t, soft)) == pytest.approx(0.0, abs=1e-6)


class _Counting(nn.Module):
    """A fixed random teacher that counts its forward passes."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(32 * 32, classes)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.lin(x.flatten(1)) * 3


def _train_tiny(study: Study, labels: Tensor, teacher: nn.Module | None, **spec: object
                ) -> dict[str, Tensor]:
    torch.manual_seed(0)
    net = ViTSupernet(study.space.supernet, in_chans=1, num_classes=6, space=study.space)
    train_spec = dataclasses.replace(study.train, **spec)
    images = study.data().train[0]
    train_model(net, (images, labels), train_spec, seed=0, subnets=sandwich(study.space,
                train_spec), set_active=net.set_active, progress=False, teacher=teacher)
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_every_subnet_learns_from_teacher_logits_shared_per_step(tmp_path: Path) -> None:
    study = _study(tmp_path, epochs=2, distill_start=0)
    labels = study.data().train[1]
    shuffled = labels[torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))]
    teacher = _Counting(6)
    only = _train_tiny(study, labels, teacher, teacher_mode="hard", teacher_weight=1.0)
    steps = 2 * (len(labels) // study.train.batch_size)
    assert teacher.calls == steps  # once per augmented batch, not once per subnet (3 a step)
    # With weight 1 every subnet (largest, smallest, random) learns from the teacher alone:
    # the labels no longer matter.
    same = _train_tiny(study, shuffled, _Counting(6), teacher_mode="hard", teacher_weight=1.0)
    assert all(torch.equal(only[k], same[k]) for k in only)
    # Mixed with the labels, they do; and soft differs from hard.
    mixed = _train_tiny(study, labels, _Counting(6), teacher_mode="hard", teacher_weight=0.5)
    mixed2 = _train_tiny(study, shuffled, _Counting(6), teacher_mode="hard", teacher_weight=0.5)
    assert not all(torch.equal(mixed[k], mixed2[k]) for k in mixed)
    soft = _train_tiny(study, labels, _Counting(6), teacher_mode="soft", teacher_weight=1.0)
    assert not all(torch.equal(only[k], soft[k]) for k in only)


def test_supernet_trains_with_a_fixed_teacher(tmp_path: Path) -> None:
    study = _study(tmp_path)
    train_fixed(study, "min", progress=False, save=True)
    with_teacher = _study(tmp_path, teacher="min", teacher_mode="soft", teacher_weight=0.7)
    net, result = train_supernet(with_teacher, progress=False)
    assert result.epochs_run == 1 and with_teacher.checkpoint.is_file()
    # a sibling study (another output folder) names the same file by its path
    shared = _study(tmp_path, teacher="out/fixed/min.safetensors")
    assert isinstance(load_fixed_model(shared, shared.train.teacher or ""), nn.Module)
    missing = _study(tmp_path, teacher="max")
    with pytest.raises(UserError, match="train.teacher='max': no trained weights"):
        train_supernet(missing, progress=False)
