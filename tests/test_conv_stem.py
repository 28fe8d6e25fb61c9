"""The convolutional stem (supernet.stem: conv): shared, sliced to embed_dim, extractable."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY_SPACE, unexplained_problems

from jointopt import JointConfig, SearchSpace, ViTSupernet
from jointopt.errors import UserError
from jointopt.supernet.layers import ConvStem, PatchEmbed


def _space(**supernet: object) -> SearchSpace:
    data = copy.deepcopy(TINY_SPACE)
    data["supernet"].update(supernet)
    return SearchSpace.from_dict(data, source="space.yaml")


def _net(**supernet: object) -> ViTSupernet:
    torch.manual_seed(0)
    space = _space(**supernet)
    return ViTSupernet(space.supernet, in_chans=1, num_classes=6, space=space)


def test_default_stays_patch() -> None:
    net = _net()
    assert net.shape.stem == "patch" and isinstance(net.patch_embed, PatchEmbed)


def test_conv_stem_shape_and_extract_equals_active_path() -> None:
    net = _net(stem="conv", stem_width=4)
    stem = net.patch_embed
    assert isinstance(stem, ConvStem) and len(stem.convs) == 3  # patch 8 = 2^3
    assert [u.conv.out_channels for u in stem.convs] == [4, 8, 16]
    # train a little so BatchNorm's running statistics are not the identity
    x = torch.randn(8, 1, 32, 32)
    net.train()
    for _ in range(3):
        net(x)
    net.eval()
    rng = np.random.default_rng(0)
    for _ in range(10):
        cfg = net.sample(rng)
        with torch.no_grad():
            net.set_active(cfg)
            active = net(x)
            sub = net.extract(cfg).eval()
            assert torch.allclose(active, sub(x), atol=1e-5), cfg
        assert isinstance(sub.patch_embed, ConvStem)
        assert sub.patch_embed.proj.weight.shape == (cfg.embed_dim, 16)
        # the convolutions are shared whole: the subnet holds copies of the same weights
        assert torch.equal(sub.patch_embed.convs[1].conv.weight, stem.convs[1].conv.weight)
        assert torch.equal(sub.patch_embed.convs[2].bn.running_var, stem.convs[2].bn.running_var)
    # the subnet's stem is its own copy
    assert sub.patch_embed.convs[0].conv.weight.data_ptr() != stem.convs[0].conv.weight.data_ptr()


def test_conv_stem_complexity_counts_its_modules() -> None:
    net = _net(stem="conv", stem_width=4)
    stem = net.patch_embed
    assert isinstance(stem, ConvStem)
    small = JointConfig(depth=1, embed_dim=16, num_heads=1, mlp_ratio=1.0)
    sub = net.extract(small)
    cost = sub.patch_embed.complexity(16)
    assert sum(c.params for c in cost) == sum(p.numel() for p in sub.patch_embed.parameters())
    by = {c.name: c for c in stem.complexity(16)}
    # 32x32 -> 16x16 -> 8x8 -> 4x4; 3x3 kernels; the projection is 1x1 over 16 channels
    assert by["convs.0.conv"].macs == 16 * 16 * 1 * 9 * 4
    assert by["convs.1.conv"].macs == 8 * 8 * 4 * 9 * 8
    assert by["convs.2.conv"].macs == 4 * 4 * 8 * 9 * 16
    assert by["proj"].macs == 4 * 4 * 16 * 16 and by["proj"].params == 16 * 16 + 16
    assert stem.complexity(32)[-1].macs == 2 * by["proj"].macs  # follows embed_dim
    patch = _net().patch_embed
    assert isinstance(patch, PatchEmbed)
    assert patch.complexity(16)[0].macs == 16 * (8 * 8) * 16


def test_conv_stem_checkpoint_round_trip(tmp_path: Path) -> None:
    net = _net(stem="conv", stem_width=4).eval()
    path = net.save(tmp_path / "net.safetensors")
    back = ViTSupernet.load(path)
    assert back.shape.stem == "conv" and back.shape.stem_width == 4
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_stem_settings_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="supernet.stem='hybrid'"):
        _space(stem="hybrid")
    with pytest.raises(UserError, match="supernet.patch_size=6.*power of 2"):
        data = copy.deepcopy(TINY_SPACE)
        data["supernet"].update(stem="conv", img_size=36, patch_size=6)
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
        SearchSpace.from_yaml(tmp_path / "s.yaml")
    with pytest.raises(UserError, match="supernet.stem_width=0"):
        _space(stem="conv", stem_width=0)


def _conv_study(trained_tiny: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                stem: str = "conv"):
    """The tiny study with this stem in tmp_path, and an untrained supernet for it."""
    from jointopt import Study

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((trained_tiny.parent / "space.yaml").read_text())
    data["supernet"].update(stem=stem, stem_width=4)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(data))
    study_data = yaml.safe_load(trained_tiny.read_text())
    study_data.update(output=str(tmp_path / "out"), search_space=str(tmp_path / "space.yaml"))
    study_data["dataset"]["root"] = str(trained_tiny.parent / "images")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study_data))
    study = Study.from_yaml(tmp_path / "study.yaml")
    torch.manual_seed(0)
    net = ViTSupernet(study.space.supernet, in_chans=1, num_classes=len(study.data().classes),
                      space=study.space).eval()
    return study, net


def test_conv_stem_summary_and_size_counts_match_the_modules(trained_tiny: Path,
                                                             tmp_path: Path) -> None:
    """A conv-stem subnet's parameter count is its modules' and its MACs add the stem's
    convolutions (SupernetShape.stem_convs) to the projection the patch stem would have."""
    from jointopt.cost.size import layer_costs, size_costs
    from jointopt.evaluation import config_plan
    from jointopt.report.summary import subnet_rows

    study, net = _conv_study(trained_tiny, tmp_path)
    rows = subnet_rows(study, net)
    for row in rows:
        cfg = JointConfig.from_dict(row["config"])
        assert row["params"] == sum(p.numel() for p in net.extract(cfg).parameters())
    cfg = study.space.max_config
    stem = {c.name: c.macs for c in net.patch_embed.complexity(cfg.embed_dim)}
    plan = config_plan(study, cfg)
    assert [p.name for p in plan.parts[:4]] == [
        "patch_embed.convs.0", "patch_embed.convs.1", "patch_embed.convs.2", "patch_embed"]
    layers = {lc.name: lc.macs for lc in layer_costs(cfg, net.shape, plan, in_chans=1,
                                                     num_classes=net.num_classes)}
    for k in range(3):
        assert layers[f"patch_embed.convs.{k}"] == stem[f"convs.{k}.conv"]
    assert layers["patch_embed"] == stem["proj"]
    assert rows[0]["macs"] == size_costs(cfg, net.shape, plan, in_chans=1,
                                         num_classes=net.num_classes)["macs"]


@pytest.mark.parametrize("precision", ["w32a32", "w8a8", "w4a16"])
def test_conv_stem_evaluates_and_deploys_what_its_plan_says(trained_tiny: Path, tmp_path: Path,
                                                            precision: str) -> None:
    """Search, evaluation and export take a conv stem: its convolutions run in float at every
    precision (the plan says so), the deployed graph runs that plan, and the runtime predicts
    what the accuracy model predicts."""
    import dataclasses

    from jointopt import evaluate
    from jointopt.export import deploy_member, runtime_predictions, torch_predictions
    from jointopt.precision import parse_precision

    study, net = _conv_study(trained_tiny, tmp_path)
    w, a = parse_precision(precision)
    cfg = dataclasses.replace(study.space.max_config, w_bits=w, a_bits=a, tome_r=0)
    m = evaluate(study, cfg, supernet=net)
    assert 0.0 <= m.accuracy <= 1.0 and m.macs > 0 and m.latency_ms > 0
    (tmp_path / "member").mkdir()
    member = deploy_member(study, cfg, net, tmp_path / "member")
    # Every part runs what the plan says. model_bytes: a tiny model's few folded constants
    # (norm scales, the cls token) move its ratio a few percent whatever the stem, so the conv
    # stem's is held to the patch stem's for the same config.
    # (less a tiny layer whose weights this CPU's OpenVINO converts at load: helpers)
    assert not [p for p in unexplained_problems(member.check["problems"], member.model,
                                                member.plan) if "model_bytes" not in p], \
        member.check["problems"]
    patch_study, patch_net = _conv_study(trained_tiny, tmp_path / "p", stem="patch")
    (tmp_path / "patch").mkdir()
    patch = deploy_member(patch_study, cfg, patch_net, tmp_path / "patch")
    assert abs(member.check["model_bytes_ratio"] - patch.check["model_bytes_ratio"]) < 0.01
    convs = [p for p in member.plan.parts if p.kind == "conv"]
    assert len(convs) == 3 and all(p.compute == member.plan.float_dtype for p in convs)
    images = study.data().val[0]
    agree = (runtime_predictions(study, member.plan, member.onnx, images)
             == torch_predictions(member.model, images)).mean()
    assert agree >= (0.9 if member.plan.float_dtype != "f32" else 0.97)


def test_timings_of_a_conv_stem_are_not_a_patch_stems() -> None:
    """The measurement cache is shared by studies: the same config on a conv stem is another
    model to time (a conv-stem study once read the patch stem's cached timings)."""
    import dataclasses

    from jointopt.cost.latency import timing_key
    from jointopt.cost.registry import EvalContext
    from jointopt.precision import plan_for
    from jointopt.runtimes import get_runtime

    keys = []
    for stem in ("patch", "conv"):
        space = _space(stem=stem, stem_width=4)
        cfg = dataclasses.replace(space.max_config, w_bits=8, a_bits=8)
        plan = plan_for(8, 8, depth=cfg.depth, merges=cfg.merges,
                        caps=get_runtime("openvino").caps(),
                        stem_convs=len(space.supernet.stem_convs(1)))
        ctx = EvalContext(cfg=cfg, shape=space.supernet, in_chans=1, num_classes=6, io_bits=8,
                          batch_size=8, float_model=None, quant_model=None, plan=plan)
        keys.append(timing_key(ctx, 1, 3))
    assert keys[0] != keys[1] and "stem" not in keys[0]
