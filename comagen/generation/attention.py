"""The attention view: what the conformer's scales looked at for the last tokens of a piece, or the
piano-roll model's heads for the last frames."""

from __future__ import annotations

import torch

from comagen.bundle.checkpoint import Bundle
from comagen.bundle.pianoroll import FrameBundle
from comagen.errors import ComagenError
from comagen.model import AttentionCapture
from comagen.music.frames import note_spans, spans_to_frames


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


def capture_frame_attention(bundle: FrameBundle, ids: list[int], last: int = 24) -> list[torch.Tensor]:
    """The piano-roll model's attention (per layer [heads, last, L]) of the last `last` frames of
    the piece `ids` stand for, read over its last memory of frames."""
    spans = note_spans(bundle.tokenizer.decode_ids(ids), bundle.frames)
    total = int(spans[:, 2].max()) if len(spans) else 1
    start = max(total - bundle.model.memory, 0)
    frames = torch.from_numpy(spans_to_frames(spans, start, total - start)).float()[None]
    return bundle.model.attention(frames.to(bundle.model.head.weight.device), last)
