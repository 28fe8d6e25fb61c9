"""Token merging inside the supernet's own blocks (ToMe, arXiv 2210.09461)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import ROOT

from jointopt import JointConfig, SearchSpace, ViTSupernet
from jointopt.space import merge_limits

SPACE = SearchSpace.from_yaml(ROOT / "search_spaces" / "quickstart.yaml")


@pytest.fixture(scope="module")
def net() -> ViTSupernet:
    torch.manual_seed(0)
    return ViTSupernet(SPACE.supernet, in_chans=1, num_classes=6, space=SPACE).eval()


def _reference_forward(net: ViTSupernet, x: torch.Tensor) -> torch.Tensor:
    """Plain pre-norm ViT written out by hand, no merging code anywhere."""
    tokens = net.embed(x)
    for blk in net.blocks[: net.active_config.depth]:
        h = blk.norm1(tokens)
        b, n, _ = h.shape
        qkv = blk.qkv(h).reshape(b, n, 3, blk.num_heads, blk.head_dim).permute(2, 0, 3, 1, 4)
        att = torch.softmax((qkv[0] * blk.head_dim**-0.5) @ qkv[1].transpose(-2, -1), dim=-1)
        tokens = tokens + blk.proj((att @ qkv[2]).transpose(1, 2).reshape(b, n, -1))
        tokens = tokens + blk.fc2(torch.nn.functional.gelu(blk.fc1(blk.norm2(tokens))))
    patches = tokens[:, 1:]
    return net.head(net.norm(patches.amax(dim=1) if net.pool == "max" else patches.mean(dim=1)))


def test_r0_gives_exactly_the_unmerged_outputs(net: ViTSupernet) -> None:
    x = torch.randn(4, 1, 64, 64)
    with torch.no_grad():
        for cfg in (SPACE.max_config, JointConfig(depth=3, embed_dim=96, num_heads=[1, 2, 3],
                                                  mlp_ratio=3.0, tome_r=0)):
            net.set_active(cfg)
            assert torch.equal(net(x), _reference_forward(net, x))


def test_token_count_after_each_block(net: ViTSupernet) -> None:
    cfg = JointConfig(depth=5, embed_dim=128, num_heads=2, mlp_ratio=2.0,
                      tome_r=[8, 0, 16, 4, 12])
    SPACE.validate(cfg)
    net.set_active(cfg)
    x = net.embed(torch.randn(2, 1, 64, 64))
    counts = []
    size = None
    with torch.no_grad():
        for blk, r in zip(net.blocks[:5], cfg.merges, strict=True):
            x, size, _ = blk(x, size, r)
            counts.append(x.shape[1])
    assert counts == [57, 57, 41, 37, 25]
    assert [n for n, _ in merge_limits(65, cfg.merges)] == [65, 57, 57, 41, 37]
    assert size is not None and torch.all(size.sum(dim=1) == 65)  # every patch accounted for


def test_extracted_subnet_merges_like_the_supernet(net: ViTSupernet) -> None:
    rng = np.random.default_rng(5)
    x = torch.randn(3, 1, 64, 64)
    merged = 0
    for _ in range(10):
        cfg = SPACE.sample(rng, axes=("depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r"))
        merged += sum(cfg.merges) > 0
        with torch.no_grad():
            net.set_active(cfg)
            a = net(x)
            b = net.extract(cfg).eval()(x)
        assert torch.allclose(a, b, atol=1e-5), cfg
    assert merged >= 5


def _duplicate_run(net: ViTSupernet, merges: tuple[int, ...], prop: bool):
    torch.manual_seed(1)
    cfg = dataclasses.replace(SPACE.max_config, tome_r=merges)
    net.set_active(cfg)
    tokens = net.embed(torch.randn(2, 1, 64, 64))  # cls + patches + positions
    dup_src = 10  # even index: set A; appended at index 65 (odd): set B
    tokens = torch.cat([tokens, tokens[:, dup_src:dup_src + 1]], dim=1)
    net.prop_attn = prop
    try:
        with torch.no_grad():
            out, size, source = net.forward_blocks(tokens, track_source=True)
    finally:
        net.prop_attn = True
    return out, size, source


def test_exact_size_bookkeeping_with_a_duplicated_token(net: ViTSupernet) -> None:
    depth = SPACE.max_config.depth
    one = (1,) + (0,) * (depth - 1)
    out_m, size, source = _duplicate_run(net, one, prop=True)
    out_0, _, _ = _duplicate_run(net, (0,) * depth, prop=True)
    assert out_m.shape[1] == out_0.shape[1] - 1
    # The pair merged is the duplicate: exactly one token holds two sources, 10 and 65.
    assert size is not None and source is not None
    for b in range(2):
        big = torch.nonzero(size[b, :, 0] == 2).flatten()
        assert len(big) == 1 and int((size[b] != 1).sum()) == 1
        held = torch.nonzero(source[b, big[0]]).flatten().tolist()
        assert held == [10, 65]
    assert torch.allclose(out_m[:, 0], out_0[:, 0], atol=1e-5)
    # Negative control: without proportional attention the merged token loses half its weight.
    off_m, _, _ = _duplicate_run(net, one, prop=False)
    off_0, _, _ = _duplicate_run(net, (0,) * depth, prop=False)
    assert (off_m[:, 0] - off_0[:, 0]).abs().max() > 1e-3
