"""The attention view: what the conformer's scales looked at for the last tokens of a piece."""

from __future__ import annotations

import torch

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError
from comagen.model import AttentionCapture


def capture_attention(bundle: Bundle, ids: list[int], composer: int = 0, windows: list[int] | None = None,
                      last: int = 32) -> AttentionCapture:
    """Attention of the last `last` tokens of a sequence (re-run over just enough context)."""
    model = bundle.model
    if bundle.config.arch != "conformer":
        raise ComagenError("the attention view is for the conformer's multi-scale attention")
    reach = max(windows or bundle.config.windows) + last
    context = [bundle.tokenizer.bos_id, *ids][-reach:] if bundle.config.global_layers == [] \
        else [bundle.tokenizer.bos_id, *ids]
    device = next(model.parameters()).device
    with torch.inference_mode():
        _, capture = model(torch.tensor([context], device=device), torch.tensor([composer], device=device),
                           windows=windows, capture_last=min(last, len(context)))
    return capture
