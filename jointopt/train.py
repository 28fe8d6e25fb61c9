"""Supernet training: AutoFormer's single-path sampling with the sandwich rule.

Each step trains the largest subnet on the labels, then the smallest and one random subnet on
the largest one's soft predictions (in-place distillation, as in BigNAS / once-for-all), and
takes one AdamW step on the summed gradients. With ``train.teacher``, every one of them also
learns from a trained model's predictions on the same augmented batch (DeiT's distillation
from a CNN teacher, arXiv 2012.12877). Shared weights therefore learn to serve every
subnet, so candidates are evaluated later without retraining.

Runs are resumable: after each epoch the weights (safetensors) and the optimizer state (a
tensors-only state dict, loaded with ``weights_only=True``) are written atomically. Every
random draw of an epoch comes from a generator seeded by (seed, epoch), so a resumed run gives
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from jointopt.augment import augment, mix
from jointopt.space import JointConfig, SearchSpace
from jointopt.study import Study, TrainSpec
from jointopt.supernet import ViTSupernet

#: What training produces, as a number. Bump it with a change to the training code (this
#: module, ``augment``, ``baselines``, ``tokens``, the supernet) that changes the weights a
#: run gives, not with a refactor: cached benchmark models (``benchmarks/bench_train.py``)
#: are trained again when it moves.
TRAINING_REVISION = 1

__all__ = ["train_supernet", "train_model", "normalize", "augment", "accuracy", "predict",
           "scores", "TrainResult", "set_threads", "train_device"]


def set_threads(n: int = 0) -> int:
    """Use ``n`` intra-op threads (0 = ``OMP_NUM_THREADS`` where set, else all cores) and
    return the number set."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = n or (int(env) if env.isdigit() and int(env) > 0 else 0) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def train_device(spec: TrainSpec) -> torch.device:
    """The device ``spec.device`` names (``auto``: the first CUDA GPU torch sees, else the
    CPU)."""
    from jointopt.errors import UserError

    if spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("train.device='cuda': torch sees no CUDA GPU on this machine "
                        f"(torch {torch.__version__}); use device: auto or cpu")
    return torch.device("cuda")


def _device_of(model: nn.Module | Callable[[Tensor], Tensor]) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def normalize(x: Tensor) -> Tensor:
    """uint8 images to floats in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def _batches(n: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i: i + batch]


def _lr_at(step: int, total: int, warmup: int, spec: TrainSpec) -> float:
    """Linear warm-up, then cosine decay to ``min_lr``."""
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return spec.min_lr + 0.5 * (spec.lr - spec.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def predict(model: nn.Module | Callable[[Tensor], Tensor], images: Tensor, batch: int = 256
            ) -> Tensor:
    """Top-1 class of each uint8 image, ``int64 [N]`` (the model is put in eval mode)."""
    if isinstance(model, nn.Module):
        model.eval()
    dev = _device_of(model)  # the images go where the model is; the classes come back
    out = [model(normalize(images[i: i + batch].to(dev))).argmax(-1).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def accuracy(model: nn.Module | Callable[[Tensor], Tensor], images: Tensor, labels: Tensor,
             batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 images."""
    return int((predict(model, images, batch) == labels).sum()) / max(1, len(images))


def scores(model: nn.Module | Callable[[Tensor], Tensor], images: Tensor, labels: Tensor,
           n_classes: int, batch: int = 256) -> dict[str, float]:
    """``accuracy`` and ``balanced_accuracy`` (mean per-class recall) of one prediction pass."""
    from jointopt.metrics import balanced_accuracy

    preds = predict(model, images, batch)
    return {"accuracy": int((preds == labels).sum()) / max(1, len(images)),
            "balanced_accuracy": balanced_accuracy(preds, labels, n_classes)}


@dataclass
class TrainResult:
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]


def _kd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) of the softened distributions, scaled by T^2 (Hinton et al.) so
    the gradient's size does not depend on the temperature."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1),
                  reduction="batchmean")
    return kl * (t * t) if t != 1.0 else kl


def teacher_loss(student: Tensor, teacher: Tensor, spec: TrainSpec) -> Tensor:
    """The loss against a trained teacher's logits: soft (KL at ``teacher_temperature``) or
    hard (cross-entropy to its top-1 class, DeiT's hard distillation)."""
    if spec.teacher_mode == "hard":
        return F.cross_entropy(student, teacher.argmax(-1))
    return _kd_loss(student, teacher, spec.teacher_temperature)


