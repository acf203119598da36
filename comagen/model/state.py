"""Streaming decode state: fixed-size windows for local layers, growing caches for full attention.

All buffers keep time on dim 2 and batch on dim 0, so one `select` serves every kind.
Buffers are updated in place by `prefill`/`step`; `clone()` before branching a generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


class WindowCache:
    """The last `keep` time steps of a [B, C, T, D]-shaped stream, plus slack to append into.

    `extend(new)` returns `[past keep steps ; new]` as one contiguous-in-time view and keeps the
    tail. Appending writes into preallocated slack; once per `room` steps the tail is moved
    to the front, so a step costs O(keep) amortised-free copies and no allocation.
    """

    def __init__(self, buf: Tensor, keep: int, end: int | None = None) -> None:
        self.buf, self.keep = buf, keep
        self.end = keep if end is None else end

    @classmethod
    def zeros(cls, batch: int, channels: int, keep: int, width: int, device: Any, dtype: torch.dtype) -> WindowCache:
        """A cache whose past is `keep` zero steps; the slack after it is written before it is read, so
        it is left unfilled (a flagship state's slack is 40 MB: filling it cost a prefill ~10 ms)."""
        room = max(keep, 16)
        buf = torch.empty(batch, channels, keep + room, width, device=device, dtype=dtype)
        buf[:, :, :keep] = 0
        return cls(buf, keep)

    def extend(self, new: Tensor) -> Tensor:
        c, keep = new.shape[2], self.keep
        if self.end + c > self.buf.shape[2]:
            if keep + c > self.buf.shape[2]:  # a long prompt: concatenate once, keep only the tail
                out = torch.cat((self.buf[:, :, self.end - keep:self.end], new), dim=2)
                self.buf[:, :, :keep] = out[:, :, out.shape[2] - keep:]
                self.end = keep
                return out
            self.buf[:, :, :keep] = self.buf[:, :, self.end - keep:self.end].clone()
            self.end = keep
        self.buf[:, :, self.end:self.end + c] = new
        self.end += c
        return self.buf[:, :, self.end - keep - c:self.end]

    def clone(self) -> WindowCache:
        return WindowCache(self.buf.clone(), self.keep, self.end)

    def select(self, idx: Tensor) -> WindowCache:
        return WindowCache(self.buf.index_select(0, idx), self.keep, self.end)

    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()


class KVCache:
    """Keys and values of everything seen so far ([B, H, T, D]); capacity doubles when full."""

    def __init__(self, k: Tensor, v: Tensor, length: int = 0) -> None:
        self.k, self.v, self.length = k, v, length

    @classmethod
    def empty(cls, batch: int, heads: int, head_dim: int, device: Any, dtype: torch.dtype,
              capacity: int = 256) -> KVCache:
        shape = (batch, heads, capacity, head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        n = self.length + k.shape[2]
        if n > self.k.shape[2]:
            cap = max(n, 2 * self.k.shape[2])
            grow = (0, 0, 0, cap - self.k.shape[2])
            self.k, self.v = torch.nn.functional.pad(self.k, grow), torch.nn.functional.pad(self.v, grow)
        self.k[:, :, self.length:n] = k
        self.v[:, :, self.length:n] = v
        self.length = n
        return self.k[:, :, :n], self.v[:, :, :n]

    def clone(self) -> KVCache:
        return KVCache(self.k.clone(), self.v.clone(), self.length)

    def select(self, idx: Tensor) -> KVCache:
        return KVCache(self.k.index_select(0, idx), self.v.index_select(0, idx), self.length)

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


def _map(tree: Any, fn: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map(v, fn) for v in tree]
    if isinstance(tree, Tensor):
        return fn(tree)
    return tree if tree is None else fn(tree)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _leaves(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _leaves(v)]
    return [] if tree is None else [tree]


@dataclass
class DecodeState:
    """Everything a model needs to continue a batch of streams one token at a time.

    `pos` counts tokens consumed so far (the same for every row); `windows` are the attention
    windows this state was sized for (conformer); `caches` is a tree (dicts/lists) of
    WindowCache / KVCache / tensors, each with batch on dim 0.
    """

    pos: int
    windows: list[int] | None
    caches: Any = field(default_factory=dict)

    def clone(self) -> DecodeState:
        return DecodeState(self.pos, self.windows, _map(self.caches, lambda c: c.clone()))

    def select(self, idx: Tensor) -> DecodeState:
        """Rows `idx` of the batch, in that order: reorder, repeat or subset."""
        return DecodeState(self.pos, self.windows,
                           _map(self.caches, lambda c: c.index_select(0, idx) if isinstance(c, Tensor)
                                else c.select(idx)))

    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() if isinstance(c, Tensor) else c.nbytes()
                   for c in _leaves(self.caches))
