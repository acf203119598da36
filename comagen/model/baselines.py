"""The yardsticks: gpt2, music_transformer and llama, behind the same Decoder shell and state API."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.capture import AttentionCapture
from comagen.model.config import ModelConfig
from comagen.model.decoder import Decoder
from comagen.model.full_attention import FullAttention
from comagen.model.positional import rotary_tables, sinusoidal_table
from comagen.model.state import DecodeState, KVCache, WindowCache


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, norm: nn.Module | None = None,
                 gated: bool = False) -> None:
        super().__init__()
        self.norm = norm if norm is not None else nn.LayerNorm(dim)
        self.gated = gated  # SwiGLU (llama) instead of GELU (gpt2)
        self.up = nn.Linear(dim, 2 * hidden if gated else hidden, bias=not gated)
        self.down = nn.Linear(hidden, dim, bias=not gated)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(self.norm(x))
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            h = F.silu(a) * b
        else:
            h = F.gelu(h)
        return self.dropout(self.down(h))


class RelativeAttention(nn.Module):
    """Music Transformer relative attention (Huang et al. 2018).

    One learned embedding per distance 0 .. max_relative-1 (farther keys share the last),
    shared by the heads. The full forward uses the skewing trick: Q @ E^T is [L, L] and a
    pad-reshape-slice lines it up with the keys, so no [L, L, D] tensor is ever built.
    A streaming chunk gathers the same logits by distance index.
    """

    def __init__(self, dim: int, heads: int, max_relative: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.max_relative = heads, dim // heads, max_relative
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.rel = nn.Parameter(torch.randn(max_relative, self.head_dim) * 0.02)  # row i: distance M-1-i
        self.dropout = nn.Dropout(dropout)

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        return KVCache.empty(batch, self.heads, self.head_dim, device, dtype)

    def _far_to_near(self, length: int) -> Tensor:
        """Embeddings for distances length-1 .. 0, [length, d]."""
        m = self.max_relative
        if length <= m:
            return self.rel[m - length:]
        return torch.cat((self.rel[:1].expand(length - m, -1), self.rel), dim=0)

    def forward(self, x: Tensor, start: int, cache: KVCache | None = None) -> Tensor:
        q, k, v = rearrange(self.to_qkv(self.norm(x)), "b n (t h d) -> t b h n d", t=3, h=self.heads)
        if cache is not None:
            k, v = cache.extend(k, v)
        c, total = q.shape[2], k.shape[2]
        qe = q @ self._far_to_near(total).t()  # [b, h, c, total]; column j is distance total-1-j
        if c == total:  # skewing trick
            srel = F.pad(qe, (1, 0)).reshape(*qe.shape[:2], c + 1, c)[:, :, 1:]
        else:  # query i (absolute start+i) and key j: distance start+i-j, column total-1-(start+i-j)
            i = torch.arange(c, device=x.device)[:, None]
            j = torch.arange(total, device=x.device)[None, :]
            srel = qe.gather(-1, (total - 1 - start - i + j).clamp(0, total - 1).expand_as(qe))
        causal = torch.ones(c, total, dtype=torch.bool, device=x.device).tril(total - c)
        scores = ((q @ k.transpose(-1, -2)) + srel) * self.head_dim ** -0.5
        probs = self.dropout(scores.masked_fill(~causal, float("-inf")).softmax(dim=-1))
        return self.dropout(self.to_out(rearrange(probs @ v, "b h n d -> b n (h d)")))


class Block(nn.Module):
    """Pre-norm residual block: attention then MLP."""

    def __init__(self, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: Tensor, start: int, rope: Any, cache: Any) -> Tensor:
        if isinstance(self.attn, RelativeAttention):
            x = x + self.attn(x, start, cache)
        else:
            x = x + self.attn(x, start, rope, cache)
        return x + self.mlp(x)


class FullAttentionDecoder(Decoder):
    """Shared body of the three baselines: a stack of Blocks with growing KV caches."""

    rotary = False

    def _new_caches(self, batch: int, device: torch.device, windows: list[int] | None) -> Any:
        dtype = self.head.weight.dtype
        return {"layers": [b.attn.new_cache(batch, device, dtype) for b in self.blocks]}

    def _body(self, x: Tensor, start: int, windows: list[int] | None, caches: Any,
              capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        if capture_last:
            raise ConfigError(f"attention capture is only for the conformer, not {self.cfg.arch}")
        rope = None
        if self.rotary:
            rope = rotary_tables(torch.arange(start, start + x.shape[1], device=x.device), self.cfg.head_dim)[0]
        for i, block in enumerate(self.blocks):
            x = block(x, start, rope, caches["layers"][i] if caches is not None else None)
        return x, None


class GPT2(FullAttentionDecoder):
    """GPT-2: learned absolute positions, full causal attention, GELU MLP.

    Past `max_seq_len` the position table runs out, so streaming slides: when a chunk would
    overflow, the cache is dropped and the last max_seq_len/2 tokens are prefilled again with
    positions restarted at 0. That costs one half-window prefill every max_seq_len/2 tokens
    (amortised O(1) prefill per token) and means the model never sees more than max_seq_len
    tokens of context. The full forward accepts at most max_seq_len tokens.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.dim)
        if cfg.position == "sinusoidal":  # fixed, not learned: the table is set once and frozen
            self.pos_emb.weight.requires_grad_(False)
        self.blocks = nn.ModuleList(
            Block(FullAttention(cfg.dim, cfg.heads, bias=True, dropout=cfg.dropout),
                  MLP(cfg.dim, cfg.ff_mult * cfg.dim, cfg.dropout)) for _ in range(cfg.depth))
        self.init_weights()
        if cfg.position == "sinusoidal":
            with torch.no_grad():
                self.pos_emb.weight.copy_(sinusoidal_table(cfg.max_seq_len, cfg.dim))

    def _embed_positions(self, start: int, length: int) -> Tensor:
        if start + length > self.cfg.max_seq_len:
            raise ConfigError(f"gpt2 sees at most max_seq_len={self.cfg.max_seq_len} tokens at once")
        return self.pos_emb(torch.arange(start, start + length, device=self.pos_emb.weight.device))

    def _new_caches(self, batch: int, device: torch.device, windows: list[int] | None) -> Any:
        caches = super()._new_caches(batch, device, windows)
        caches["history"] = WindowCache.zeros(batch, 1, self.cfg.max_seq_len // 2, 1, device, torch.long)
        return caches

    def _advance(self, tokens: Tensor, composer: Tensor, state: DecodeState,
                 capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        seen = state.caches["history"].extend(tokens[:, None, :, None])[:, 0, :, 0]
        if state.pos + tokens.shape[1] > self.cfg.max_seq_len:
            tokens = seen[:, -min(self.cfg.max_seq_len // 2, state.pos + tokens.shape[1]):]
            layers = self._new_caches(tokens.shape[0], tokens.device, None)["layers"]
            state.caches["layers"], state.pos = layers, 0
        return super()._advance(tokens, composer, state, capture_last)


class MusicTransformer(FullAttentionDecoder):
    """Music Transformer: relative attention (skewing trick), no absolute positions, GELU MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.blocks = nn.ModuleList(
            Block(RelativeAttention(cfg.dim, cfg.heads, cfg.max_relative, cfg.dropout),
                  MLP(cfg.dim, cfg.ff_mult * cfg.dim, cfg.dropout)) for _ in range(cfg.depth))
        self.init_weights()


class Llama(FullAttentionDecoder):
    """Llama: RoPE, grouped-query attention (kv_heads), SwiGLU, RMSNorm, no biases."""

    rotary = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, final_norm=nn.RMSNorm(cfg.dim))
        hidden = 64 * max(1, round(2 * cfg.ff_mult * cfg.dim / 3 / 64))  # SwiGLU keeps FF params
        self.blocks = nn.ModuleList(
            Block(FullAttention(cfg.dim, cfg.heads, cfg.kv_heads, norm=nn.RMSNorm(cfg.dim), dropout=cfg.dropout),
                  MLP(cfg.dim, hidden, cfg.dropout, norm=nn.RMSNorm(cfg.dim), gated=True))
            for _ in range(cfg.depth))
        self.init_weights()
