from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, unexplained_problems

from jointopt import Study
from jointopt.evaluation import METRIC_KEYS, build_deployable, evaluate
from jointopt.export import deploy_member, runtime_predictions, torch_predictions
from jointopt.train import accuracy


def test_evaluate_baseline_has_every_key_and_supernet_accuracy(trained_tiny: Path) -> None:
    study = Study.from_yaml(trained_tiny)
    net = study.load_supernet()
    base = study.space.max_config
    m = evaluate(study, base, supernet=net).to_dict()
    assert set(METRIC_KEYS) <= set(m)
    net.set_active(base)
    assert m["accuracy"] == accuracy(net, *study.data().val)
    assert m["latency_runtime"] == "openvino-f32"
    assert m["precision"] == "w32a32" and m["energy_b1_mj"] > m["energy_mj"]
    assert m["energy_source"] in ("rapl", "model:horowitz45")
    assert m["accuracy"] > 0.3  # the tiny supernet learned something (chance is 1/6)
    # balanced accuracy is the mean of the per-class recalls of the same predictions
    recall = m["per_class_recall"]
    assert len(recall) == len(study.data().classes)
    assert m["balanced_accuracy"] == pytest.approx(
        sum(r for r in recall if r is not None) / sum(r is not None for r in recall))


def test_cli_evaluate_json(trained_tiny: Path) -> None:
    cfg = {"depth": 2, "embed_dim": 24, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": [2, 1],
           "w_bits": 8, "a_bits": 8}
    r = run_cli("evaluate", str(trained_tiny), "--config", json.dumps(cfg), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(METRIC_KEYS) <= set(out)
    assert out["latency_runtime"] == "openvino-int8"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"num_heads": 3}, "num_heads=3"),
        ({"tome_r": 9}, "tome_r=9"),
        ({"w_bits": 5}, "w_bits=5"),
        ({"w_bits": 32, "a_bits": 8}, "a_bits=8"),
        ({"depth": 4, "num_heads": 1}, "depth=4"),
    ],
)
def test_cli_bad_configs_exit_2(trained_tiny: Path, change: dict, needle: str) -> None:
    cfg = {"depth": 3, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2.0, **change}
    r = run_cli("evaluate", str(trained_tiny), "--config", json.dumps(cfg))
    assert r.returncode == 2
    assert needle in r.stderr and r.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(("bits", "r"), [((32, 32), 2), ((16, 16), 0), ((8, 8), 2),
                                         ((4, 16), 2), ((4, 32), 0)])
def test_deployed_parity_on_the_tiny_set(trained_tiny: Path, tmp_path: Path, bits, r) -> None:
    """The runtime's deployed graph predicts what the accuracy model predicts, and runs what
    the plan says (the members `jointopt export` writes)."""
    study = Study.from_yaml(trained_tiny)
    cfg = dataclasses.replace(study.space.max_config, tome_r=r, w_bits=bits[0], a_bits=bits[1])
    member = deploy_member(study, cfg, study.load_supernet(), tmp_path)
    assert not unexplained_problems(member.check["problems"], member.model, member.plan), \
        member.check["problems"]  # (less a tiny layer OpenVINO converts at load: helpers)
    assert {p.name for p in member.files} == {"model.xml", "model.bin"}
    data = study.data()  # every image (240): on the 36 validation images one flip is 2.8%
    images = torch.cat([data.train[0], data.val[0], data.test[0]])
    agree = (runtime_predictions(study, member.plan, member.onnx, images)
             == torch_predictions(member.model, images)).mean()
    # 16-bit float rounds at other points in the runtime (its norms and softmax accumulate
    # in float32) than in PyTorch: an untrained-margin tiny model may flip a few images.
    assert agree >= (0.97 if member.plan.float_dtype != "f32" else 0.99)


