"""Train a fixed model standalone: a subnet of the search space, or any timm model.

This is the reference a search result is compared against: the same data, splits, optimizer,
schedule and augmentation as the supernet (``study.train``, less its teacher), one model, a
given epoch budget.

``jointopt train-fixed STUDY --model NAME`` keeps the trained weights at
``<output>/fixed/<NAME as a file name>.safetensors`` (:func:`fixed_weights_path`), with the model
name, classes, channels, image size and a fingerprint of the train split in the file's metadata.
A supernet's ``train.teacher: NAME`` reads them from there (:func:`load_fixed_model`), and
refuses weights made for another dataset or split. ``train.teacher`` may also be the path of
such a file (ending in ``.safetensors``, relative to the study file), so studies with other
output folders share one teacher.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointopt.errors import UserError
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.train import scores, train_model

__all__ = ["build_fixed_model", "train_fixed", "fixed_weights_path", "save_fixed_model",
           "load_fixed_model"]

FIXED_FORMAT = "jointopt.fixed/1"


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
                progress: bool = True, save: bool = False) -> dict[str, Any]:
    """Train one model on the study's train split; returns val/test accuracy and seconds.

    The study's ``train.teacher`` is not used: a reference (or the teacher itself) learns from
    the labels. With ``save``, the weights go to :func:`fixed_weights_path` (key ``weights``).
    """
    model = build_fixed_model(study, name, seed=seed)
    data = study.data()
    spec = dataclasses.replace(study.train, teacher=None)
    if epochs is not None:
        spec = dataclasses.replace(spec, epochs=epochs)
    t0 = time.perf_counter()
    train_model(model, data.train, spec, seed=seed, progress=progress, desc=name[:24])
    seconds = time.perf_counter() - t0
    out = {"model": name, "epochs": spec.epochs, "train_seconds": seconds,
           "params": sum(p.numel() for p in model.parameters())}
    for split in ("val", "test"):
        got = scores(model, *data.split(split), len(data.classes))
        out.update({f"{split}_{k}": v for k, v in got.items()})
    if save:
        out["weights"] = str(save_fixed_model(study, name, model, {
            "epochs": spec.epochs, "seed": seed, "val_accuracy": out["val_accuracy"],
            "test_accuracy": out["test_accuracy"]}))
    out["model_object"] = model
    return out


def fixed_weights_path(study: Study, name: str) -> Path:
    """Where ``jointopt train-fixed`` keeps model ``name``'s weights for ``study``:
    ``<output>/fixed/<name>.safetensors``, with runs of other characters than letters, digits,
    ``.``, ``_`` and ``-`` turned into ``-`` (``timm:resnet10t`` -> ``timm-resnet10t``). A long
    name is cut and given a hash of the whole name so two names never share a file."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if len(slug) > 64 or not slug:
        slug = f"{slug[:48]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return study.output / "fixed" / f"{slug}.safetensors"


def save_fixed_model(study: Study, name: str, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write ``model``'s weights atomically to :func:`fixed_weights_path`, with what it was
    trained on (and ``info``) in the safetensors metadata."""
    from safetensors.torch import save_file

    data = study.data()
    meta = {"format": FIXED_FORMAT, "model": name, "classes": json.dumps(list(data.classes)),
            "channels": str(study.dataset.channels), "image_size": str(study.dataset.image_size),
            "train_fingerprint": data.fingerprint("train"),
            "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            **{k: json.dumps(v) for k, v in info.items()}}
    if not name.startswith("timm:"):  # a slice of the space's supernet: its stem, pool, ...
        meta["supernet"] = _shape_json(study)
    path = fixed_weights_path(study, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata=meta)
    tmp.replace(path)
    return path


def _shape_json(study: Study) -> str:
    return json.dumps(dataclasses.asdict(study.space.supernet), sort_keys=True)


def load_fixed_model(study: Study, name: str, *, key: str = "train.teacher") -> nn.Module:
    """The model ``jointopt train-fixed`` trained as ``name`` for this study, in eval mode.

    Raises:
        UserError: one line, when the weights are missing or were trained for other classes,
            channels, image size or train split (a teacher that saw this study's validation or
            test images would leak them into the student).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    where = f"{study.path}: {key}={name!r}"
    by_file = name.endswith(".safetensors")
    if by_file:
        # A file written by train-fixed for a sibling study (same data, another output folder).
        path = Path(name).expanduser()
        path = path if path.is_absolute() else study.path.resolve().parent / path
    else:
        path = fixed_weights_path(study, name)
    retrain = f"train it with: jointopt train-fixed {study.path} --model '{name}'"
    if not path.is_file():
        raise UserError(f"{where}: no trained weights at {path}"
                        + ("" if by_file else f"; {retrain}"))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if by_file and meta.get("format") == FIXED_FORMAT:
        name = str(meta.get("model"))
        retrain = f"train it with: jointopt train-fixed {study.path} --model '{name}'"
    if meta.get("format") != FIXED_FORMAT or meta.get("model") != name:
        raise UserError(f"{where}: {path} is not weights of {name!r} from jointopt train-fixed; "
                        f"{retrain}")
    data = study.data()
    want = {"classes": json.dumps(list(data.classes)),
            "channels": str(study.dataset.channels),
            "image_size": str(study.dataset.image_size)}
    for field, value in want.items():
        if meta.get(field) != value:
            raise UserError(f"{where}: {path} was trained with {field} {meta.get(field)}, "
                            f"this study has {value}; {retrain}")
    if "supernet" in meta and meta["supernet"] != _shape_json(study):
        was, now = json.loads(meta["supernet"]), dataclasses.asdict(study.space.supernet)
        diff = ", ".join(f"{k} {was.get(k)!r} (now {v!r})" for k, v in now.items()
                         if was.get(k) != v)
        raise UserError(f"{where}: {path} was trained from another supernet: {diff}; "
                        f"{retrain}")
    if meta.get("train_fingerprint") != data.fingerprint("train"):
        raise UserError(f"{where}: {path} was trained on another train split than this study's "
                        f"(dataset root, split_seed or max_per_class differ); {retrain}")
    with torch.random.fork_rng():  # building seeds torch; the caller's stream stays as it was
        model = build_fixed_model(study, name, seed=0)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        why = " ".join(str(e).split())[:200]
        raise UserError(f"{where}: {path} does not fit the model ({why}); {retrain}") from None
    return model.eval()
