"""What the attention figure needs: per layer and scale, where the last queries looked."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionCapture:
    """Attention of the last K queries of batch row 0.

    probs[layer][scale]: float [heads, K, W_scale]; column W-1 is the query itself, column 0
    the oldest key of its window; zeros where the window reaches before the stream start.
    scale_weights: [layers, scales], each row softmax-normalised (the learned scale mix).
    """

    windows: list[int]
    probs: list[list[torch.Tensor]]
    scale_weights: torch.Tensor
    global_layers: list[int]