def test_int8_agrees_with_float_and_error_grows_as_bits_fall(trained_tiny: Path) -> None:
    study = Study.from_yaml(trained_tiny)
    net = study.load_supernet()
    data = study.data()
    # Every image of the tiny set (240): on its 36-image validation split one flip is 2.8%.
    images = torch.cat([data.train[0], data.val[0], data.test[0]])
    from jointopt.train import normalize

    x = normalize(images)
    base = study.space.max_config
    with torch.no_grad():
        ref = build_deployable(study, base, net)[0](x)
        errs = []
        for b in (8, 6, 4, 3, 2):
            q = build_deployable(study, dataclasses.replace(base, w_bits=b, a_bits=b), net)[1]
            out = q(x)
            if b == 8:
                assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.98
            errs.append(float(((out - ref) ** 2).mean()))
        w32 = build_deployable(study, base, net)
        assert w32[1] is None and torch.equal(w32[0](x), ref)
    assert errs == sorted(errs), errs
    assert np.all(np.diff(errs) > 0)


@pytest.mark.parametrize("precision", ["w8a8", "w4a16", "w16a16"])
def test_as_deployed_quantizes_a_float_model_as_the_search_does(trained_tiny: Path,
                                                                 precision: str) -> None:
    """Section 5 ranks standalone models at integer precisions: a float model of a config's
    architecture goes through the same plan, quantization and calibration as inherited weights,
    so the same weights give the same logits, and other weights give other logits."""
    import copy

    from jointopt.export import as_deployed, deployed_model
    from jointopt.space import JointConfig
    from jointopt.train import normalize

    study = Study.from_yaml(trained_tiny)
    net = study.load_supernet()
    cfg = study.space.validate(JointConfig.from_dict({
        "depth": 2, "embed_dim": study.space.choices["embed_dim"][0], "num_heads": 1,
        "mlp_ratio": study.space.choices["mlp_ratio"][0], "tome_r": 0,
        "precision": precision}))
    x = normalize(study.data().val[0][:16])
    float_cfg = dataclasses.replace(cfg, w_bits=32, a_bits=32)
    with torch.no_grad():
        ref = deployed_model(study, cfg, net)(x)
        same = as_deployed(study, cfg, net.extract(float_cfg).eval())(x)
        torch.testing.assert_close(same, ref)
        other = copy.deepcopy(net.extract(float_cfg).eval())
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(as_deployed(study, cfg, other)(x), ref, atol=1e-3)


def test_a_known_accuracy_is_reused_until_the_weights_change(trained_tiny: Path,
                                                             tmp_path: Path) -> None:
    """evaluate() scores a config once per supernet weights, data and settings: a second
    supernet object loaded from the same checkpoint reuses it (and a timing not cached yet is
    still measured, its model built then); an in-place change of the weights, or another
    split, scores again."""
    from jointopt.cost.latency import MeasureCache

    study = Study.from_yaml(trained_tiny)
    cfg = dataclasses.replace(study.space.max_config, tome_r=1, w_bits=8, a_bits=8)
    first = evaluate(study, cfg, supernet=study.load_supernet(),
                     cache=MeasureCache(tmp_path / "a.sqlite"))
    net = study.load_supernet()
    again = evaluate(study, cfg, supernet=net, cache=MeasureCache(tmp_path / "b.sqlite"))
    assert not first.extra["accuracy_cached"] and again.extra["accuracy_cached"]
    assert again.accuracy == first.accuracy
    assert again.extra["per_class_recall"] == first.extra["per_class_recall"]
    assert again.extra["latency_cached"] is False and again.latency_ms > 0  # measured anew
    test = evaluate(study, cfg, supernet=net, split="test",
                    cache=MeasureCache(tmp_path / "b.sqlite"))
    assert not test.extra["accuracy_cached"]
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(-1.0)  # the classes' scores flip: the accuracy must be computed again
    changed = evaluate(study, cfg, supernet=net, cache=MeasureCache(tmp_path / "b.sqlite"))
    assert not changed.extra["accuracy_cached"] and changed.accuracy != first.accuracy
