"""Multi-scale causal sliding-window attention (blockwise or flex), and its one-token step.

Blockwise windows: queries are cut into blocks of B; block i sees the keys from W-1 steps before
its first query up to its last query, i.e. B + W - 1 keys, taken as an `unfold` view of the
padded key sequence. Scores are [.., L/B, B, B + W - 1]: O(L * W) time and memory, never L x L.
All scales share one pass: W is the widest window and each scale's heads are masked to their own.
The same kernel runs training (past = zeros, masked), prompt prefill (past = cached window)
and one-token steps (B = 1), so streaming and the full forward share their maths.

Positions inside a block are relative to the block (queries at 0 .. B-1, keys at
-(W-1) .. B-1). Rotary/xpos depends only on differences, so this is exact and never sees a large
absolute index, however long the stream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from comagen.model.positional import apply_rotary, rotary_tables
from comagen.model.state import WindowCache


@dataclass
class WindowContext:
    """Everything the fused multi-scale attention needs for one call, shared by all layers.

    All scales run in one pass: keys are padded to the widest window and each scale's group of
    heads is masked to its own band, so there is one set of kernels whatever the number of scales.
    """

    windows: list[int]  # of the scales this context covers, from scale `first` on
    block: int
    nblocks: int
    bias: Tensor  # additive mask (+ position bias): [S, heads or 1, nblocks or 1, block, block + max(W) - 1]
    rotary: tuple[Tensor | None, Tensor] | None  # q table [block, d/2] (None: identity), k table [block+max(W)-1, d/2]
    flex: bool = False
    dpb: Tensor | None = None  # [S, heads, max(W)] for the flex path (scale s's distances beyond its window unused)
    first: int = 0
    skip: int = 0  # leading keys no query may see (a single block after an empty past): left out, not masked

    @property
    def wmax(self) -> int:
        return max(self.windows)


def _constant(fn):
    """Cache a tensor-valued helper; build outside inference mode so autograd may save the result."""
    cached = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        with torch.inference_mode(False), torch.no_grad():
            return cached(*args)

    return wrapper


@_constant
def _band_mask(windows: tuple[int, ...], block: int, nblocks: int, invalid: int, device: torch.device) -> Tensor:
    """Additive mask [S, 1, n, B, B + max(W) - 1]: query r of block i sees key j of scale s iff
    0 <= distance < W_s, where distance = max(W) - 1 + r - j, and the key is real."""
    dist = _distances(max(windows), block, device)
    j = torch.arange(block + max(windows) - 1, device=device)
    real = (torch.arange(nblocks, device=device)[:, None, None] * block + j) >= invalid  # [n, 1, K]
    ok = torch.stack([(dist >= 0) & (dist < w) & real for w in windows])[:, None]
    return torch.zeros(ok.shape, device=device).masked_fill(~ok, float("-inf"))


@_constant
def _distances(wmax: int, block: int, device: torch.device) -> Tensor:
    r = torch.arange(block, device=device)[:, None]
    j = torch.arange(block + wmax - 1, device=device)[None, :]
    return wmax - 1 + r - j


@_constant
def _block_rotary(window: int, block: int, head_dim: int, device: torch.device) -> tuple[Tensor | None, Tensor]:
    """Queries at 0 .. B-1, keys at -(W-1) .. B-1: a one-token step needs no query rotation."""
    pos = torch.arange(block + window - 1, device=device) - (window - 1)
    q_table, k_table = rotary_tables(pos, head_dim, xpos=True)
    return (None if block == 1 else q_table[window - 1:]), k_table


def window_contexts(windows: list[int], length: int, start: int, head_dim: int, dpb: nn.ModuleList | None,
                    device: torch.device, flex: bool = False) -> list[WindowContext]:
    """Contexts for `length` new queries after `start` already-seen tokens: one call for all scales,
    except that the blockwise path splits off a scale whose padding to a much wider window would
    cost more than a call of its own (flex skips masked blocks, so it always fuses)."""
    groups = [list(range(len(windows)))] if flex else _scale_groups(windows)
    return [window_context([windows[i] for i in g], length, start, head_dim,
                           None if dpb is None else [dpb[i] for i in g], device, flex, first=g[0])
            for g in groups]


def _scale_groups(windows: list[int]) -> list[list[int]]:
    """Consecutive scales share a call while padding them to the group's widest window at most
    doubles their attention work (S * max(W) <= 2 * sum(W))."""
    groups: list[list[int]] = []
    for i, w in enumerate(windows):
        group = groups[-1] if groups else None
        ws = [windows[j] for j in group] + [w] if group else []
        if group and len(ws) * max(ws) <= 2 * sum(ws):
            group.append(i)
        else:
            groups.append([i])
    return groups


def window_context(windows: list[int], length: int, start: int, head_dim: int, dpb: list[nn.Module] | None,
                   device: torch.device, flex: bool = False, first: int = 0) -> WindowContext:
    """Context for `length` new queries after `start` already-seen tokens, for the scales `windows`."""
    wmax = max(windows)
    if flex:
        tables = None if dpb is None else torch.stack([F.pad(m(w), (0, wmax - w)) for m, w in zip(dpb, windows,
                                                                                               strict=True)])
        return WindowContext(list(windows), length, 1, torch.empty(0), None, True, tables, first)
    # a prompt that fits one window: one block, whose empty past is skipped; else blocks of a quarter
    # window (a query scores B + W - 1 keys: 1.25 W rather than 2 W; 128 at least, or per-block costs win)
    block = length if start == 0 and length <= wmax else min(wmax, length, max(wmax // 4, 128))
    nblocks = -(-length // block)
    invalid = max(wmax - 1 - start, 0)
    bias = _band_mask(tuple(windows), block, nblocks if invalid else 1, invalid, device)
    if dpb is not None:
        dist = _distances(wmax, block, device)
        tables = [m(w)[:, dist.clamp(0, w - 1)] for m, w in zip(dpb, windows, strict=True)]  # [h, B, K] each
        bias = bias + torch.stack(tables)[:, :, None]
    rotary = None if dpb is not None else _block_rotary(wmax, block, head_dim, device)
    skip = invalid if nblocks == 1 else 0  # a prompt's first pass: its window's past is empty
    if skip:
        bias = bias[..., skip:]
        rotary = None if rotary is None else (rotary[0], rotary[1][skip:])
    return WindowContext(list(windows), block, nblocks, bias, rotary, first=first, skip=skip)


def local_attention(q: Tensor, k_all: Tensor, v_all: Tensor, ctx: WindowContext,
                    need_probs: bool = False) -> tuple[Tensor, list[Tensor] | None]:
    """q [b, S*h, C, d]; k_all, v_all [b, S*h, max(W)-1+C, d] (past window then chunk).

    Returns the output [b, S, h, C, d] and, if asked, each scale's probs [b, h, C, W_s] (last column = self).
    A context's `skip` leading keys (all masked: a prompt's empty past) are left out of the scores:
    a 300-token prompt of a 1024-window scale then scores 300 keys a query, not 1,323.
    """
    s, w, blk, nb, skip = len(ctx.windows), ctx.wmax, ctx.block, ctx.nblocks, ctx.skip
    c = q.shape[2]
    pad = nb * blk - c
    if pad:
        q, k_all, v_all = (F.pad(t, (0, 0, 0, pad)) for t in (q, k_all, v_all))
    q = rearrange(q, "b (s h) (n r) d -> b s h n r d", s=s, r=blk)
    k = k_all[:, :, skip:].unfold(2, blk + w - 1 - skip, blk).transpose(-1, -2)  # [b, S*h, n, B+W-1, d], a view
    v = v_all[:, :, skip:].unfold(2, blk + w - 1 - skip, blk).transpose(-1, -2)
    if ctx.rotary is not None:
        q_table, k_table = ctx.rotary
        k = apply_rotary(k, k_table)
        if q_table is not None:
            q = apply_rotary(q, q_table)
    k, v = (rearrange(t, "b (s h) n j d -> b s h n j d", s=s) for t in (k, v))
    if not need_probs:
        return _fused_blocks(q, k, v, ctx.bias)[..., :c, :], None
    scores = q @ k.transpose(-1, -2) + ctx.bias  # q carries the 1/sqrt(d)
    probs = scores.softmax(dim=-1)
    out = rearrange(probs @ v, "b s h n r d -> b s h (n r) d")[..., :c, :]
    probs = F.pad(probs, (skip, 0))  # the left-out keys' probabilities: 0
    idx = torch.arange(blk, device=q.device)[:, None] + torch.arange(w, device=q.device)
    band = rearrange(probs.gather(-1, idx.expand(*probs.shape[:-1], w)), "b s h n r w -> b s h (n r) w")
    return out, [band[:, i, :, :c, w - ws:] for i, ws in enumerate(ctx.windows)]


def _fused_blocks(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """softmax(q k^T + bias) v for q [b, S, h, n, B, d] and k, v [b, S, h, n, K, d], one fused
    `scaled_dot_product_attention` call per scale: its CPU kernel never writes the [.., B, K] scores
    out, which took a long prompt's first pass about three times as long. Per scale, the bias
    [h or 1, n or 1, B, K] broadcasts over the call's rows, the blocks, without a copy. Returns
    [b, S, h, n*B, d]."""
    b, s, h, n, blk, d = q.shape
    outs = []
    for i in range(s):
        mask = bias[i] if bias.shape[1] == 1 else bias[i].repeat(b, 1, 1, 1)  # rows: batch x heads
        outs.append(F.scaled_dot_product_attention(
            q[:, i].reshape(b * h, n, blk, d), k[:, i].reshape(b * h, n, -1, d), v[:, i].reshape(b * h, n, -1, d),
            attn_mask=mask.to(q.dtype), scale=1.0).view(b, h, n * blk, d))  # q carries the 1/sqrt(d)
    return torch.stack(outs, 1)


_compiled_flex = None


def flex_local_attention(q: Tensor, k: Tensor, v: Tensor, ctx: WindowContext) -> Tensor:
    """Training-time sliding windows via one flex_attention call for all scales (same maths as
    the blockwise path): each head reads its own scale's window from a per-head table.

    xpos uses absolute positions centred on the sequence, which keeps the decay factors of a
    training crop well inside fp32/bf16 range; only differences matter, as in the blockwise path.
    Returns [b, S, h, L, d].
    """
    global _compiled_flex
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    length, scales = q.shape[2], len(ctx.windows)
    heads = q.shape[1] // scales
    if ctx.dpb is None:
        pos = torch.arange(length, device=q.device) - length // 2
        q_table, k_table = rotary_tables(pos, q.shape[-1], xpos=True)
        q, k = apply_rotary(q, q_table), apply_rotary(k, k_table)
    window = torch.tensor(ctx.windows, device=q.device).repeat_interleave(heads)

    def sliding(b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        return (qi >= ki) & (qi - ki < window[h])

    mask = create_block_mask(sliding, None, q.shape[1], length, length, device=q.device)
    score_mod = None
    if ctx.dpb is not None:
        table = ctx.dpb.to(q.dtype).flatten(0, 1)  # [S*h, max(W)]

        def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return score + table[h, (qi - ki).clamp(0, ctx.wmax - 1)]

    out = _compiled_flex(q, k, v, score_mod=score_mod, block_mask=mask, scale=1.0)  # q carries 1/sqrt(d)
    return rearrange(out, "b (s h) n d -> b s h n d", s=scales)


@dataclass
class StepContext:
    """One-token step for all scales at once: every scale reads the last max(W) cached keys.

    Scales are stacked on the head axis ([b, S*h, ...]); a scale with a smaller window is
    masked to its own last W keys, so one matmul/softmax serves all scales.
    """

    windows: list[int]
    bias: Tensor  # [S*h, 1, max(W)]
    rotary: tuple[Tensor | None, Tensor] | None


@_constant
def _step_mask(windows: tuple[int, ...], heads: int, invalid: int, device: torch.device) -> Tensor:
    wmax = max(windows)
    j = torch.arange(wmax, device=device)
    ok = torch.stack([(j >= wmax - w) & (j >= invalid) for w in windows]).repeat_interleave(heads, 0)[:, None]
    return torch.zeros(ok.shape, device=device).masked_fill(~ok, float("-inf"))


def step_context(windows: list[int], start: int, heads: int, head_dim: int, dpb: nn.ModuleList | None,
                 device: torch.device) -> StepContext:
    wmax = max(windows)
    bias = _step_mask(tuple(windows), heads, max(wmax - 1 - start, 0), device)
    if dpb is None:
        return StepContext(windows, bias, _block_rotary(wmax, 1, head_dim, device))
    tables = [F.pad(m(w).flip(-1), (wmax - w, 0)) for m, w in zip(dpb, windows, strict=True)]  # [h, wmax] each
    return StepContext(windows, bias + torch.cat(tables)[:, None], None)


RMS_EPS = 1e-6


def fusable_rms_norm(x: Tensor, eps: float) -> Tensor:
    """`F.rms_norm` over the last axis, written as ONNX Runtime's fusion looks for it (x / sqrt(mean(x^2)
    + eps) * weight): one SimplifiedLayerNormalization node in an exported step, where torch's
    `rms_norm` exports as seven."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * torch.ones(x.shape[-1], device=x.device)


