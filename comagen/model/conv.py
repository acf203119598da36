"""The conformer convolution module, causal so that it can stream one token at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comagen.model.state import WindowCache


class ConvModule(nn.Module):
    """LayerNorm -> pointwise (2x) -> GLU -> causal depthwise conv -> Swish -> LayerNorm -> pointwise -> dropout.

    The depthwise conv only looks back (kernel - 1) steps, so a stream needs just those inputs.
    The norm after the conv is over channels per step (not batch norm), which keeps it causal.
    """

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.channel_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> WindowCache:
        dim = self.depthwise.in_channels
        return WindowCache.zeros(batch, dim, self.kernel - 1, 1, device, dtype)

    def forward(self, x: Tensor, cache: WindowCache | None = None) -> Tensor:
        h = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)  # [b, dim, n]
        h = F.pad(h, (self.kernel - 1, 0)) if cache is None else cache.extend(h[..., None]).squeeze(-1)
        if h.shape[-1] == self.kernel:  # one output step: a plain dot product beats conv1d's set-up cost
            h = (h * self.depthwise.weight[:, 0]).sum(-1, keepdim=True) + self.depthwise.bias[:, None]
        else:
            h = self.depthwise(h)
        h = F.silu(h).transpose(1, 2)
        return self.dropout(self.pointwise_out(self.channel_norm(h)))
