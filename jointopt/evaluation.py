"""One joint evaluation: a config in, its accuracy and costs out.

:func:`evaluate` is the only place that evaluates a config; both search controllers call it.
It builds the config's precision plan on the study's runtime (:mod:`jointopt.precision`), and
everything reads that plan: the accuracy model (:func:`jointopt.deploy.accuracy_model`: float32,
a 16-bit float copy, the calibrated Brevitas model, or dequantized integer weights), the
deployed graph that is timed, BitOPs, energy and model bytes. The deployed graph agrees with the
accuracy model on at least 99% of predictions (tests and benchmarks/precision.py).

An accuracy is computed once per process for the same supernet weights (a digest of their
bytes), config, precision plan, data, split and evaluation settings: a config that another
search on the same supernet already scored (``accuracy_cached``) only needs its costs, and its
models are built only if a cost model asks for them (``EvalContext.models``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from jointopt.cost import get_cost_model
from jointopt.cost.registry import EvalContext
from jointopt.cost.size import size_costs
from jointopt.deploy import accuracy_model
from jointopt.metrics import balanced_accuracy, per_class_recall
from jointopt.pareto import METRIC_KEYS
from jointopt.precision import PrecisionPlan, plan_for
from jointopt.runtimes import get_runtime
from jointopt.scratch import scratch_dir
from jointopt.space import JointConfig
from jointopt.study import Study
from jointopt.supernet import ViTSupernet
from jointopt.train import normalize, predict

__all__ = ["Metrics", "evaluate", "build_deployable", "quantize_subnet", "config_plan",
           "METRIC_KEYS"]

log = logging.getLogger(__name__)
_EXTRACT_LOCK = threading.Lock()



@dataclass(frozen=True)
class Metrics:
    """What one evaluation measured. ``to_dict()`` gives the keys of DESIGN.md."""

    accuracy: float
    params: int
    macs: int
    bitops: int
    model_bytes: int
    latency_ms: float
    throughput_ips: float
    latency_runtime: str
    energy_mj: float
    energy_source: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in METRIC_KEYS}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metrics:
        return cls(**{k: d[k] for k in METRIC_KEYS},
                   extra={k: v for k, v in d.items() if k not in METRIC_KEYS})


@lru_cache(maxsize=2)
def _supernet(path: str, mtime: float) -> ViTSupernet:
    return ViTSupernet.load(path)


def _load(study: Study) -> ViTSupernet:
    if not study.checkpoint.is_file():
        study.load_supernet()  # raises the clear "not trained yet" error
    study.check_checkpoint()  # channels, classes and shape fit this study
    return _supernet(str(study.checkpoint), study.checkpoint.stat().st_mtime)


def per_class_subset(labels: torch.Tensor, per_class: int, *, seed: int) -> torch.Tensor:
    """Sorted indices of at most ``per_class`` images of each class, drawn with ``seed``."""
    rng = np.random.default_rng([seed, per_class])
    y = labels.numpy()
    keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(keep)))


def config_plan(study: Study, cfg: JointConfig, runtime: str | None = None) -> PrecisionPlan:
    """The precision plan of ``cfg`` on ``runtime`` (default: the study's,
    ``evaluate.runtime``)."""
    caps = get_runtime(runtime or study.evaluation.runtime).caps()
    return plan_for(cfg.w_bits, cfg.a_bits, depth=cfg.depth, merges=cfg.merges, caps=caps,
                    io_bits=study.evaluation.io_bits,
                    stem_convs=len(study.space.supernet.stem_convs(study.dataset.channels)))


def build_deployable(study: Study, cfg: JointConfig, net: ViTSupernet
                     ) -> tuple[nn.Module, nn.Module | None]:
    """(extracted float subnet, calibrated Brevitas copy for integer weights, else None)."""
    float_cfg = dataclasses.replace(cfg, w_bits=32, a_bits=32)
    with _EXTRACT_LOCK:  # extract() switches the shared supernet's active path for a moment
        sub = net.extract(float_cfg).eval()
    sub.prop_attn = study.evaluation.proportional_attention
    return sub, quantize_subnet(study, cfg, sub)


def quantize_subnet(study: Study, cfg: JointConfig, sub: nn.Module) -> nn.Module | None:
    """The calibrated Brevitas copy of float subnet ``sub`` at ``cfg``'s integer weights
    (post-training quantization on the study's calibration batches), else None.

    ``sub`` is an extracted subnet: inherited weights here, or a standalone model of the same
    architecture (benchmark section 5 quantizes those the same way)."""
    from jointopt import quant

    if cfg.w_bits >= 16:
        return None
    io = study.evaluation.io_bits
    qmodel = quant.quantize_module(sub, w_bits=cfg.w_bits, a_bits=cfg.a_bits,
                                   io_bits=max(io, cfg.w_bits),
                                   io_names=("patch_embed", "head"))
    images = study.data().train[0]
    bs = study.evaluation.batch_size
    batches = [normalize(images[i * bs:(i + 1) * bs])
               for i in range(min(study.evaluation.calib_batches, max(1, len(images) // bs)))]
    quant.calibrate(qmodel, batches)
    return qmodel.eval()


def evaluate(study: Study, cfg: JointConfig, *, supernet: ViTSupernet | None = None,
             split: str = "val", cache: Any = None) -> Metrics:
    """Evaluate ``cfg`` as a subnet of the study's trained supernet, without retraining.

    Args:
        study: the study (data, supernet checkpoint, evaluation settings).
        cfg: the joint config; rejected by ``study.space.validate`` before any work.
        supernet: an already loaded supernet (the Ray backend passes one from its object store).
        split: ``val`` for search; ``test`` only for final reports.
        cache: a :class:`~jointopt.cost.latency.MeasureCache` (default: the user cache).
    """
    t0 = time.perf_counter()
    study.space.validate(cfg)
    net = supernet if supernet is not None else _load(study)
    data = study.data()
    images, labels = data.split(split)
    ev = study.evaluation
    if split == "val" and ev.val_per_class:
        keep = per_class_subset(labels, ev.val_per_class, seed=study.dataset.split_seed)
        images, labels = images[keep], labels[keep]
    if ev.threads:
        # Several workers on one machine: each keeps to its share of the cores. Two processes
        # that each spin all cores' worth of OpenMP threads run about 5x slower on 2 cores
        # (benchmarks/scaling.py).
        torch.set_num_threads(ev.threads)
    plan = config_plan(study, cfg)
    memo_key = _memo_key(study, cfg, net, plan, split)
    known = _known_accuracy(memo_key)
    memo_hit = known is not None
    float_model = quant_model = None
    if known is None:
        float_model, quant_model = build_deployable(study, cfg, net)
        # The extracted subnet equals the supernet's active path (to 1e-5) and, unlike the
        # shared supernet, is private to this call: concurrent trials cannot switch it under us.
        preds = predict(accuracy_model(plan, float_model, quant_model), images)
        known = _Accuracy(int((preds == labels).sum()) / max(1, len(labels)),
                          balanced_accuracy(preds, labels, net.num_classes),
                          [None if np.isnan(r) else float(r)
                           for r in per_class_recall(preds, labels, net.num_classes)])
        _remember(memo_key, known)
    t_acc = time.perf_counter()
    shape = net.shape
    ctx = EvalContext(cfg=cfg, shape=shape, in_chans=net.in_chans, num_classes=net.num_classes,
                      io_bits=ev.io_bits, batch_size=ev.batch_size, float_model=float_model,
                      quant_model=quant_model, settings=ev, plan=plan,
                      workdir=scratch_dir(),  # not the output folder: a kill leaves it
                      build=lambda: build_deployable(study, cfg, net))
    ctx.metrics.update(size_costs(cfg, shape, plan, in_chans=net.in_chans,
                                  num_classes=net.num_classes))
    lat_model = get_cost_model("latency", ev.latency)
    energy_model = get_cost_model("energy", _energy_name(ev.energy))
    if any(not type(m).__module__.startswith("jointopt.") for m in (lat_model, energy_model)):
        ctx.models()  # a user's cost model may read ctx.float_model: build it first
    if cache is not None and hasattr(lat_model, "cache"):
        lat_model.cache = cache
    ctx.metrics.update(lat_model(ctx))
    ctx.metrics.update(energy_model(ctx))
    m = ctx.metrics
    extra = {k: v for k, v in m.items() if k not in METRIC_KEYS and not k.startswith("_")}
    extra["eval_seconds"] = time.perf_counter() - t0
    extra["accuracy_seconds"] = t_acc - t0
    extra["accuracy_cached"] = memo_hit
    extra["split"] = split
    # Imbalanced sets (DeepPCB): the mean of per-class recall, and each class's recall (None for
    # a class the split does not hold) in the order of the dataset's classes.
    extra["balanced_accuracy"] = known.balanced
    extra["per_class_recall"] = list(known.recall)
    extra["precision"] = plan.precision
    return Metrics(accuracy=known.accuracy, params=int(m["params"]), macs=int(m["macs"]),
                   bitops=int(m["bitops"]), model_bytes=int(m["model_bytes"]),
                   latency_ms=float(m["latency_ms"]), throughput_ips=float(m["throughput_ips"]),
                   latency_runtime=str(m["latency_runtime"]), energy_mj=float(m["energy_mj"]),
                   energy_source=str(m["energy_source"]), extra=extra)


@dataclass(frozen=True)
class _Accuracy:
    accuracy: float
    balanced: float
    recall: list[float | None]


#: Accuracies this process computed, by :func:`_memo_key` (least recently used dropped first):
#: a config another search of the same study data and supernet weights already scored is not
#: scored again (a benchmark runs many searches on one supernet in one process).
_ACCURACY: OrderedDict[tuple[str, ...], _Accuracy] = OrderedDict()
_MEMO_SIZE = 16384
_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], str]] = \
    weakref.WeakKeyDictionary()
_MEMO_LOCK = threading.Lock()


def weights_digest(net: nn.Module) -> str:
    """SHA-1 of ``net``'s parameters and buffers (names and bytes), computed once per module
    and again only after a tensor changed in place (PyTorch's version counters)."""
    state = net.state_dict()  # detached views: they share the tensors' version counters
    versions = tuple(t._version for t in state.values())
    with _MEMO_LOCK:
        known = _WEIGHTS.get(net)
    if known is not None and known[0] == versions:
        return known[1]
    h = hashlib.sha1()
    for name, t in state.items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()
    with _MEMO_LOCK:
        _WEIGHTS[net] = (versions, digest)
    return digest


def _memo_key(study: Study, cfg: JointConfig, net: ViTSupernet, plan: PrecisionPlan,
              split: str) -> tuple[str, ...]:
    """What an accuracy depends on: the weights, the config, what each part runs in, the data
    and split, and the evaluation settings (calibration batches, io bits, proportional
    attention, the validation subset; every other setting too, to be safe)."""
    return (weights_digest(net), cfg.canonical().key(), repr(plan), split,
            str(study.data_root), repr(study.dataset), repr(study.evaluation))


def _known_accuracy(key: tuple[str, ...]) -> _Accuracy | None:
    with _MEMO_LOCK:
        if key in _ACCURACY:
            _ACCURACY.move_to_end(key)
        return _ACCURACY.get(key)


def _remember(key: tuple[str, ...], value: _Accuracy) -> None:
    with _MEMO_LOCK:
        _ACCURACY[key] = value
        while len(_ACCURACY) > _MEMO_SIZE:
            _ACCURACY.popitem(last=False)


def _energy_name(name: str) -> str:
    if name != "auto":
        return name
    from jointopt.cost.energy import rapl_available

    return "rapl" if rapl_available() else "horowitz45"
