"""A yardstick for the exported step: a plain GPT-style decoder step of the flagship's size.

What a practical user would deploy instead of the conformer: pre-norm blocks with one fused QKV
projection, rotary positions, a GELU MLP and a tied head, reading one KV ring per layer the way
ring.py's scales do (the new token's key and value out, the caller writes them). Exported and
prepared exactly like the conformer's step (comagen.runtime.export), so bench/decode.py compares
the graphs, not the tooling. Its weights are random: it is for timing only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comagen.model.positional import apply_rotary, rotary_tables
from comagen.runtime.export import Recipe, prepare, trace


@dataclass(frozen=True)
class PeerConfig:
    """~10 M parameters at the flagship's vocabulary: 8 layers, width 320, 5 heads, 1,024 slots."""

    vocab_size: int = 374
    dim: int = 320
    depth: int = 8
    heads: int = 5
    slots: int = 1024
    mlp_mult: int = 4


class PeerBlock(nn.Module):
    def __init__(self, cfg: PeerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.up, self.down = nn.Linear(cfg.dim, cfg.mlp_mult * cfg.dim), nn.Linear(cfg.mlp_mult * cfg.dim, cfg.dim)

    def forward(self, x: Tensor, turn: Tensor, bias: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, ...]:
        """x [b, 1, dim]; keys, values [b, h, slots, d] -> x and the new key and value [b, h, 1, d]."""
        b = x.shape[0]
        q, k, v = self.qkv(self.norm1(x)).view(b, 1, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q * self.head_dim ** -0.5, turn), apply_rotary(k, turn)
        past = q @ keys.transpose(-1, -2) + bias  # [b, h, 1, slots]
        probs = torch.cat((past, (q * k).sum(-1, keepdim=True)), dim=-1).softmax(dim=-1)
        att = probs[..., :-1] @ values + probs[..., -1:] * v
        x = x + self.out(att.transpose(1, 2).reshape(b, 1, -1))
        x = x + self.down(F.gelu(self.up(self.norm2(x))))
        return x, k, v


class PeerStep(nn.Module):
    """`(token, seen, *rings) -> (logits, *new keys and values)`; rings per layer: keys, values."""

    def __init__(self, cfg: PeerConfig = PeerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(PeerBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.head.weight = self.emb.weight
        with torch.no_grad():
            q_table = rotary_tables(torch.arange(2 * cfg.slots), cfg.dim // cfg.heads)[0]
        self.register_buffer("turns", torch.view_as_real(q_table), persistent=False)

    def forward(self, token: Tensor, seen: Tensor, *rings: Tensor) -> tuple[Tensor, ...]:
        slot = torch.arange(self.cfg.slots)
        bias = torch.zeros(self.cfg.slots).masked_fill(slot >= seen, float("-inf"))
        turn = torch.view_as_complex(self.turns.index_select(0, torch.remainder(seen, 2 * self.cfg.slots)[None]))
        x, updates = self.emb(token[:, None]), []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, turn, bias, rings[2 * i], rings[2 * i + 1])
            updates += [k, v]
        return (self.head(self.norm(x))[:, -1], *updates)

    def example_inputs(self, batch: int, seen: int) -> tuple[Tensor, ...]:
        cfg = self.cfg
        ring = (batch, cfg.heads, cfg.slots, cfg.dim // cfg.heads)
        return (torch.zeros(batch, dtype=torch.long), torch.tensor(seen),
                *[torch.randn(ring) for _ in range(2 * cfg.depth)])

    def names(self) -> tuple[list[str], list[str]]:
        """Input and output names of the exported graph."""
        rings = [f"{kind}{i}" for i in range(self.cfg.depth) for kind in ("keys", "values")]
        return ["token", "seen", *rings], ["logits", *[f"{r}_next" for r in rings]]


def export_peer(folder: Path, recipes: dict[str, Recipe], seed: int = 0) -> dict[str, Path]:
    """The peer's step traced once (random weights from `seed`) and prepared as fp32 and int8 per
    recipe: {"fp32 <label>" | "int8 <label>": file in `folder`}; a recipe with weight blocks as int8
    only (its fp32 file would be another recipe's)."""
    torch.manual_seed(seed)
    step = PeerStep().eval()
    inputs, outputs = step.names()
    rows = {0: torch.export.Dim("batch", min=1)}
    traced = folder / "peer.traced.onnx"
    trace(step, step.example_inputs(2, 3), traced, inputs, outputs, (rows, None, tuple([rows] * (len(inputs) - 2))))
    files = {}
    for label, recipe in recipes.items():
        for precision in ("int8",) if recipe.block_bits else ("fp32", "int8"):
            files[f"{precision} {label}"] = folder / f"peer.{precision}.{label}.onnx"
            prepare(traced, files[f"{precision} {label}"], precision, recipe)
    return files
