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

    keeps_stream_axis = True  # a one-token step hands it the summed streams [b, 1, 1, dim] (hyper.py)

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
        """x [b, n, dim], or a one-token step's [b, 1, 1, dim]; out in the same shape."""
        if hasattr(cache, "rows"):  # an exported step's time-major state (comagen/runtime/step.py)
            return self._row_step(x, cache)
        shape = x.shape
        h = F.glu(self.pointwise_in(self.norm(x.reshape(shape[0], -1, shape[-1]))), dim=-1).transpose(1, 2)
        h = F.pad(h, (self.kernel - 1, 0)) if cache is None else cache.extend(h[..., None]).squeeze(-1)
        if h.shape[-1] == self.kernel:  # one output step: a plain dot product beats conv1d's set-up cost
            h = (h * self.depthwise.weight[:, 0]).sum(-1, keepdim=True) + self.depthwise.bias[:, None]
        else:
            h = self.depthwise(h)
        h = F.silu(h).transpose(1, 2)
        return self.dropout(self.pointwise_out(self.channel_norm(h))).view(shape)

    def _row_step(self, x: Tensor, cache) -> Tensor:  # noqa: ANN001 - a step.TensorWindow over rows
        """One token [b, 1, dim], or its summed streams [b, 1, 1, dim], against the last kernel - 1
        inputs kept as rows of the same rank ([b, kernel - 1, (1,) dim]): no transposes or squeezes,
        so an exported step has up to six nodes fewer per block than with `forward`'s layout."""
        h = cache.extend(F.glu(self.pointwise_in(self.norm(x)), dim=-1))  # [b, kernel, (1,) dim]
        weight = self.depthwise.weight[:, 0].T.reshape(self.kernel, *[1] * (h.dim() - 3), -1)
        h = (h * weight).sum(1, keepdim=True) + self.depthwise.bias
        return self.dropout(self.pointwise_out(self.channel_norm(F.silu(h))))
