"""The int8 CNN reference of bench section 1: ONNX Runtime's static quantizer to QDQ, run on
OpenVINO's int8 kernels, agrees with the float model on an easy set."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from helpers import ROOT
from torch import nn

from jointopt.train import normalize

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench.cnn_int8 import int8_layers, ov_predictions, quantize_qdq  # noqa: E402


def _easy_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 16x16 images: class 0 has a bright left half, class 1 a bright right half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randint(0, 60, (n, 1, 16, 16), generator=g)
    for i in range(n):
        cols = slice(0, 8) if y[i] == 0 else slice(8, 16)
        x[i, :, :, cols] += 150
    return x.to(torch.uint8), y


def _trained_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 16, 2))
    x, y = _easy_set(128, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(normalize(x.clone())), y).backward()
        opt.step()
    return model.eval()


def test_int8_cnn_runs_int8_on_openvino_and_agrees_with_float(tmp_path: Path) -> None:
    model = _trained_cnn()
    calib, _ = _easy_set(64, 1)
    path = quantize_qdq(model, calib, tmp_path)
    text = path.read_bytes()
    assert b"QuantizeLinear" in text and b"DequantizeLinear" in text
    # OpenVINO executes the convolution and the linear layer on 8-bit inputs, not floats.
    layers = int8_layers(path, threads=1)
    assert layers["int8_layers"] >= 2, layers
    assert int8_layers(tmp_path / "fp32.onnx", threads=1)["int8_layers"] == 0
    x, y = _easy_set(100, 2)  # 100: the last batch of 64 is padded
    with torch.no_grad():
        fp32 = model(normalize(x.clone())).argmax(-1).numpy()
    assert (fp32 == y.numpy()).mean() >= 0.95  # the set is easy: the float model learned it
    int8 = ov_predictions(path, x, threads=1)
    assert int8.shape == (100,)
    assert (int8 == fp32).mean() >= 0.95
