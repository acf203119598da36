"""Hyper-connections (Zhu et al. 2024): n residual streams with learned mixing around each sub-layer.

With n = 1 a wrapper is exactly the pre-norm residual `x + f(x)` (f holds its own norm), with
no extra parameters, so the plain conformer is the n = 1 special case.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import repeat
from torch import Tensor, nn


class HyperConnection(nn.Module):
    """Wraps one branch f. Streams h [b, n_tok, s, d]:

    x_in = sum_s alpha_s h_s        (static one-hot start + optional input-dependent part)
    h'   = M h + beta (x) f(x_in)   (M starts as identity; beta starts at ones)

    A one-token step sums and mixes the streams as matmuls (the fewest nodes in an exported step),
    and hands a branch that says it takes them (`branch.keeps_stream_axis`: the feed-forwards, the
    local attention and the conv) the summed streams with their axis kept, which saves a squeeze and an
    unsqueeze in an exported step;
    many tokens as a weighted sum and an einsum: as matmuls they would be one tiny product per token
    (a 330-token prompt's prefill spent a fifth of its time there).
    """

    def __init__(self, dim: int, streams: int, layer_index: int, branch: nn.Module, dynamic: bool = True) -> None:
        super().__init__()
        self.branch, self.streams = branch, streams
        if streams == 1:
            return
        # one-hot and identity written with ops the meta device runs natively (its eye and one_hot import
        # torch's compiler, a second of every process that checks a bundle's shapes: bundle.checkpoint)
        self.alpha = nn.Parameter(torch.zeros(streams).index_fill_(0, torch.tensor([layer_index % streams]), 1.0))
        self.mix = nn.Parameter(torch.zeros(streams, streams).fill_diagonal_(1.0))
        self.beta = nn.Parameter(torch.ones(streams))
        self.dynamic = dynamic
        if dynamic:
            self.norm = nn.LayerNorm(dim)
            self.dyn_proj = nn.Parameter(torch.zeros(dim, 2))  # zero: starts as the static mixing
            self.dyn_scale = nn.Parameter(torch.full((2,), 1e-2))

    def forward(self, h: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Any]:
        """Returns the new streams and whatever extra the branch returned (or None)."""
        if self.streams == 1:
            out = self.branch(h, *args, **kwargs)
            y, extra = out if isinstance(out, tuple) else (out, None)
            return h + y, extra
        weights = torch.stack((self.alpha, self.beta), -1)  # [s, 2]: alpha and beta side by side
        if self.dynamic:
            weights = weights + torch.tanh(self.norm(h) @ self.dyn_proj) * self.dyn_scale  # [..., s, 2]
        step = h.shape[1] == 1
        keep = step and getattr(self.branch, "keeps_stream_axis", False)  # takes [b, 1, 1, d] as is
        x = (weights[..., :1].transpose(-1, -2) @ h) if step else (weights[..., :1] * h).sum(-2)
        out = self.branch(x if keep or not step else x.squeeze(-2), *args, **kwargs)
        y, extra = out if isinstance(out, tuple) else (out, None)
        mixed = self.mix @ h if step else torch.einsum("st,bntd->bnsd", self.mix, h)
        return mixed + weights[..., 1:] * (y if keep else y.unsqueeze(-2)), extra


def expand_streams(x: Tensor, streams: int) -> Tensor:
    return x if streams == 1 else repeat(x, "b n d -> b n s d", s=streams)


def reduce_streams(h: Tensor, streams: int) -> Tensor:
    return h if streams == 1 else h.sum(dim=-2)
