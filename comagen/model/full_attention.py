"""Full causal attention with a growing KV cache: the conformer's optional global layers and the
GPT-2 / Music Transformer / LLaMA baselines it is compared with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from comagen.model.positional import apply_rotary
from comagen.model.state import KVCache


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
            causal = bool(c > 1)  # a plain bool also under torch.jit.trace (the pianoroll's TorchScript copy)
        elif c > 1:
            mask = torch.ones(c, total, dtype=torch.bool, device=x.device).tril(total - c)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             dropout_p=self.dropout.p if self.training else 0.0,
                                             enable_gqa=self.kv_heads != self.heads)
        return self.dropout(self.to_out(rearrange(out, "b h n d -> b n (h d)")))
