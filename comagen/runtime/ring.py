"""Ring-buffer attention for the exported step: each scale reads only its own window, in place.

The torch stream keeps, per layer, the last max(W)-1 keys of every scale in time order and rotates
them to their window positions on every step. An exported step that did the same would copy the
whole window into the graph and out again each token: for the flagship (windows up to 1024) that
is ~80 MB of memory traffic per token, more than all its weights. Here instead:

- each scale s keeps a ring of exactly W_s - 1 past keys/values (token at position p in slot
  p mod (W_s - 1)), so a 64-window scale never reads the 1024-window scale's past;
- the step reads the rings as inputs and returns only the new token's key and value, which the
  caller writes into slot `seen mod (W_s - 1)`: nothing the size of a window moves per token;
- with xpos, keys are stored already rotated to their position relative to an origin o, and the
  query is rotated to its own (x / positional.py: the product depends on the distance only). The
  caller keeps `offset = seen - o` within [0, 2 max(W)] by re-basing the stored keys once every
  max(W) tokens (`rebase_factor`), so no angle or xpos scale ever grows with the stream.
- order in the ring does not matter to attention; the mask (slots not yet written) and the dpb
  bias (a function of each slot's distance) are computed from `seen` inside the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from comagen.model.positional import rotary_tables


@dataclass
class RingContext:
    """What every layer's ring attention needs for the current token, built once per step."""

    heads: int
    rotation: tuple[Tensor, Tensor] | None  # as `turn` takes it: the (re, im) parts, each [2, 1, 1, 1, d], of
    # the query's xpos rotation at `offset` and the new key's (as stored), stacked so that one pass turns
    # both; split here, once a step, rather than indexed in every layer (None: dpb)
    ring_bias: list[Tensor]  # per scale: [h or 1, 1, W-1]: -inf for unwritten slots, + dpb by distance
    new_bias: list[Tensor]  # per scale: [h or 1, 1, 1]: the bias at distance 0


MIN_WINDOW = 3  # the narrowest window an export serves: the tracer would fix a ring axis of one slot at 1


def export_serves(windows: list[int], trained: list[int]) -> bool:
    """Whether a step exported at the `trained` windows streams at `windows`: any from MIN_WINDOW up to
    each scale's trained width (each ring's size is an axis of the graph)."""
    return all(MIN_WINDOW <= w <= t for w, t in zip(windows, trained, strict=True))


def ring_slots(window: int) -> int:
    return window - 1


def ring_context(slots: list[int], heads: int, dpb: nn.ModuleList | None, seen: Tensor, offset: Tensor,
                 tables: Tensor | None) -> RingContext:
    """Masks and biases of every scale's ring of `slots` slots (its window less one, read from the
    ring's own shape: an export serves any narrower window) for the token at position `seen` (int64
    scalars)."""
    ring_bias, new_bias = [], []
    for s, k in enumerate(slots):
        slot = torch.arange(k, device=seen.device)
        unwritten = torch.zeros(k, device=seen.device).masked_fill(slot >= seen, float("-inf"))
        if dpb is None:
            ring_bias.append(unwritten[None, None])
            new_bias.append(torch.zeros(1, 1, 1, device=seen.device))
            continue
        table = dpb[s](k + 1)  # [h, w] for distances 0 .. w-1
        distance = 1 + torch.remainder(seen - 1 - slot, slot[-1] + 1)  # by k as a tensor: k may be an axis size
        ring_bias.append((table[:, distance] + unwritten)[:, None])
        new_bias.append(table[:, :1, None])
    if tables is None:
        return RingContext(heads, None, ring_bias, new_bias)
    rotation = tables.index_select(0, offset[None])[0, :, :, None, None, None]  # (re, im) parts x (query, key)
    return RingContext(heads, (rotation[0], rotation[1]), ring_bias, new_bias)


def offset_tables(wmax: int, head_dim: int, device: torch.device) -> Tensor:
    """xpos query and key rotations at offsets 0 .. 2 wmax from the origin (the range `offset` stays
    in), as one real [P, 2, 2, d] tensor for `turn` (an exporter indexes real tensors, not complex
    ones): dim 1 the (re, im) parts, dim 2 query then key."""
    tables = rotary_tables(torch.arange(2 * wmax + 1, device=device), head_dim, xpos=True)
    return torch.stack([turn_table(t) for t in tables], 2)


def turn_table(table: Tensor) -> Tensor:
    """A complex rotary table [P, d/2] as real [P, 2, d]: each pair's (re, re) and (-im, im)."""
    re, im = table.real.repeat_interleave(2, -1), table.imag.repeat_interleave(2, -1)
    return torch.stack((re, im * torch.tensor([-1.0, 1.0], device=table.device).repeat(table.shape[-1])), 1)


def turn(x: Tensor, table: tuple[Tensor, Tensor]) -> Tensor:
    """`apply_rotary` of x [..., d] by one `turn_table` row's two parts, as a graph of six plain ops
    rather than complex arithmetic's thirteen: (a + ib)(c + is) = (ac - bs) + i(as + bc), pair-swapped."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * table[0] + swapped * table[1]


def rebase_factor(shift: int, head_dim: int) -> Tensor:
    """What stored keys are multiplied by when the origin moves `shift` positions later."""
    return rotary_tables(torch.tensor([-shift]), head_dim, xpos=True)[1]


class RingLayer:
    """One layer's rings, handed to `MultiScaleLocalAttention` as its cache: it attends, and keeps the
    new token's (stored-form) key and value for the caller to write back."""

    def __init__(self, ctx: RingContext, keys: list[Tensor], values: list[Tensor]) -> None:
        self.ctx, self.keys, self.values = ctx, keys, values
        self.new_k: Tensor | None = None
        self.new_v: Tensor | None = None

    def attend(self, qk: Tensor, v: Tensor, weights: Tensor) -> Tensor:
        """qk [2, b, S*h, 1, d] (query, key) and v [b, S*h, 1, d] of the new token -> the scale-mixed
        output [b, h*d], the heads side by side (one token: a reshape, not a transpose)."""
        ctx, h = self.ctx, self.ctx.heads
        q, k = (qk if ctx.rotation is None else turn(qk, ctx.rotation)).unbind(0)
        self.new_k, self.new_v = k, v
        outs = []
        nows = (q * k).sum(-1, keepdim=True).split(h, dim=1)  # every scale's score of the new token at once
        for s, (ring_k, ring_v) in enumerate(zip(self.keys, self.values, strict=True)):
            heads = slice(s * h, (s + 1) * h)
            qs, vs = q[:, heads], v[:, heads]
            now = nows[s] + ctx.new_bias[s]  # [b, h, 1, 1]
            past = qs @ ring_k.transpose(-1, -2) + ctx.ring_bias[s]  # [b, h, 1, W-1]
            probs = torch.cat((past, now), dim=-1).softmax(dim=-1)
            outs.append(probs[..., :-1] @ ring_v + probs[..., -1:] * vs)
        b = q.shape[0]
        return (weights @ torch.cat(outs, 1).view(b, len(outs), -1)).view(b, -1)  # cat: no unsqueezes
