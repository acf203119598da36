"""Figure of what each attention scale looks at, and how much each scale counts.

Takes any object shaped like ``comagen.model.AttentionCapture`` (``windows``, ``probs``,
``scale_weights``, ``global_layers``) and does not import the model, so drawing needs no
model code and tests can pass a plain namespace of tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

MAX_Y_LABELS = 12  # more token labels than this on a panel become unreadable
PANEL_WIDTH = 3.4
ROW_HEIGHT = 1.9


def _to_numpy(values: Any) -> np.ndarray:
    """A float numpy copy of a tensor that may live on a GPU or carry gradients."""
    if hasattr(values, "detach"):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=float)


def attention_figure(capture: Any, token_labels: Sequence[str] | None = None) -> Figure:
    """One heatmap per (layer, scale) plus the learned scale weights of every layer.

    Each heatmap shows the last K queries (rows, newest at the bottom) against the keys of that
    scale's window, x = distance back in tokens (0 = the query itself), averaged over heads.
    All heatmaps share one square-root colour scale so the scales can be compared. The
    right-hand panel gives the softmax scale weights per layer with their values written in.
    Layers that also carry full (global) attention are marked; only their local scales are
    drawn. ``token_labels`` names the K queries on the y axis.
    """
    windows = list(capture.windows)
    layers = list(range(len(capture.probs)))
    weights = _to_numpy(capture.scale_weights)
    rows = max(len(layers), 1)
    fig = Figure(
        figsize=(PANEL_WIDTH * len(windows) + 3.2, ROW_HEIGHT * rows + 1.2),
        dpi=100, layout="constrained",
    )
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, len(windows) + 1, width_ratios=[1.0] * len(windows) + [0.8])

    maps = {
        (layer, scale): _to_numpy(capture.probs[layer][scale]).mean(axis=0)[:, ::-1]
        for layer in layers for scale in range(len(windows))
    }
    vmax = max((float(m.max()) for m in maps.values()), default=1.0) or 1.0
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    heat_axes = []
    image = None
    for row, layer in enumerate(layers):
        for scale, window in enumerate(windows):
            ax = fig.add_subplot(grid[row, scale])
            heat_axes.append(ax)
            values = maps[(layer, scale)]
            queries, keys = values.shape
            image = ax.imshow(values, aspect="auto", cmap="magma", norm=norm,
                              interpolation="nearest", extent=(-0.5, keys - 0.5, queries - 0.5, -0.5))
            if row == 0:
                ax.set_title(f"scale {scale}: window {window}")
            if row == rows - 1:
                ax.set_xlabel("tokens back")
            if scale == 0:
                _label_queries(ax, queries, token_labels)
                ax.set_ylabel(f"{_layer_name(layer, capture.global_layers)}\nquery", fontsize=9)
            else:
                ax.set_yticks([])
    if not layers:
        ax = fig.add_subplot(grid[0, : len(windows)])
        ax.axis("off")
        ax.text(0.5, 0.5, "no attention captured", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    if image is not None:
        fig.colorbar(image, ax=heat_axes, label="attention (mean over heads)", shrink=0.8)

    _draw_scale_weights(fig.add_subplot(grid[:, -1]), weights, windows, capture.global_layers)
    return fig


def _layer_name(layer: int, global_layers: Sequence[int]) -> str:
    """'layer 2', or 'layer 2 (+global)' when that layer also has full attention."""
    return f"layer {layer}" + (" (+global)" if layer in global_layers else "")


def _label_queries(ax: Any, queries: int, token_labels: Sequence[str] | None) -> None:
    """Name the query rows by token text when given, else by offset from the newest token."""
    step = max(1, math.ceil(queries / MAX_Y_LABELS))
    ticks = list(range(queries - 1, -1, -step))[::-1]
    if token_labels is not None and len(token_labels) == queries:
        ax.set_yticks(ticks, [token_labels[i] for i in ticks], fontsize=7)
    else:
        ax.set_yticks(ticks, [str(i - queries + 1) for i in ticks], fontsize=7)


def _draw_scale_weights(ax: Any, weights: np.ndarray, windows: list[int],
                        global_layers: Sequence[int]) -> None:
    """Heatmap of the layers x scales softmax weights, each cell annotated with its value."""
    ax.imshow(weights, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0)
    for (layer, scale), value in np.ndenumerate(weights):
        ax.text(scale, layer, f"{value:.2f}", ha="center", va="center", fontsize=9,
                color="white" if value > 0.6 else "black")
    ax.set_xticks(range(len(windows)), [f"W={w}" for w in windows])
    ax.set_yticks(
        range(weights.shape[0]),
        [_layer_name(i, global_layers) for i in range(weights.shape[0])],
    )
    ax.set_title("learned scale weights")


def head_figure(maps: Sequence[Any], reach: int = 64) -> Figure:
    """The piano-roll model's attention: one heatmap per (layer, head), each of the last K frames
    (rows, newest at the bottom) against how many frames back it looks (0 = itself, up to `reach`).
    ``maps`` holds per layer [heads, K, L]: the last K queries over all L frames (as
    ``PianoRoll.attention`` gives them). One square-root colour scale for all."""
    layers = [_to_numpy(m) for m in maps]
    heads = max((m.shape[0] for m in layers), default=1)
    back = [_frames_back(m, reach) for m in layers]
    vmax = max((float(b.max()) for b in back), default=1.0) or 1.0
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    fig = Figure(figsize=(PANEL_WIDTH * heads, ROW_HEIGHT * max(len(layers), 1) + 1.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes, image = [], None
    for layer, values in enumerate(back):
        for head in range(values.shape[0]):
            ax = fig.add_subplot(len(layers), heads, layer * heads + head + 1)
            axes.append(ax)
            image = ax.imshow(values[head], aspect="auto", cmap="magma", norm=norm, interpolation="nearest")
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.set_xlabel("frames back" if layer == len(back) - 1 else "")
            _label_queries(ax, values.shape[1], None)
    if image is not None:
        fig.colorbar(image, ax=axes, label="attention", shrink=0.8)
    return fig


def _frames_back(probs: np.ndarray, reach: int) -> np.ndarray:
    """[heads, K, L] attention of the last K of L frames -> [heads, K, reach] by distance back."""
    heads, queries, length = probs.shape
    reach = min(reach, length)
    position = np.arange(length - queries, length)[:, None] - np.arange(reach)[None, :]  # the key d frames back
    values = np.take_along_axis(probs, np.clip(position, 0, None)[None].repeat(heads, 0), axis=2)
    return np.where(position[None] >= 0, values, 0.0)
