from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ROOT

from jointopt import JointConfig, SearchSpace, ViTSupernet
from jointopt.cost.size import size_costs
from jointopt.errors import UserError
from jointopt.precision import plan_for
from jointopt.runtimes import get_runtime


@pytest.fixture(scope="module")
def quick_net() -> ViTSupernet:
    torch.manual_seed(0)
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "quickstart.yaml")
    return ViTSupernet(space.supernet, in_chans=1, num_classes=6, space=space).eval()


def test_extract_equals_active_path_for_20_sampled_configs(quick_net: ViTSupernet) -> None:
    rng = np.random.default_rng(0)
    x = torch.randn(3, 1, 64, 64)
    seen = set()
    for _ in range(20):
        cfg = quick_net.sample(rng)
        seen.add(cfg.key())
        with torch.no_grad():
            quick_net.set_active(cfg)
            active = quick_net(x)
            sub = quick_net.extract(cfg).eval()(x)
        assert torch.allclose(active, sub, atol=1e-5), cfg
    assert len(seen) >= 15
    # extract leaves the supernet's active config as it was
    assert quick_net.active_config == cfg


def test_subnets_share_weights_and_differ(quick_net: ViTSupernet) -> None:
    x = torch.randn(2, 1, 64, 64)
    big = quick_net.set_active(quick_net.max_config)(x)
    small_cfg = JointConfig(depth=2, embed_dim=64, num_heads=1, mlp_ratio=2.0)
    small = quick_net.set_active(small_cfg)(x)
    assert not torch.allclose(big, small)
    sub = quick_net.extract(small_cfg)
    n_sub = sum(p.numel() for p in sub.parameters())
    n_max = sum(p.numel() for p in quick_net.parameters())
    assert n_max / n_sub >= 10  # the space spans at least 10x in parameters
    plan = plan_for(small_cfg.w_bits, small_cfg.a_bits, depth=small_cfg.depth,
                    merges=small_cfg.merges, caps=get_runtime("openvino").caps())
    cost = size_costs(small_cfg, quick_net.shape, plan, in_chans=1, num_classes=6)
    assert cost["params"] == n_sub
    # the supernet's slice holds the same values the subnet copied
    assert torch.equal(sub.blocks[0].fc1.weight, quick_net.blocks[0].fc1.weight[:128, :64])
    quick_net.set_active(quick_net.max_config)


def test_heads_slice_q_k_v_rows_separately(quick_net: ViTSupernet) -> None:
    cfg = JointConfig(depth=1, embed_dim=96, num_heads=2, mlp_ratio=2.0)
    sub = quick_net.extract(cfg)
    full = quick_net.blocks[0].qkv.weight.view(3, 4 * 32, 192)
    got = sub.blocks[0].qkv.weight.view(3, 2 * 32, 96)
    assert torch.equal(got, full[:, :64, :96])
    assert sub.blocks[0].proj.weight.shape == (96, 64)


def test_supernet_runs_float_only(quick_net: ViTSupernet) -> None:
    cfg = JointConfig(depth=2, embed_dim=64, num_heads=1, mlp_ratio=2.0, w_bits=8, a_bits=8)
    with pytest.raises(UserError, match="w_bits=8"):
        quick_net.set_active(cfg)
    with pytest.raises(UserError, match="depth=9"):
        quick_net.set_active(JointConfig(depth=9, embed_dim=64, num_heads=1, mlp_ratio=2.0))


def test_save_load_round_trip(tmp_path, quick_net: ViTSupernet) -> None:
    path = quick_net.save(tmp_path / "net.safetensors")
    loaded = ViTSupernet.load(path)
    x = torch.randn(2, 1, 64, 64)
    cfg = JointConfig(depth=3, embed_dim=128, num_heads=[1, 2, 3], mlp_ratio=3.0)
    quick_net.set_active(cfg)
    loaded.set_active(cfg)
    with torch.no_grad():
        assert torch.equal(quick_net(x), loaded(x))
    assert loaded.space.choices == quick_net.space.choices
    quick_net.set_active(quick_net.max_config)
    with pytest.raises(UserError, match="no supernet checkpoint"):
        ViTSupernet.load(tmp_path / "missing.safetensors")