class MultiScaleLocalAttention(nn.Module):
    """Pre-norm attention with one causal sliding window per scale, mixed by learned softmax weights.

    Each scale has its own queries, keys and values (one fused projection; scales stacked on
    the head axis); queries and keys are RMS-normalised with learnable per-head, per-channel
    scales, which keeps logits bounded whatever the window. The weighted scale outputs share one
    output projection. The stream cache keeps max(W) - 1 past keys/values for every scale.
    """

    keeps_stream_axis = True  # a one-token step hands it the summed streams [b, 1, 1, dim] (hyper.py)

    def __init__(self, dim: int, heads: int, scales: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.scales, self.head_dim = heads, scales, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * scales * dim, bias=False)
        self.q_scale = nn.Parameter(torch.ones(scales * heads, 1, self.head_dim))
        self.k_scale = nn.Parameter(torch.ones(scales * heads, 1, self.head_dim))
        self.scale_logits = nn.Parameter(torch.zeros(scales))
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def scale_weights(self) -> Tensor:
        return self.scale_logits.softmax(dim=0)

    def qk_scales(self) -> Tensor:
        """The query and key scales [2, 1, S*h, 1, d], stacked so that queries and keys are normalised
        in one pass (half the nodes of an exported step's norm)."""
        return torch.stack((self.q_scale * self.head_dim ** -0.5, self.k_scale))[:, None]

    def new_cache(self, batch: int, windows: list[int], device: torch.device,
                  dtype: torch.dtype) -> list[WindowCache]:
        keep = max(windows) - 1
        return [WindowCache.zeros(batch, self.scales * self.heads, keep, self.head_dim, device, dtype)
                for _ in range(2)]

    def forward(self, x: Tensor, ctx: list[WindowContext] | StepContext, cache: list[WindowCache] | None = None,
                need_probs: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        """x [b, n, dim], or a one-token step's [b, 1, 1, dim]; out in the same shape."""
        if hasattr(cache, "attend"):  # an exported step's per-scale rings (comagen/runtime/ring.py)
            return self._ring_step(x, cache), None
        qkv = self._qkv(x)
        qk, v = F.rms_norm(qkv[:2], (self.head_dim,), eps=RMS_EPS) * self.qk_scales(), qkv[2]
        q, k = qk.unbind(0)
        if cache is not None:
            k, v = cache[0].extend(k), cache[1].extend(v)  # [b, S*h, max(W)-1+C, d]
        if isinstance(ctx, StepContext):
            out, probs = self._step(q, k, v, ctx, need_probs)
        else:
            out, probs = self._blocks(q, k, v, ctx, need_probs)
        out = rearrange(out, "b h n d -> b n (h d)").view(*x.shape[:-1], -1)
        return self.dropout(self.to_out(out)), (probs if need_probs else None)

    def _qkv(self, x: Tensor) -> Tensor:
        """Queries, keys and values [3, b, S*h, n, d] of x [b, n, dim] (or a step's [b, 1, 1, dim])."""
        return rearrange(self.to_qkv(self.norm(x)), "b ... (t sh d) -> t b sh (...) d", t=3, d=self.head_dim)

    def _ring_step(self, x: Tensor, ring) -> Tensor:  # noqa: ANN001 - a runtime.ring.RingLayer
        """One token [b, 1, dim], or its summed streams [b, 1, 1, dim], through an exported step's rings;
        out in the same shape."""
        qkv = self._qkv(x)
        qk = fusable_rms_norm(qkv[:2], RMS_EPS) * self.qk_scales()
        return self.to_out(ring.attend(qk, qkv[2], self.scale_weights()).view(x.shape))

    def _step(self, q: Tensor, k: Tensor, v: Tensor, ctx: StepContext,
              need_probs: bool) -> tuple[Tensor, list[Tensor]]:
        if ctx.rotary is not None:
            k = apply_rotary(k, ctx.rotary[1])
        probs = (q @ k.transpose(-1, -2) + ctx.bias).softmax(dim=-1)  # [b, S*h, 1, max(W)]
        b = q.shape[0]
        out = (self.scale_weights() @ (probs @ v).view(b, self.scales, -1)).view(b, self.heads, 1, -1)
        if not need_probs:
            return out, []
        h = self.heads
        return out, [probs[:, s * h:(s + 1) * h, :, probs.shape[-1] - w:] for s, w in enumerate(ctx.windows)]

    def _blocks(self, q: Tensor, k: Tensor, v: Tensor, ctxs: list[WindowContext],
                need_probs: bool) -> tuple[Tensor, list[Tensor] | None]:
        weights, h, c = self.scale_weights(), self.heads, q.shape[2]
        out, probs = 0.0, []
        for ctx in ctxs:
            n = len(ctx.windows)
            heads = slice(ctx.first * h, (ctx.first + n) * h)
            qs, ks, vs = q[:, heads], k[:, heads], v[:, heads]
            if ctx.flex:
                o, p = flex_local_attention(qs, ks, vs, ctx), None
            else:
                if k.shape[2] == c:  # no cache: the window before the first token is empty
                    ks, vs = (F.pad(t, (0, 0, ctx.wmax - 1, 0)) for t in (ks, vs))
                else:  # this group's own window of the shared past
                    ks, vs = ks[:, :, k.shape[2] - c - (ctx.wmax - 1):], vs[:, :, k.shape[2] - c - (ctx.wmax - 1):]
                o, p = local_attention(qs, ks, vs, ctx, need_probs)
            out = out + torch.einsum("s,bshnd->bhnd", weights[ctx.first:ctx.first + n].to(o.dtype), o)
            probs.extend(p or [])
        return out, (probs if need_probs else None)


def resolve_flex(backend: str, device: torch.device) -> bool:
    """Whether the training-time forward uses flex_attention: on CUDA by default ("auto"), and on
    the CPU when asked for ("flex", compiled by inductor's CPU backend: slow to compile, for checks)."""
    return backend == "flex" or (backend == "auto" and device.type == "cuda")
