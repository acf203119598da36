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
