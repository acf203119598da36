"""Position signals: xpos / rotary tables and the dynamic position bias.

Angles are computed in float64 from integer positions and only then cast, so a rotary table
at position 100 000 is as exact as one at position 10. Local attention goes further and only
ever uses positions relative to its block (see attention.py), so nothing grows with the
stream length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

XPOS_SCALE_BASE = 512.0


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_tables(positions: Tensor, head_dim: int, xpos: bool = False,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(cos_q, sin_q, cos_k, sin_k), each [P, head_dim], with the xpos decay folded in.

    Apply with `x * cos + rotate_half(x) * sin`. With `xpos`, queries are scaled by
    zeta**(p / base) and keys by zeta**(-p / base), so their product decays as
    zeta**(distance / base): the decay depends on distance only (Sun et al. 2022).
    """
    pos = positions.to(torch.float64)[:, None]
    half = torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device)
    angles = pos * (10000.0 ** (-half / head_dim))
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    if not xpos:
        cos, sin = cos.to(dtype), sin.to(dtype)
        return cos, sin, cos, sin
    zeta = ((half + 0.4 * head_dim) / (1.4 * head_dim)).repeat(2)
    scale = zeta ** (pos / XPOS_SCALE_BASE)
    return ((cos * scale).to(dtype), (sin * scale).to(dtype), (cos / scale).to(dtype), (sin / scale).to(dtype))


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return torch.addcmul(x * cos, rotate_half(x), sin)


class DynamicPositionBias(nn.Module):
    """A small MLP from log(1 + distance) to one additive attention bias per head.

    The log input keeps the bias smooth when a window is widened past the distances seen in
    training (Liu et al., SwinV2 / lucidrains x-transformers).
    """

    def __init__(self, heads: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, heads))

    def forward(self, window: int) -> Tensor:
        """Bias [heads, window] for distances 0 .. window-1."""
        device = self.mlp[0].weight.device
        dist = torch.arange(window, device=device, dtype=self.mlp[0].weight.dtype)
        return self.mlp(torch.log1p(dist)[:, None]).t()
