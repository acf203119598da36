"""Attention: multi-scale causal sliding windows (blockwise or flex) and full causal attention.

Blockwise windows: queries are cut into blocks of B; block i sees the keys from W-1 steps before
its first query up to its last query, i.e. B + W - 1 keys, taken as an `unfold` view of the
padded key sequence. Scores are [.., L/B, B, B + W - 1]: O(L * W) time and memory, never L x L.
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

from comagen.errors import ConfigError
from comagen.model.positional import DynamicPositionBias, apply_rotary, rotary_tables
from comagen.model.state import KVCache, WindowCache


@dataclass
class ScaleContext:
    """Everything one attention scale needs for one call, shared by all layers."""

    window: int
    block: int
    nblocks: int
    bias: Tensor  # additive mask (+ position bias): [heads or 1, nblocks or 1, block, block + window - 1]
    rotary: tuple[Tensor | None, Tensor] | None  # q table [block, d/2] (None: identity), k table [block+window-1, d/2]
    flex: bool = False
    dpb: Tensor | None = None  # [heads, window], for the flex path


def _constant(fn):
    """Cache a tensor-valued helper; build outside inference mode so autograd may save the result."""
    cached = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        with torch.inference_mode(False), torch.no_grad():
            return cached(*args)

    return wrapper


@_constant
def _band_mask(window: int, block: int, nblocks: int, invalid: int, device: torch.device) -> Tensor:
    """Additive mask: query r of block i sees key j iff r <= j <= r + W - 1 and the key is real."""
    r = torch.arange(block, device=device)[:, None]
    j = torch.arange(block + window - 1, device=device)[None, :]
    ok = (j >= r) & (j <= r + window - 1)
    g = torch.arange(nblocks, device=device)[:, None, None] * block + j  # key index in [past ; chunk]
    ok = ok & (g >= invalid)
    return torch.zeros(ok.shape, device=device).masked_fill(~ok, float("-inf"))


@_constant
def _distances(window: int, block: int, device: torch.device) -> Tensor:
    r = torch.arange(block, device=device)[:, None]
    j = torch.arange(block + window - 1, device=device)[None, :]
    return (window - 1 + r - j).clamp(0, window - 1)


@_constant
def _block_rotary(window: int, block: int, head_dim: int, device: torch.device) -> tuple[Tensor | None, Tensor]:
    """Queries at 0 .. B-1, keys at -(W-1) .. B-1: a one-token step needs no query rotation."""
    pos = torch.arange(block + window - 1, device=device) - (window - 1)
    q_table, k_table = rotary_tables(pos, head_dim, xpos=True)
    return (None if block == 1 else q_table[window - 1:]), k_table


def scale_context(window: int, length: int, start: int, head_dim: int, dpb: DynamicPositionBias | None,
                  device: torch.device, flex: bool = False) -> ScaleContext:
    """Context for `length` new queries after `start` already-seen tokens, for one window."""
    if flex:
        return ScaleContext(window, length, 1, torch.empty(0), None, True, None if dpb is None else dpb(window))
    block = min(window, length)
    nblocks = -(-length // block)
    invalid = max(window - 1 - start, 0)
    bias = _band_mask(window, block, nblocks if invalid else 1, invalid, device)[None]
    if dpb is not None:
        table = dpb(window)  # [heads, W]
        bias = bias + table[:, _distances(window, block, device)][:, None]
    rotary = None if dpb is not None else _block_rotary(window, block, head_dim, device)
    return ScaleContext(window, block, nblocks, bias, rotary)


def local_attention(q: Tensor, k_all: Tensor, v_all: Tensor, ctx: ScaleContext,
                    need_probs: bool = False) -> tuple[Tensor, Tensor | None]:
    """q [b, h, C, d]; k_all, v_all [b, h, W-1+C, d] (past window then chunk).

    Returns the output [b, h, C, d] and, if asked, probs [b, h, C, W] (column W-1 = self).
    """
    w, blk, nb = ctx.window, ctx.block, ctx.nblocks
    c = q.shape[2]
    pad = nb * blk - c
    if pad:
        q, k_all, v_all = (F.pad(t, (0, 0, 0, pad)) for t in (q, k_all, v_all))
    q = rearrange(q, "b h (n r) d -> b h n r d", r=blk)
    k = k_all.unfold(2, blk + w - 1, blk).transpose(-1, -2)  # [b, h, n, B+W-1, d], a view
    v = v_all.unfold(2, blk + w - 1, blk).transpose(-1, -2)
    if ctx.rotary is not None:
        q_table, k_table = ctx.rotary
        k = apply_rotary(k, k_table)
        if q_table is not None:
            q = apply_rotary(q, q_table)
    scores = q @ k.transpose(-1, -2) + ctx.bias  # q carries the 1/sqrt(d)
    probs = scores.softmax(dim=-1)
    out = rearrange(probs @ v, "b h n r d -> b h (n r) d")[:, :, :c]
    if not need_probs:
        return out, None
    idx = torch.arange(blk, device=q.device)[:, None] + torch.arange(w, device=q.device)
    band = probs.gather(-1, idx.expand(*probs.shape[:-1], w))
    return out, rearrange(band, "b h n r w -> b h (n r) w")[:, :, :c]


_compiled_flex = None


def flex_local_attention(q: Tensor, k: Tensor, v: Tensor, ctx: ScaleContext) -> Tensor:
    """Training-time sliding window on CUDA via flex_attention (same maths as the blockwise path).

    xpos uses absolute positions centred on the sequence, which keeps the decay factors of a
    training crop well inside fp32/bf16 range; only differences matter, as in the blockwise path.
    """
    global _compiled_flex
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    length, w = q.shape[2], ctx.window
    if ctx.dpb is None:
        pos = torch.arange(length, device=q.device) - length // 2
        q_table, k_table = rotary_tables(pos, q.shape[-1], xpos=True)
        q, k = apply_rotary(q, q_table), apply_rotary(k, k_table)

    def sliding(b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        return (qi >= ki) & (qi - ki < w)

    mask = create_block_mask(sliding, None, None, length, length, device=q.device)
    score_mod = None
    if ctx.dpb is not None:
        table = ctx.dpb.to(q.dtype)

        def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return score + table[h, (qi - ki).clamp(0, w - 1)]

    return _compiled_flex(q, k, v, score_mod=score_mod, block_mask=mask, scale=1.0)  # q carries 1/sqrt(d)


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


class MultiScaleLocalAttention(nn.Module):
    """Pre-norm attention with one causal sliding window per scale, mixed by learned softmax weights.

    Each scale has its own queries, keys and values (one fused projection; scales stacked on
    the head axis); queries and keys are RMS-normalised with learnable per-head, per-channel
    scales, which keeps logits bounded whatever the window. The weighted scale outputs share one
    output projection. The stream cache keeps max(W) - 1 past keys/values for every scale.
    """

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

    def new_cache(self, batch: int, windows: list[int], device: torch.device,
                  dtype: torch.dtype) -> list[WindowCache]:
        keep = max(windows) - 1
        return [WindowCache.zeros(batch, self.scales * self.heads, keep, self.head_dim, device, dtype)
                for _ in range(2)]

    def forward(self, x: Tensor, ctx: list[ScaleContext] | StepContext, cache: list[WindowCache] | None = None,
                need_probs: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        qkv = self.to_qkv(self.norm(x))
        q, k, v = rearrange(qkv, "b n (t sh d) -> t b sh n d", t=3, d=self.head_dim)
        dims = (self.head_dim,)
        q = F.rms_norm(q, dims, eps=1e-6) * (self.q_scale * self.head_dim ** -0.5)
        k = F.rms_norm(k, dims, eps=1e-6) * self.k_scale
        if cache is not None:
            k, v = cache[0].extend(k), cache[1].extend(v)  # [b, S*h, max(W)-1+C, d]
        if isinstance(ctx, StepContext):
            out, probs = self._step(q, k, v, ctx, need_probs)
        else:
            out, probs = self._blocks(q, k, v, ctx, need_probs)
        out = rearrange(out, "b h n d -> b n (h d)")
        return self.dropout(self.to_out(out)), (probs if need_probs else None)

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

    def _blocks(self, q: Tensor, k: Tensor, v: Tensor, ctxs: list[ScaleContext],
                need_probs: bool) -> tuple[Tensor, list[Tensor]]:
        weights, h, wmax = self.scale_weights(), self.heads, max(c.window for c in ctxs)
        cached = k.shape[2] > q.shape[2]
        out, probs = 0.0, []
        for s, ctx in enumerate(ctxs):
            heads = slice(s * h, (s + 1) * h)
            qs, ks, vs = q[:, heads], k[:, heads], v[:, heads]
            if ctx.flex:
                o, p = flex_local_attention(qs, ks, vs, ctx), None
            else:
                if cached:  # this scale's own window of the shared past
                    ks, vs = ks[:, :, wmax - ctx.window:], vs[:, :, wmax - ctx.window:]
                else:
                    ks, vs = (F.pad(t, (0, 0, ctx.window - 1, 0)) for t in (ks, vs))
                o, p = local_attention(qs, ks, vs, ctx, need_probs)
            out = out + weights[s] * o
            probs.append(p)
        return out, probs


def resolve_flex(backend: str, device: torch.device) -> bool:
    """Whether the training-time forward uses flex_attention."""
    if backend == "flex" and device.type != "cuda":
        raise ConfigError("attention_backend 'flex' needs a CUDA device; use 'auto' or 'blockwise'")
    return backend == "flex" or (backend == "auto" and device.type == "cuda")


class FullAttention(nn.Module):
    """Full causal attention with an optional KV cache: conformer global layers and the baselines.

    `rotary` (RoPE, from absolute positions computed in float64) for llama and global layers;
    `kv_heads < heads` gives grouped-query attention.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int | None = None, bias: bool = False,
                 norm: nn.Module | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads or heads, dim // heads
        self.norm = norm if norm is not None else nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, (heads + 2 * self.kv_heads) * self.head_dim, bias=bias)
        self.to_out = nn.Linear(dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        return KVCache.empty(batch, self.kv_heads, self.head_dim, device, dtype)

    def forward(self, x: Tensor, start: int, rope: Tensor | None = None,
                cache: KVCache | None = None) -> Tensor:
        q, k, v = self.to_qkv(self.norm(x)).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1)
        q = rearrange(q, "b n (h d) -> b h n d", h=self.heads)
        k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.kv_heads) for t in (k, v))
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        if cache is not None:
            k, v = cache.extend(k, v)
        c, total = q.shape[2], k.shape[2]
        mask, causal = None, False
        if c == total:
            causal = c > 1
        elif c > 1:
            mask = torch.ones(c, total, dtype=torch.bool, device=x.device).tril(total - c)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             dropout_p=self.dropout.p if self.training else 0.0,
                                             enable_gqa=self.kv_heads != self.heads)
        return self.dropout(self.to_out(rearrange(out, "b h n d -> b n (h d)")))
