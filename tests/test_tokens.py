"""Tests for jointopt.tokens (ToMe bipartite soft matching)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointopt.tokens import (
    ONNX_OPSET,
    bipartite_soft_matching,
    max_merges,
    merge_source,
    merge_wavg,
    proportional_bias,
)


def _inputs(b: int = 3, n: int = 17, c: int = 24, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(b, n, c, generator=g)
    x = torch.randn(b, n, d, generator=g)
    size = torch.randint(1, 5, (b, n, 1), generator=g).float()
    return metric, x, size


def _reference(metric: Tensor, x: Tensor, size: Tensor, r: int):
    """Slow, loop-by-loop ToMe step in float64. Returns (x, size, groups) where groups[b] lists,
    per output token, the input token indices it holds."""
    bsz, n, _ = x.shape
    xs, ss, groups = [], [], []
    for b in range(bsz):
        a_idx, b_idx = list(range(0, n, 2)), list(range(1, n, 2))
        best = {}
        for i in a_idx[1:]:  # a_idx[0] is cls: never a candidate
            sims = [
                F.cosine_similarity(metric[b, i].double(), metric[b, j].double(), dim=0)
                for j in b_idx
            ]
            k = max(range(len(b_idx)), key=lambda t: float(sims[t]))
            best[i] = (float(sims[k]), b_idx[k])
        merged = sorted(best, key=lambda i: -best[i][0])[:r]
        members = {j: [j] for j in b_idx}
        for i in merged:
            members[best[i][1]].append(i)
        rows = [[i] for i in a_idx if i not in merged] + [members[j] for j in b_idx]
        out_x: list[Tensor] = []
        out_s: list[Tensor] = []
        for g in rows:
            s = torch.stack([size[b, k].double() for k in g]).sum(0)
            out_x.append(
                torch.stack([x[b, k].double() * size[b, k].double() for k in g]).sum(0) / s
            )
            out_s.append(s)
        xs.append(torch.stack(out_x))
        ss.append(torch.stack(out_s))
        groups.append(rows)
    return torch.stack(xs).float(), torch.stack(ss).float(), groups


def test_r_zero_is_exact_identity():
    metric, x, size = _inputs()
    merge = bipartite_soft_matching(metric, 0)
    assert merge(x) is x
    x2, s2 = merge_wavg(merge, x, size)
    assert torch.equal(x2, x) and torch.equal(s2, size)


@pytest.mark.parametrize("n", [16, 17])
@pytest.mark.parametrize("r", [1, 3, 100])
def test_shape_and_cls_untouched(n: int, r: int):
    metric, x, size = _inputs(n=n)
    metric[:, 0] = metric[:, 1]  # cls is an exact duplicate of a B token: still must not merge
    size[:, 0] = 1  # cls is never merged, so its size is always 1 (x * 1 / 1 is exact)
    merge = bipartite_soft_matching(metric, r)
    r_eff = min(r, max_merges(n))
    x2, s2 = merge_wavg(merge, x, size)
    src = merge_source(merge, x)
    assert x2.shape == (3, n - r_eff, 8) and s2.shape == (3, n - r_eff, 1)
    assert torch.equal(x2[:, 0], x[:, 0])
    assert torch.equal(s2[:, 0], size[:, 0])
    expect = torch.zeros(n)
    expect[0] = 1
    assert torch.equal(src[:, 0], expect.expand(3, n))


def test_mass_and_weighted_mean_conserved():
    metric, x, size = _inputs()
    x2, s2 = merge_wavg(bipartite_soft_matching(metric, 5), x, size)
    torch.testing.assert_close(s2.sum(1), size.sum(1))
    torch.testing.assert_close((x2 * s2).sum(1), (x * size).sum(1), atol=1e-5, rtol=1e-5)
    # each original token ends up in exactly one output token
    src = merge_source(bipartite_soft_matching(metric, 5), x)
    assert torch.equal(src.sum(1), torch.ones(3, 17))


def test_duplicate_pair_is_merged():
    n = 17
    metric = torch.eye(n).repeat(2, 1, 1)  # all tokens mutually orthogonal (cosine 0)
    metric[:, 9] = metric[:, 6]  # except 6 (set A) and 9 (set B): cosine 1
    x = torch.randn(2, n, 8)
    merge = bipartite_soft_matching(metric, 1)
    x2, s2 = merge_wavg(merge, x)
    src = merge_source(merge, x)
    assert x2.shape[1] == n - 1
    pair = (src.sum(-1) == 2).nonzero()
    assert pair.shape == (2, 2)  # one merged token per batch row
    for b, i in pair.tolist():
        assert src[b, i].nonzero().flatten().tolist() == [6, 9]
        assert s2[b, i].item() == 2
        torch.testing.assert_close(x2[b, i], (x[b, 6] + x[b, 9]) / 2)


def test_two_merges_match_brute_force():
    metric, x, size = _inputs(b=2, n=21, seed=3)
    merge = bipartite_soft_matching(metric, 4)
    x1, s1 = merge_wavg(merge, x, size)
    src1 = merge_source(merge, x)
    rx1, rs1, _ = _reference(metric, x, size, 4)
    torch.testing.assert_close(x1, rx1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s1, rs1)

    merge = bipartite_soft_matching(x1, 5)  # second block: metric from merged tokens, sizes > 1
    x2, s2 = merge_wavg(merge, x1, s1)
    src2 = merge_source(merge, x1, src1)
    rx2, rs2, groups = _reference(rx1, rx1, rs1, 5)
    assert x2.shape == (2, 21 - 9, 8)
    torch.testing.assert_close(x2, rx2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s2, rs2)
    # the composed source map says which original tokens each final token holds
    _, _, groups1 = _reference(metric, x, size, 4)
    for b in range(2):
        for row, g in enumerate(groups[b]):
            orig = sorted(k for j in g for k in groups1[b][j])
            assert src2[b, row].nonzero().flatten().tolist() == orig
            torch.testing.assert_close(s2[b, row], size[b, orig].sum(0))


def test_ties_go_to_lower_index():
    # All tokens identical: every score ties. The lowest-index A tokens (after cls) merge, all
    # into the first B token, independent of the sort kernel.
    n, r = 65, 8
    metric = torch.ones(2, n, 4)
    src = merge_source(bipartite_soft_matching(metric, r), metric)
    rows = [row.nonzero().flatten().tolist() for row in src[0] if row.sum() > 1]
    assert rows == [[1] + list(range(2, 2 * r + 1, 2))]
    assert torch.equal(src[0], src[1])


def test_mean_mode_and_bad_mode():
    metric, x, _ = _inputs()
    merge = bipartite_soft_matching(metric, 4)
    torch.testing.assert_close(merge(x, "mean"), merge_wavg(merge, x)[0])
    with pytest.raises(ValueError):
        merge(x, "max")


def test_gradient_flows_to_tokens():
    metric, x, size = _inputs()
    x.requires_grad_(True)
    x2, _ = merge_wavg(bipartite_soft_matching(metric, 4), x, size)
    x2.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_proportional_bias_equals_repeated_keys():
    # A key of size s under proportional attention behaves like s identical copies of it.
    g = torch.Generator().manual_seed(1)
    b, h, n, d = 2, 3, 5, 4
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    size = torch.randint(1, 4, (b, n, 1), generator=g).double()
    bias = proportional_bias(size)
    assert bias.shape == (b, 1, 1, n)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    for i in range(b):
        reps = size[i, :, 0].long()
        kr, vr = k[i].repeat_interleave(reps, dim=1), v[i].repeat_interleave(reps, dim=1)
        ref = F.scaled_dot_product_attention(q[i], kr, vr)
        torch.testing.assert_close(out[i], ref)


class _MergeNet(nn.Module):
    def __init__(self, d: int = 16, c: int = 8, r: int = 3):
        super().__init__()
        self.lin = nn.Linear(d, c)
        self.r = r

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, size = merge_wavg(bipartite_soft_matching(self.lin(x), self.r), x)
        # a second block, so sizes > 1 go through the exported graph too
        return merge_wavg(bipartite_soft_matching(self.lin(x), self.r), x, size)


@pytest.mark.parametrize(
    "dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["legacy", "dynamo"]
)
def test_onnx_export_dynamic_batch(tmp_path, dynamo: bool):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = _MergeNet().eval()
    path = tmp_path / "merge.onnx"
    example = (torch.randn(2, 65, 16),)  # batch 2: a batch-1 example can get specialised
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw: dict[str, Any]
        if dynamo:
            kw = {"dynamic_shapes": ({0: torch.export.Dim("batch")},), "verbose": False}
        else:
            kw = {"dynamic_axes": {"x": {0: "batch"}, "x_out": {0: "batch"}, "size": {0: "batch"}}}
        torch.onnx.export(
            net,
            example,
            str(path),
            dynamo=dynamo,
            opset_version=ONNX_OPSET,
            input_names=["x"],
            output_names=["x_out", "size"],
            **kw,
        )
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == ONNX_OPSET
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tied = torch.randn(1, 1, 16).expand(4, 65, 16).contiguous()  # every score ties
    for x in (torch.randn(1, 65, 16), torch.randn(4, 65, 16), tied):
        with torch.no_grad():
            ref_x, ref_s = net(x)
        got_x, got_s = sess.run(None, {"x": x.numpy()})
        assert got_x.shape == (x.shape[0], 59, 16)
        torch.testing.assert_close(torch.from_numpy(got_x), ref_x, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got_s), ref_s, atol=1e-5, rtol=1e-5)
