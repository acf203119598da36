"""CoMA: the conformer with multi-scale local attention and exact constant-memory streaming."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.attention import (
    MultiScaleLocalAttention,
    resolve_flex,
    step_context,
    window_contexts,
)
from comagen.model.capture import AttentionCapture
from comagen.model.config import ModelConfig
from comagen.model.conv import ConvModule
from comagen.model.decoder import Decoder
from comagen.model.full_attention import FullAttention
from comagen.model.hyper import HyperConnection, expand_streams, reduce_streams
from comagen.model.positional import DynamicPositionBias, rotary_tables


class HalfFeedForward(nn.Module):
    """Macaron half-step feed-forward: 0.5 * (LayerNorm -> Linear -> Swish -> Linear).

    Pointwise over tokens, so it takes any leading axes (a one-token step feeds it the
    hyper-connections' stream axis as is). `fold_half` moves the 0.5 into the down projection (a
    power of two: exact), which an exported step does to save a node.
    """

    keeps_stream_axis = True

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm, self.up, self.down, self.p = nn.LayerNorm(dim), nn.Linear(dim, mult * dim), \
            nn.Linear(mult * dim, dim), dropout
        self.half = 0.5

    def forward(self, x: Tensor) -> Tensor:
        h = F.dropout(F.silu(self.up(self.norm(x))), self.p, self.training)
        out = F.dropout(self.down(h), self.p, self.training)
        return out if self.half == 1.0 else self.half * out

    @torch.no_grad()
    def fold_half(self) -> None:
        self.down.weight.mul_(self.half)
        self.down.bias.mul_(self.half)
        self.half = 1.0


class ConformerBlock(nn.Module):
    """½FF -> [global attention] -> multi-scale local attention -> conv -> ½FF, each hyper-connected."""

    def __init__(self, cfg: ModelConfig, index: int) -> None:
        super().__init__()
        n, dyn, sub = cfg.hyper_streams, cfg.hyper_dynamic, 5 * index

        def wrap(branch: nn.Module, k: int) -> HyperConnection:
            return HyperConnection(cfg.dim, n, sub + k, branch, dyn)

        self.ff1 = wrap(HalfFeedForward(cfg.dim, cfg.ff_mult, cfg.dropout), 0)
        self.glob = wrap(FullAttention(cfg.dim, cfg.heads, dropout=cfg.dropout), 1) if index in cfg.global_layers \
            else None
        self.attn = wrap(MultiScaleLocalAttention(cfg.dim, cfg.heads, len(cfg.windows), cfg.dropout), 2)
        self.conv = wrap(ConvModule(cfg.dim, cfg.conv_kernel, cfg.dropout), 3)
        self.ff2 = wrap(HalfFeedForward(cfg.dim, cfg.ff_mult, cfg.dropout), 4)

    def new_cache(self, batch: int, windows: list[int], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        cache = {"attn": self.attn.branch.new_cache(batch, windows, device, dtype),
                 "conv": self.conv.branch.new_cache(batch, device, dtype)}
        if self.glob is not None:
            cache["global"] = self.glob.branch.new_cache(batch, device, dtype)
        return cache

    def forward(self, h: Tensor, ctxs: Any, start: int, rope: Any, cache: dict[str, Any] | None,
                need_probs: bool) -> tuple[Tensor, list[Tensor] | None]:
        h, _ = self.ff1(h)
        if self.glob is not None:
            h, _ = self.glob(h, start, rope, cache["global"] if cache else None)
        h, probs = self.attn(h, ctxs, cache["attn"] if cache else None, need_probs)
        h, _ = self.conv(h, cache["conv"] if cache else None)
        h, _ = self.ff2(h)
        return h, probs


class Conformer(Decoder):
    """Decoder-only CoMA conformer.

    Streaming state per block: the last max(W)-1 keys and values of each scale and the last
    kernel-1 conv inputs; its size never depends on how many tokens were generated (unless
    `global_layers` adds full-attention layers, whose KV cache grows).

    Window override (`windows=` in forward / new_state): one window per scale, each between 1
    and `window_cap`. Narrower is always safe: the query simply sees fewer keys. Wider lets the
    query see keys at distances never seen in training; with xpos the trained decay keeps
    shrinking their logits (zeta**(d/512) per channel) and rotary phases extrapolate, with dpb
    the bias MLP is evaluated at unseen log-distances. Expect mild drift, not failure.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg, i) for i in range(cfg.depth))
        self.dpb = nn.ModuleList(DynamicPositionBias(cfg.heads) for _ in cfg.windows) if cfg.position == "dpb" \
            else None
        self.init_weights()

    def reach(self, windows: list[int] | None) -> int | None:
        """Each block looks max(W) - 1 tokens back and its conv kernel - 1 more, so a token more than
        depth x (max(W) + kernel - 2) before the end cannot reach the state or the last logits. (The
        first block's input, the embeddings, is exact for every kept token; each block's output is
        exact one block's look-back later, and the last block's state looks back one.) Global layers
        see everything."""
        if self.cfg.global_layers:
            return None
        return self.cfg.depth * (max(windows or self.cfg.windows) + self.cfg.conv_kernel - 2)

    def check_windows(self, windows: list[int] | None) -> list[int]:
        if windows is None:
            return list(self.cfg.windows)
        windows = [int(w) for w in windows]
        if len(windows) != len(self.cfg.windows):
            raise ConfigError(f"windows {windows}: this model has {len(self.cfg.windows)} attention scales "
                              f"(trained windows {self.cfg.windows})")
        if any(not 1 <= w <= self.cfg.window_cap for w in windows):
            raise ConfigError(f"windows {windows}: each window must be between 1 and {self.cfg.window_cap}")
        return windows

    def _new_caches(self, batch: int, device: torch.device, windows: list[int] | None) -> list[dict[str, Any]]:
        dtype = self.head.weight.dtype
        return [block.new_cache(batch, windows or self.cfg.windows, device, dtype) for block in self.blocks]

    def _body(self, x: Tensor, start: int, windows: list[int] | None, caches: Any,
              capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        windows = windows or self.cfg.windows
        length, device, head_dim = x.shape[1], x.device, self.cfg.head_dim
        flex = caches is None and not capture_last and resolve_flex(self.cfg.attention_backend, device)
        if caches is not None and length == 1:
            ctxs = step_context(windows, start, self.cfg.heads, head_dim, self.dpb, device)
        else:
            ctxs = window_contexts(windows, length, start, head_dim, self.dpb, device, flex)
        rope = None
        if self.cfg.global_layers:
            rope = rotary_tables(torch.arange(start, start + length, device=device), head_dim)[0]
        h = expand_streams(x, self.cfg.hyper_streams)
        probs = []
        for i, block in enumerate(self.blocks):
            h, p = block(h, ctxs, start, rope, caches[i] if caches is not None else None, capture_last > 0)
            probs.append(p)
        x = reduce_streams(h, self.cfg.hyper_streams)
        if not capture_last:
            return x, None
        k = min(capture_last, length)
        return x, AttentionCapture(
            windows=list(windows),
            probs=[[p[0, :, -k:].detach().float() for p in layer] for layer in probs],
            scale_weights=torch.stack([b.attn.branch.scale_weights() for b in self.blocks]).detach().float(),
            global_layers=list(self.cfg.global_layers),
        )
