"""Token merging (ToMe) core: bipartite soft matching, written from the paper.

Bolya et al., "Token Merging: Your ViT But Faster", arXiv 2210.09461, section 3. Between
attention and MLP each block merges ``r`` pairs of similar tokens, so the token count drops by
``r`` per block. This module is a functional core: the caller (the ViT block) owns ``r``, the
metric (attention keys averaged over heads) and the per-token ``size`` tensor.

Shapes: ``B`` batch, ``N`` tokens in (cls at index 0), ``C`` metric channels, ``D`` token
channels. Matching runs once per block on ``metric`` and returns a ``merge`` closure that
applies the same reduction to any ``[B, N, *]`` tensor (tokens, sizes, source maps), which keeps
all of them aligned.

Export: everything is Slice / MatMul / ReduceMax / compare / TopK (argsort) / GatherElements /
ScatterElements(reduction="add") / Concat, with ``r`` a Python int fixed at trace time and no
data-dependent Python control flow; matching and merging never read the batch size as a
Python int, so it stays symbolic under ``dynamic_axes`` (tested with both exporters). Needs
ONNX opset >= 16 for ScatterElements with a reduction; tested at opset 18 (``ONNX_OPSET``).
"""

from __future__ import annotations

import math
import warnings
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ONNX_OPSET",
    "MergeFn",
    "bipartite_soft_matching",
    "max_merges",
    "merge_source",
    "merge_wavg",
    "proportional_bias",
]

# 16 is the first opset with ScatterElements(reduction="add"). 18 because torch's default
# (dynamo) exporter has no implementations below 18: asked for 17 it builds 18 and then fails to
# down-convert. The legacy exporter (dynamo=False) produces the same graph at 17 or 18.
ONNX_OPSET = 18


#: Merge with one 0/1 matrix product (True) or with gathers and a scatter-add (False).
MATRIX_MERGE = True


class MergeFn(Protocol):
    """``merge(x [B, N, K], mode) -> [B, N - r, K]`` for any trailing width ``K``."""

    def __call__(self, x: Tensor, mode: str = "mean") -> Tensor: ...


