"""A float CNN reference (resnet10t) in int8, for section 1: reported beside fp32, no target.

Post-training static quantization with ONNX Runtime's quantizer (``quantize_static``): the
float model is exported as jointopt exports every float reference
(:func:`jointopt.quant.export_float_onnx`), pre-processed (shape inference, BatchNorm folded),
then calibrated (MinMax) on a few hundred training images into a QDQ graph: weights int8
per output channel, activations uint8 (the u8 x s8 pair that VNNI kernels take). OpenVINO reads
QDQ ONNX as int8 and runs it with its int8 kernels; :func:`int8_layers` counts the convolutions
and matmuls of the compiled graph that really take 8-bit inputs, so a record can say so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jointopt.train import normalize

#: Compute layers of OpenVINO's compiled CPU graph (its runtime model's ``layerType``).
_COMPUTE = ("Convolution", "FullyConnected", "MatMul", "Gemm")
LABEL = "openvino-int8 (QDQ from onnxruntime quantize_static)"


def quantize_qdq(model: nn.Module, calib_images: torch.Tensor, folder: Path, *,
                 batch: int = 32) -> Path:
    """``folder/int8.onnx``: ``model`` quantized to int8 QDQ, calibrated on ``calib_images``
    (uint8, as the study's splits hold them)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from jointopt.quant import export_float_onnx

    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, *calib_images.shape[1:])
    fp32 = export_float_onnx(model.eval(), example, folder / "fp32.onnx")
    prep = folder / "prep.onnx"
    quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = (
                {"input": normalize(calib_images[i:i + batch]).numpy()}
                for i in range(0, len(calib_images), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    out = folder / "int8.onnx"
    quantize_static(str(prep), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return out


def _float_plan() -> Any:
    from jointopt.precision import PrecisionPlan

    # f32 inference precision: what is not quantized stays f32 (OpenVINO would pick bf16 on a
    # bf16 CPU otherwise); the QDQ pairs make the quantized layers int8.
    return PrecisionPlan.float32("openvino")


def ov_runner(onnx_path: Path, *, threads: int, batch: int) -> Any:
    from jointopt.runtimes import get_runtime

    return get_runtime("openvino").load(onnx_path, _float_plan(), threads=threads, batch=batch)


def ov_predictions(onnx_path: Path, images: torch.Tensor, *, threads: int,
                   batch: int = 64) -> np.ndarray:
    """Top-1 of the graph on OpenVINO for uint8 images (the last batch padded)."""
    from jointopt.export import batched_top1

    return batched_top1(ov_runner(onnx_path, threads=threads, batch=batch), images, batch=batch)


def int8_layers(onnx_path: Path, *, threads: int) -> dict[str, int]:
    """How many compute layers of OpenVINO's compiled graph take 8-bit inputs, of all."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32",
                                   "INFERENCE_NUM_THREADS": threads})
    total = int8 = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        if op.get_rt_info()["layerType"].astype(str) not in _COMPUTE:
            continue
        total += 1
        src = op.inputs()[0].get_source_output().get_node()
        if src.get_rt_info()["outputPrecisions"].astype(str).split(",")[0] in ("i8", "u8"):
            int8 += 1
    return {"int8_layers": int8, "compute_layers": total}


def time_int8(onnx_path: Path, in_chans: int, img_size: int, *, batch_size: int, threads: int,
              runs: int, warmup: int, cache: Any, key: str,
              max_foreign_load: float) -> dict[str, Any]:
    """Batch-1 latency and batch throughput on OpenVINO, timed like every other model
    (``time_runner``: lock, pinned quiet cores, same run counts), cached under ``key``."""
    from jointopt.cost.latency import machine_id, store_timing, time_runner
    from jointopt.runtimes import get_runtime

    rt = get_runtime("openvino")
    full_key = (f"{machine_id()}|{rt.name}{rt.version()}|int8-qdq|generic:{key}"
                f"|c{in_chans}s{img_size}|b{batch_size}|t{threads}|n{runs}")
    hit = cache.get(full_key)
    if hit is not None:
        return {**hit, "latency_runtime": LABEL, "latency_cached": True}
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, in_chans, img_size, img_size)).astype(np.float32)
    xb = rng.standard_normal((batch_size, in_chans, img_size, img_size)).astype(np.float32)
    runners = {b: ov_runner(onnx_path, threads=threads, batch=b) for b in (1, batch_size)}
    value = time_runner(lambda x: runners[len(x)](x), x1, xb, cache=cache, threads=threads,
                        runs=runs, warmup=warmup, max_foreign_load=max_foreign_load)
    return store_timing(cache, full_key, value, LABEL)


def int8_reference(ctx: Any, study: Any, model: nn.Module, name: str, fp32: dict[str, Any],
                   *, calib_images: int = 256, cache: Any = None
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """``model`` (a trained float reference, metrics ``fp32``) quantized and measured on the
    default runtime at the study's batch size; returns its metrics and 0/1 test correctness."""
    from bench.common import threads_of
    from bench.stats import bootstrap_ci
    from jointopt.export import torch_predictions
    from jointopt.runtimes import get_runtime

    data = study.data()
    train_x = data.train[0]
    # A seeded random sample of the train split: every class, never a val or test image.
    idx = np.random.default_rng(0).permutation(len(train_x))[:calib_images]
    ev = study.evaluation
    threads = threads_of(study)
    chans, size = study.dataset.channels, study.dataset.image_size
    with tempfile.TemporaryDirectory() as tmp:
        path = quantize_qdq(model, train_x[torch.as_tensor(np.sort(idx))], Path(tmp))
        executed = int8_layers(path, threads=threads)
        timing = time_int8(path, chans, size, batch_size=ev.batch_size, threads=threads,
                           runs=ev.latency_runs, warmup=ev.warmup_runs, cache=cache or ctx.cache,
                           key=f"{name}|k{len(data.classes)}",
                           max_foreign_load=ev.max_foreign_load)
        val_x, val_y = data.val
        test_x, test_y = data.test
        val_acc = float((ov_predictions(path, val_x, threads=threads) == val_y.numpy()).mean())
        test_pred = ov_predictions(path, test_x, threads=threads)
        with torch.no_grad():
            fp32_pred = torch_predictions(model, test_x)
        nbytes = get_runtime("onnxruntime").weight_bytes([path])
    correct = (test_pred == test_y.numpy()).astype(np.int8)
    acc, lo, hi = bootstrap_ci(correct, n_boot=ctx.budget["n_boot"])
    out = {"params": fp32["params"], "macs": fp32["macs"], "bitops": fp32["macs"] * 8 * 8,
           "model_bytes": nbytes, **timing, **executed, "model": name + " (int8)",
           "epochs": fp32.get("epochs"), "calibration_images": len(idx),
           "quantizer": "onnxruntime quantize_static: QDQ, MinMax, per-channel int8 weights, "
                        "uint8 activations",
           "val_accuracy": val_acc, "test_accuracy": acc, "test_ci": [lo, hi],
           "test_agreement_with_fp32": float((test_pred == fp32_pred).mean()),
           # The generic energy counter models float32 only: no int8 figure rather than a
           # wrong one.
           "energy_model_mj": float("nan")}
    return out, correct
