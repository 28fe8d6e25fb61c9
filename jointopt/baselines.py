"""Train a fixed model standalone: a subnet of the search space, or any timm model.

This is the reference a search result is compared against: the same data, splits, optimizer,
schedule and augmentation as the supernet (``study.train``), one model, a given epoch budget.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from jointopt.errors import UserError
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.train import accuracy, train_model

__all__ = ["build_fixed_model", "train_fixed"]


def build_fixed_model(study: Study, name: str, *, seed: int = 0) -> nn.Module:
    """``subnet:{json config}``, ``max`` / ``min`` (the space's largest / smallest
    architecture), or ``timm:<model name>`` (e.g. ``timm:resnet10t``), freshly initialised.

    A timm name may end in a JSON object of extra ``timm.create_model`` arguments, e.g.
    ``timm:deit_tiny_patch16_224{"img_size": 32, "patch_size": 4}`` (a DeiT-Tiny-shaped ViT
    on the study's image and patch size)."""
    from jointopt.supernet import ViTSupernet
    from jointopt.train import smallest_architecture

    torch.manual_seed(seed)
    data = study.data()
    num_classes, chans = len(data.classes), study.dataset.channels
    if name.startswith("timm:"):
        import json

        import timm

        model_name, brace, extra = name[5:].partition("{")
        kwargs: dict[str, Any] = {}
        if brace:
            try:
                kwargs = json.loads(brace + extra)
            except json.JSONDecodeError as e:
                raise UserError(f"--model={name!r}: the arguments after the model name are "
                                f"not a JSON object ({e})") from e
            if not isinstance(kwargs, dict):
                raise UserError(f"--model={name!r}: the arguments must be a JSON object")
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                     in_chans=chans, **kwargs)
        except (RuntimeError, TypeError) as e:
            raise UserError(f"--model={name!r}: {e}") from e
    space = study.space
    if name == "max":
        cfg = space.max_config
    elif name == "min":
        cfg = smallest_architecture(space)
    elif name.startswith("subnet:"):
        import json

        cfg = JointConfig.from_dict(json.loads(name[7:]), source="--model")
        cfg = dataclasses.replace(cfg, w_bits=32, a_bits=32)
    else:
        raise UserError(f"--model={name!r}: use max, min, subnet:<json> or timm:<name>")
    space.validate(cfg, source="--model")
    net = ViTSupernet(space.supernet, in_chans=chans, num_classes=num_classes, space=space)
    return net.extract(cfg)


def train_fixed(study: Study, name: str, *, epochs: int | None = None, seed: int = 0,
                progress: bool = True) -> dict[str, Any]:
    """Train one model on the study's train split; returns val/test accuracy and seconds."""
    model = build_fixed_model(study, name, seed=seed)
    data = study.data()
    spec = study.train if epochs is None else dataclasses.replace(study.train, epochs=epochs)
    t0 = time.perf_counter()
    train_model(model, data.train, spec, seed=seed, progress=progress, desc=name[:24])
    seconds = time.perf_counter() - t0
    return {"model": name, "epochs": spec.epochs, "train_seconds": seconds,
            "params": sum(p.numel() for p in model.parameters()),
            "val_accuracy": accuracy(model, *data.val),
            "test_accuracy": accuracy(model, *data.test), "model_object": model}