def max_merges(n: int, class_token: bool = True) -> int:
    """Most merges one block can do on ``n`` tokens: every unprotected token of set A."""
    return max(0, (n - int(class_token)) // 2)


def _identity(x: Tensor, mode: str = "mean") -> Tensor:
    return x


def bipartite_soft_matching(metric: Tensor, r: int, class_token: bool = True) -> MergeFn:
    """Match tokens for one block and return the ``merge`` function that applies it.

    metric: [B, N, C] matching features (keys averaged over heads). r: merges (Python int);
    clamped to ``[0, max_merges(N)]`` as a guard only, the caller is expected to validate.
    With ``class_token`` token 0 is never merged and stays at output index 0.

    Returned ``merge(x, mode)``: [B, N, K] -> [B, N - r, K]. ``mode="sum"`` adds merged tokens;
    ``mode="mean"`` is their unweighted mean. Output order is the kept A tokens (even indices,
    ascending, so cls is first) followed by all B tokens (odd indices, ascending).
    """
    with warnings.catch_warnings():
        # The legacy ONNX tracer warns when a size becomes a Python int. N is static by design
        # (only the batch is dynamic), so fixing r and the slice bounds at trace time is intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        n = int(metric.shape[1])
        r = min(max(r, 0), max_merges(n, class_token))
    if r == 0:
        return _identity  # exact identity, no rounding from a divide by 1

    # Matching chooses indices only; no gradient flows through it, so skip the graph.
    with torch.no_grad():
        metric = F.normalize(metric, dim=-1)  # dot product of unit vectors = cosine similarity
        a, b = metric[:, ::2], metric[:, 1::2]  # A: [B, Na, C] even; B: [B, Nb, C] odd
        scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
        if class_token:
            # cls is A[0]; -inf makes it the worst candidate, and r <= Na - 1 keeps it unmerged.
            # masked_fill (not in-place indexing) exports as a plain Where.
            is_cls = torch.arange(scores.shape[1], device=scores.device) == 0
            scores = scores.masked_fill(is_cls[:, None], -math.inf)

        # Best B partner of each A token: [B, Na]. On ties max returns the first index, as
        # ONNX ArgMax does.
        node_max, node_idx = scores.max(dim=-1)
        # Rank A tokens by best score, ties to the lower index. Sorting the raw scores instead
        # would leave ties to the sort kernel, which differs between CPU, CUDA and ONNX TopK
        # (and torch's stable=True sort does not export). [B, Na, Na] is as small as `scores`.
        pos = torch.arange(node_max.shape[1], device=node_max.device)
        vi, vj = node_max[:, :, None], node_max[:, None, :]
        ahead = (vj > vi) | ((vj == vi) & (pos[None, :] < pos[:, None]))  # j ranks before i
        rank = ahead.to(torch.int64).sum(dim=-1)  # [B, Na], a permutation of 0..Na-1
        order = rank.argsort(dim=-1)[..., None]  # A indices, best match first: [B, Na, 1]
        src_idx = order[:, :r]  # A tokens that get merged away: [B, r, 1]
        # Kept A tokens back in original order: puts cls (A[0]) first, keeps the layout stable.
        unm_idx = order[:, r:].sort(dim=1).values  # [B, Na - r, 1]
        dst_idx = node_idx[..., None].gather(dim=1, index=src_idx)  # their B partners [B, r, 1]

        if MATRIX_MERGE:
            # The whole merge as one 0/1 matrix P [B, N - r, N]: row k of the output sums the
            # input tokens P[k] marks. Kept A tokens first (one 1 each), then every B token
            # with the A tokens merged into it. A runtime then merges with one batched matmul
            # instead of gathers and a scatter-add.
            nb = n // 2
            cols = torch.arange(n, device=metric.device)
            kept = (2 * unm_idx == cols).to(metric.dtype)  # [B, Na - r, N]
            own = (2 * torch.arange(nb, device=metric.device)[:, None] + 1 == cols)  # [Nb, N]
            moved = (2 * src_idx == cols).to(metric.dtype)  # [B, r, N]
            to_b = (dst_idx == torch.arange(nb, device=metric.device)).to(metric.dtype)
            merged = own.to(metric.dtype) + to_b.transpose(1, 2) @ moved  # [B, Nb, N]
            matrix = torch.cat([kept, merged], dim=1)

    def merge_sum(x: Tensor) -> Tensor:
        if MATRIX_MERGE:
            return matrix.to(x.dtype) @ x
        src_all, dst = x[:, ::2], x[:, 1::2]  # [B, Na, K], [B, Nb, K]
        k = x.shape[-1]
        # expand(-1, -1, k): batch and count come from the index tensor, never a traced int.
        unm = src_all.gather(dim=1, index=unm_idx.expand(-1, -1, k))
        src = src_all.gather(dim=1, index=src_idx.expand(-1, -1, k))
        # Several A tokens may share a B partner: scatter_add sums them all (ScatterElements add).
        dst = dst.scatter_add(1, dst_idx.expand(-1, -1, k), src)
        return torch.cat([unm, dst], dim=1)

    def merge(x: Tensor, mode: str = "mean") -> Tensor:
        if mode == "sum":
            return merge_sum(x)
        if mode == "mean":
            # mean = sum / count; avoids scatter_reduce("mean"), which ONNX cannot express.
            return merge_sum(x) / merge_sum(torch.ones_like(x[..., :1]))
        raise ValueError(f"merge mode must be 'sum' or 'mean', got {mode!r}")

    return merge


def merge_wavg(merge: MergeFn, x: Tensor, size: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Size-weighted merge: x [B, N, D], size [B, N, 1] -> ([B, N - r, D], [B, N - r, 1]).

    A merged token is ``sum(x * size) / sum(size)`` over its members and its size is
    ``sum(size)``, so it stays the mean of all the patches it stands for. ``size=None`` means
    every token is one patch (the first merging block).
    """
    if size is None:
        size = torch.ones_like(x[..., :1])
    if merge is _identity:
        return x, size  # r == 0: exact, x * size / size can round when sizes are not 1
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(merge: MergeFn, x: Tensor, source: Tensor | None = None) -> Tensor:
    """Track which input tokens each token holds: source [B, N, N0] -> [B, N - r, N0].

    ``source[b, i, j] == 1`` when token ``i`` contains original token ``j``. ``None`` starts
    from the identity (N0 = N, read from ``x`` [B, N, D]). Merged with sum, so rows stay 0/1.
    """
    if source is None:
        n = x.shape[1]
        eye = torch.eye(n, device=x.device, dtype=x.dtype)
        source = eye.unsqueeze(0).expand(x.shape[0], n, n)
    return merge(source, mode="sum")


def proportional_bias(size: Tensor) -> Tensor:
    """Proportional-attention bias: size [B, N, 1] -> log(size) as [B, 1, 1, N].

    Added to attention logits [B, H, N_q, N_k] (or passed as a float ``attn_mask`` to
    ``F.scaled_dot_product_attention``), a key that stands for ``s`` patches counts as ``s``
    copies of itself in the softmax. Sizes are >= 1, so the log is finite.
    """
    return size.log().transpose(-1, -2).unsqueeze(1)
