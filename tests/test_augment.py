"""Opt-in augmentation: random resized crops, mixup, cutmix, and their use with distillation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import write_tiny_study
from torch import Tensor, nn

from jointopt import Study
from jointopt.augment import Targets, augment, mix, random_resized_crop
from jointopt.errors import UserError
from jointopt.study import TrainSpec
from jointopt.train import normalize, train_model

PLAIN = TrainSpec(hflip=False, vflip=False, shift=0)


def test_rrc_full_scale_is_identity_and_seeded() -> None:
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    same = random_resized_crop(x, np.random.default_rng(0), (1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(same, x)
    a = random_resized_crop(x, np.random.default_rng(1), (0.5, 0.9))
    b = random_resized_crop(x, np.random.default_rng(1), (0.5, 0.9))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and not torch.equal(a, x)


def test_rrc_keeps_a_centred_defect() -> None:
    x = torch.zeros(64, 1, 32, 32, dtype=torch.uint8)
    x[:, :, 12:20, 12:20] = 250  # an 8x8 "defect" in the middle, a quarter of the side
    out = random_resized_crop(x, np.random.default_rng(0), (0.8, 1.0))
    # every crop still holds the defect, scaled up by at most 1/sqrt(0.8 * 3/4)
    assert bool((out.flatten(1).amax(1) >= 240).all())
    bright = (out > 128).flatten(1).sum(1).float()
    assert bool((bright >= 60).all()) and bool((bright <= 64 / (0.8 * 0.75) + 16).all())


def test_settings_off_draw_nothing() -> None:
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    out = augment(x, rng, PLAIN)
    xm, t = mix(normalize(out), torch.arange(8), rng, PLAIN)
    assert rng.bit_generator.state == before
    assert torch.equal(out, x) and t.lam == 1.0 and torch.equal(xm, normalize(x))


def test_mixup_mixes_images_and_labels_alike() -> None:
    x = torch.randn(6, 1, 8, 8)
    y = torch.arange(6)
    spec = dataclasses.replace(PLAIN, mixup=0.4)
    out, t = mix(x, y, np.random.default_rng(0), spec)
    assert 0 < t.lam < 1 and not torch.equal(t.y, t.y2)
    perm = t.y2  # labels are 0..5, so y2 is the permutation
    assert torch.allclose(out, t.lam * x + (1 - t.lam) * x[perm])
    logits = torch.randn(6, 6)
    want = t.lam * F.cross_entropy(logits, y) + (1 - t.lam) * F.cross_entropy(logits, perm)
    assert torch.allclose(t.loss(logits), want)
    assert torch.allclose(Targets.plain(y).loss(logits), F.cross_entropy(logits, y))


def test_cutmix_weight_is_the_uncovered_share() -> None:
    x = torch.arange(6, dtype=torch.float32)[:, None, None, None].expand(6, 1, 16, 16).clone()
    spec = dataclasses.replace(PLAIN, cutmix=1.0)
    for seed in range(10):
        out, t = mix(x, torch.arange(6), np.random.default_rng(seed), spec)
        own = (out == x).flatten(1).float().mean(1)
        moved = t.y2 != t.y
        assert torch.allclose(own[moved], torch.full_like(own[moved], t.lam))


def test_both_alphas_pick_one_per_batch() -> None:
    x = torch.arange(4, dtype=torch.float32)[:, None, None, None].expand(4, 1, 8, 8).clone()
    spec = dataclasses.replace(PLAIN, mixup=1.0, cutmix=1.0)
    kinds = set()
    for seed in range(20):
        out, t = mix(x, torch.arange(4), np.random.default_rng(seed), spec)
        # cutmix leaves whole original pixel values; mixup blends them
        kinds.add(bool(torch.isin(out, x).all()))
    assert kinds == {True, False}


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(64, 3)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


def test_teacher_sees_the_mixed_batch() -> None:
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(32) % 3
    spec = dataclasses.replace(PLAIN, epochs=1, batch_size=16, warmup_epochs=0, bf16=False,
                               mixup=0.8, rrc_scale=(0.8, 1.0), teacher_weight=0.5)
    student, teacher = _Recorder(), _Recorder()
    train_model(student, (images, labels), spec, seed=0, progress=False, teacher=teacher)
    assert len(student.seen) == len(teacher.seen) == 2
    plain = normalize(images)
    for s, t in zip(student.seen, teacher.seen, strict=True):
        assert torch.equal(s, t)
        # mixed: no row of the batch is any plain image
        assert not any(torch.equal(row, p) for row in s for p in plain)


def test_augmentation_settings_checked(tmp_path: Path) -> None:
    ok = Study.from_yaml(write_tiny_study(tmp_path, train={"rrc_scale": [0.8, 1], "mixup": 0.2,
                                                           "cutmix": 1.0}))
    assert ok.train.rrc_scale == (0.8, 1.0) and ok.train.cutmix == 1.0
    for bad in ({"rrc_scale": [0.9, 0.8]}, {"rrc_scale": [0, 1]}, {"rrc_scale": 0.8},
                {"rrc_scale": [0.8, "x"]}, {"mixup": -1}):
        with pytest.raises(UserError, match=f"train.{next(iter(bad))}="):
            Study.from_yaml(write_tiny_study(tmp_path, train=bad))
