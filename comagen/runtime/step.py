"""The conformer's one-token step as a pure function of explicit, fixed-shape state tensors.

`StepFunction(model)(token, composer, seen, *state) -> (logits, *new_state)` runs the model's own
blocks (attention, conv, feed-forward, hyper-connections) through the same `step_context` maths as
`Conformer.step`; only the caches differ: instead of `WindowCache` buffers updated in place, each
layer's past is an input and its shifted successor an output. That is what an exporter can trace
into a graph with no Python state, and what ONNX Runtime can run.

State per block, in order (batch first, time on dim 2, like `WindowCache`):
    keys   [B, S*heads, max(W)-1, head_dim]   the last max(W)-1 keys of all scales
    values [B, S*heads, max(W)-1, head_dim]
    conv   [B, dim, kernel-1, 1]              the conv's last kernel-1 inputs
`seen` (int64 scalar) is the number of tokens already consumed: the not-yet-filled part of the
window is masked from it exactly as `step_context` masks it from `state.pos`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.attention import StepContext, step_context
from comagen.model.conformer import Conformer
from comagen.model.hyper import expand_streams, reduce_streams
from comagen.model.state import DecodeState

STATE_KINDS = ("keys", "values", "conv")


def check_exportable(model: nn.Module) -> Conformer:
    """The model if its step has a fixed-size state, else a one-line reason."""
    if not isinstance(model, Conformer):
        raise ConfigError(f"only the conformer has a fixed-size decode state to export, not {model.cfg.arch}")
    if model.cfg.global_layers:
        raise ConfigError(f"global_layers {model.cfg.global_layers} keep a growing KV cache, which a fixed-shape "
                          "ONNX step cannot hold; this checkpoint runs on the torch runtime")
    if max(model.cfg.windows) < 2 or model.cfg.conv_kernel < 2:
        raise ConfigError("windows of 1 and a conv kernel of 1 keep no state: nothing to stream")
    return model


class TensorWindow:
    """A `WindowCache` stand-in for one call: the past is a tensor, the new tail an output.

    `extend(new)` returns `[past ; new]`, as `WindowCache.extend` does, and keeps the last `keep`
    steps of it in `tail` for the caller to hand back as the next state.
    """

    def __init__(self, past: Tensor) -> None:
        self.past = past
        self.tail: Tensor | None = None

    def extend(self, new: Tensor) -> Tensor:
        out = torch.cat((self.past, new), dim=2)
        self.tail = out[:, :, new.shape[2]:]
        return out


def state_names(depth: int) -> list[str]:
    return [f"{kind}{i}" for i in range(depth) for kind in STATE_KINDS]


def state_shapes(model: Conformer, batch: int) -> list[tuple[int, ...]]:
    """Shapes of the state tensors, in `state_names` order."""
    cfg = model.cfg
    keep, heads = max(cfg.windows) - 1, len(cfg.windows) * cfg.heads
    kv = (batch, heads, keep, cfg.head_dim)
    return [kv, kv, (batch, cfg.dim, cfg.conv_kernel - 1, 1)] * cfg.depth


def state_tensors(state: DecodeState) -> list[Tensor]:
    """The exact numbers a torch `DecodeState` holds, as `StepFunction` state inputs (views, no copy)."""
    out = []
    for layer in state.caches:
        for cache in (*layer["attn"], layer["conv"]):
            out.append(cache.buf[:, :, cache.end - cache.keep:cache.end])
    return out


class StepFunction(nn.Module):
    """Pure one-token step of a conformer at its trained windows (see the module docstring)."""

    def __init__(self, model: Conformer) -> None:
        super().__init__()
        self.model = check_exportable(model)
        cfg = model.cfg
        self.wmax = max(cfg.windows)
        device = model.head.weight.device
        with torch.no_grad():  # built once, here, so a trace sees constants rather than their recipe
            self.full = step_context(list(cfg.windows), self.wmax, cfg.heads, cfg.head_dim, model.dpb, device)

    def context(self, seen: Tensor) -> StepContext:
        """`step_context` of a full window, plus the mask of the slots no token has filled yet."""
        slot = torch.arange(self.wmax, device=seen.device)
        unfilled = torch.zeros(self.wmax, device=seen.device).masked_fill(slot < self.wmax - 1 - seen, float("-inf"))
        return StepContext(self.full.windows, self.full.bias + unfilled, self.full.rotary)

    def forward(self, token: Tensor, composer: Tensor, seen: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        ctx = self.context(seen)
        x = model.token_emb(token[:, None]) + model.composer_emb(composer)[:, None]
        h = expand_streams(x, model.cfg.hyper_streams)
        tails = []
        for i, block in enumerate(model.blocks):
            keys, values, conv = (TensorWindow(t) for t in state[3 * i:3 * i + 3])
            h, _ = block(h, ctx, 0, None, {"attn": [keys, values], "conv": conv}, False)
            tails += [keys.tail, values.tail, conv.tail]
        x = reduce_streams(h, model.cfg.hyper_streams)
        return (model.head(model.norm(x))[:, -1], *tails)
