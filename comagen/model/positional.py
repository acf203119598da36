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


def rotary_tables(positions: Tensor, head_dim: int, xpos: bool = False) -> tuple[Tensor, Tensor]:
    """(q_table, k_table): complex [P, head_dim / 2], to use with `apply_rotary`.

    Channel pairs (2i, 2i+1) turn by p * 10000**(-2i/d). With `xpos`, queries are also scaled
    by zeta**(p / base) and keys by zeta**(-p / base), so their product decays as
    zeta**(distance / base): the decay depends on distance only (Sun et al. 2022).
    """
    pos = positions.to(torch.float64)[:, None]
    even = torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device)
    rot = torch.polar(torch.ones_like(even), pos * (10000.0 ** (-even / head_dim)))
    if not xpos:
        rot = rot.to(torch.complex64)
        return rot, rot
    scale = ((even + 0.4 * head_dim) / (1.4 * head_dim)) ** (pos / XPOS_SCALE_BASE)
    return (rot * scale).to(torch.complex64), (rot / scale).to(torch.complex64)


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """Vaswani et al.'s absolute positions [length, dim]: sin and cos of p * 10000**(-2i/dim), in
    halves, computed in float64 and then cast, for the pianoroll and (on request) gpt2."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    angle = pos * (10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    return torch.cat((angle.sin(), angle.cos()), dim=-1).float()


def apply_rotary(x: Tensor, table: Tensor) -> Tensor:
    """Rotate (and xpos-scale) channel pairs of x [..., P, d] by a complex table [P, d / 2]: one multiply."""
    z = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(z * table).flatten(-2).to(x.dtype)


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