def train_model(
    model: nn.Module, data: tuple[Tensor, Tensor], spec: TrainSpec, *, seed: int,
    state_path: Path | None = None, save: Callable[[int, list[dict[str, float]]], object] | None
    = None, evaluate: Callable[[], dict[str, float]] | None = None,
    subnets: Callable[[np.random.Generator], list[JointConfig]] | None = None,
    set_active: Callable[[JointConfig], object] | None = None, progress: bool = True,
    desc: str = "train", teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``model`` (a supernet with ``subnets``, or any fixed classifier without).

    Args:
        model: the network; for a supernet, ``subnets(rng)`` lists the configs of one step (the
            first is the in-place teacher) and ``set_active`` switches between them.
        teacher: a trained model every config also learns from (``spec.teacher_mode``,
            ``teacher_weight``); its logits are computed once per augmented batch and shared
            by the configs of that step.
        data: uint8 train images and labels.
        spec: optimizer, schedule and augmentation settings.
        seed: fixes every random draw; an epoch's draws depend on (seed, epoch) only.
        state_path: optimizer state for resuming; ``save(epoch, history)`` writes the weights.
        evaluate: called after each epoch; its numbers go into the history and progress bar.
    """
    set_threads(spec.threads)
    images, labels = data
    device = train_device(spec)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=spec.lr)
    steps_per_epoch = max(1, len(images) // spec.batch_size)
    total = steps_per_epoch * spec.epochs
    warmup = steps_per_epoch * spec.warmup_epochs
    start, history = 0, []
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, weights_only=True, map_location="cpu")
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        history = [dict(zip(state["history_keys"], row, strict=True))
                   for row in state["history"].tolist()]
    t0 = time.perf_counter()
    for epoch in range(start, spec.epochs):
        rng = np.random.default_rng([seed, epoch])
        model.train()
        bar = tqdm(list(_batches(len(images), spec.batch_size, rng)), disable=not progress,
                   desc=f"{desc} {epoch + 1}/{spec.epochs}", leave=False, unit="step")
        seen, t_epoch, losses = 0, time.perf_counter(), []
        for step, idx in enumerate(bar, start=epoch * steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, warmup, spec)
            x, target = mix(normalize(augment(images[idx], rng, spec)), labels[idx], rng, spec)
            x, target = x.to(device, non_blocking=True), target.to(device)
            opt.zero_grad(set_to_none=True)
            configs = subnets(rng) if subnets is not None else [None]
            t_logits: Tensor | None = None
            if teacher is not None:
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=spec.bf16):
                    t_logits = teacher(x).float()
            inplace: Tensor | None = None
            step_loss = torch.zeros((), device=device)  # read once per step: one GPU sync
            for i, cfg in enumerate(configs):
                if cfg is not None and set_active is not None:
                    set_active(cfg)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.bf16):
                    out = model(x).float()
                if i == 0 or not spec.distill or epoch < spec.distill_start:
                    loss = target.loss(out, spec.label_smoothing)
                    inplace = out.detach()
                else:
                    assert inplace is not None
                    loss = _kd_loss(out, inplace)
                if t_logits is not None:
                    w = spec.teacher_weight
                    loss = (1.0 - w) * loss + w * teacher_loss(out, t_logits, spec)
                loss.backward()
                step_loss += loss.detach()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            loss_sum = step_loss.item()
            seen += len(idx)
            losses.append(loss_sum)
            bar.set_postfix(loss=f"{loss_sum:.3f}",
                            img_s=f"{seen / (time.perf_counter() - t_epoch):.0f}")
        row = {"epoch": float(epoch + 1), "loss": float(np.mean(losses)) if losses else 0.0}
        if evaluate is not None:
            row.update(evaluate())
        history.append(row)
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{spec.epochs} " +
                       " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
        if save is not None:
            save(epoch + 1, history)
        if state_path is not None:
            keys = list(history[0])
            state = {"optimizer": _to_cpu(opt.state_dict()), "epoch": epoch + 1,
                     "history_keys": keys,
                     "history": torch.tensor([[r[k] for k in keys] for r in history],
                                             dtype=torch.float64)}
            tmp = state_path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(state_path)
    model.cpu()  # the caller scores, saves and exports on the CPU
    if teacher is not None:
        teacher.cpu()
    return TrainResult(spec.epochs - start, time.perf_counter() - t0, history)


def _to_cpu(obj: object) -> object:
    """An optimizer state dict with every tensor on the CPU (a checkpoint resumes anywhere)."""
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


ARCH_AXES = ("depth", "embed_dim", "num_heads", "mlp_ratio")


def smallest_architecture(space: SearchSpace) -> JointConfig:
    """The smallest architecture of the space, at fp32 with no merging."""
    return JointConfig(**{**space.max_config.__dict__,
                          **{k: getattr(space.min_config, k) for k in ARCH_AXES}})


def sandwich(space: SearchSpace, spec: TrainSpec) -> Callable[[np.random.Generator],
                                                              list[JointConfig]]:
    """Configs of one step: largest first (the teacher), then smallest and one random."""
    largest, smallest = space.max_config, smallest_architecture(space)

    def draw(rng: np.random.Generator) -> list[JointConfig]:
        rand = space.sample(rng, axes=ARCH_AXES)
        return [largest, smallest, rand] if spec.sandwich else [rand]

    return draw


def train_supernet(study: Study, *, progress: bool = True) -> tuple[ViTSupernet, TrainResult]:
    """Train (or resume) the study's supernet and write its checkpoint."""
    data = study.data()
    space = study.space
    torch.manual_seed(study.seed)
    net = ViTSupernet(space.supernet, in_chans=study.dataset.channels,
                      num_classes=len(data.classes), space=space)
    study.output.mkdir(parents=True, exist_ok=True)
    if study.checkpoint.is_file() and study.train_state.is_file():
        net = ViTSupernet.load(study.checkpoint)
    elif study.train_state.exists():
        study.train_state.unlink()  # optimizer state without weights cannot resume anything
    teacher = None
    if study.train.teacher is not None:
        from jointopt.baselines import load_fixed_model

        teacher = load_fixed_model(study, study.train.teacher)
        for p in teacher.parameters():
            p.requires_grad_(False)
    draw = sandwich(space, study.train)
    largest = space.max_config
    smallest = smallest_architecture(space)
    val = data.val

    def evaluate() -> dict[str, float]:
        out = {}
        for name, cfg in (("val_largest", largest), ("val_smallest", smallest)):
            net.set_active(cfg)
            out[name] = accuracy(net, *val)
        return out

    result = train_model(net, data.train, study.train, seed=study.seed,
                         state_path=study.train_state, save=lambda e, h: net.save(study.checkpoint),
                         evaluate=evaluate, subnets=draw, set_active=net.set_active,
                         progress=progress, desc=study.name, teacher=teacher)
    net.set_active(net.max_config)
    return net.eval(), result
