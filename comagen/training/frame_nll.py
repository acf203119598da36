"""Frame NLL, the classic piano-roll measure: nats per frame, the binary cross-entropy of the 128
keys summed over keys and averaged over frames, for the model and for two floors a model must beat:
each key's training frequency, and "repeat the last frame" (each key keeps or flips its state with
the per-key rates of the training frames)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from comagen.model.pianoroll import PianoRoll
from comagen.training.frame_data import FramePiece

EPS = 1e-6


def piece_frames(piece: FramePiece, max_frames: int) -> np.ndarray:
    """The first `max_frames` + 1 frames of a piece (the +1: the last one is only a target)."""
    return piece.window(0, min(piece.frames, max_frames + 1))


@torch.no_grad()
def model_nll(model: PianoRoll, pieces: list[FramePiece], max_frames: int, device: torch.device | str) -> float:
    """Nats per frame over the first `max_frames` predicted frames of each piece, each frame read
    with a memory of up to `model.memory` frames (windows of the memory, stepping by half of it)."""
    total, count = 0.0, 0
    for piece in pieces:
        frames = torch.from_numpy(piece_frames(piece, max_frames)).float().to(device)[None]
        n, begin = frames.shape[1] - 1, 0
        while begin < n:
            stop = min(begin + (model.memory if begin == 0 else model.memory // 2), n)
            start = max(0, stop - model.memory)
            logits = model(frames[:, start:stop])[:, begin - start:]
            target = frames[:, begin + 1:stop + 1]
            total += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
            count, begin = count + target.shape[1], stop
    return total / max(count, 1)


def key_rates(pieces: list[FramePiece], max_frames: int) -> dict[str, np.ndarray]:
    """Per key: how often it sounds, and how often it sounds after sounding / after silence."""
    on = stay = stay_n = start = start_n = 0.0
    frames_n = 0
    for piece in pieces:
        fr = piece_frames(piece, max_frames).astype(np.float64)
        on, frames_n = on + fr.sum(0), frames_n + len(fr)
        prev, nxt = fr[:-1], fr[1:]
        stay, stay_n = stay + (prev * nxt).sum(0), stay_n + prev.sum(0)
        start, start_n = start + ((1 - prev) * nxt).sum(0), start_n + (1 - prev).sum(0)
    clip = lambda x: np.clip(x, EPS, 1 - EPS)  # noqa: E731 - a short local helper
    return {"frequency": clip((on + 1) / (frames_n + 2)), "stay": clip((stay + 1) / (stay_n + 2)),
            "start": clip((start + 1) / (start_n + 2))}


def floor_nll(rates: dict[str, np.ndarray], pieces: list[FramePiece], max_frames: int) -> dict[str, float]:
    """Nats per frame of the two floors on `pieces` (same frames as `model_nll` scores)."""
    freq_total = repeat_total = 0.0
    count = 0
    for piece in pieces:
        fr = piece_frames(piece, max_frames).astype(np.float64)
        prev, target = fr[:-1], fr[1:]
        p_freq = np.broadcast_to(rates["frequency"], target.shape)
        p_rep = np.where(prev > 0, rates["stay"], rates["start"])
        freq_total += _bce(p_freq, target)
        repeat_total += _bce(p_rep, target)
        count += len(target)
    return {"key_frequency": freq_total / max(count, 1), "repeat_last_frame": repeat_total / max(count, 1)}


def _bce(p: np.ndarray, target: np.ndarray) -> float:
    return float(-(target * np.log(p) + (1 - target) * np.log(1 - p)).sum())
