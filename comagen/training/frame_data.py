"""MAESTRO as piano-roll frames: each piece kept as its note spans (a few KB), frames filled per
crop, so the whole train split fits in memory and a crop costs one small fill.

Crop k of a run is a pure function of (seed, k): the same crops in the same order on a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from comagen.errors import ComagenError
from comagen.music.frames import FrameSettings, note_spans, spans_to_frames
from comagen.music.midi import PIANO_HIGH, PIANO_LOW, load_score
from comagen.training.data import Piece


@dataclass(frozen=True)
class FramePiece:
    """One piece as note spans (pitch, first frame, end frame) and its length in frames."""

    key: str
    spans: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.spans[:, 2].max()) if len(self.spans) else 0

    def window(self, start: int, length: int) -> np.ndarray:
        return spans_to_frames(self.spans, start, length)


def load_frame_pieces(pieces: list[Piece], settings: FrameSettings) -> list[FramePiece]:
    """The pieces that load (a bad file is skipped, as the token cache skips it) as note spans."""
    out = []
    for piece in pieces:
        try:
            spans = note_spans(load_score(piece.path), settings)
        except ComagenError:
            continue
        if len(spans):
            out.append(FramePiece(piece.key, spans))
    return out


def key_frequency(pieces: list[FramePiece]) -> torch.Tensor:
    """Each key's share of all frames in which it sounds (exact, from the spans)."""
    held = np.zeros(128, dtype=np.float64)
    total = 0
    for piece in pieces:
        np.add.at(held, piece.spans[:, 0], piece.spans[:, 2] - piece.spans[:, 1])
        total += piece.frames
    return torch.from_numpy((held + 1) / (total + 2)).float()


class FrameCrops:
    """Training crops of `length + 1` frames (input and next-frame target), drawn in proportion to
    piece length, transposed by up to `transpose` semitones within the piano's keys."""

    def __init__(self, pieces: list[FramePiece], length: int, seed: int, transpose: int) -> None:
        self.pieces, self.length, self.seed, self.transpose = pieces, length, seed, transpose
        sizes = np.array([max(p.frames - length, 1) for p in pieces], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def crop(self, k: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 11, k))
        piece = self.pieces[int(rng.choice(len(self.pieces), p=self.weights))]
        start = int(rng.integers(0, max(piece.frames - self.length, 1)))
        frames = piece.window(start, self.length + 1)
        keys = np.flatnonzero(frames.any(axis=0))
        if self.transpose and len(keys):
            low = max(-self.transpose, PIANO_LOW - int(keys.min()))
            high = min(self.transpose, PIANO_HIGH - int(keys.max()))
            frames = np.roll(frames, int(rng.integers(low, high + 1)) if high >= low else 0, axis=1)
        return frames

    def batch(self, first: int, size: int) -> torch.Tensor:
        """Crops first .. first+size-1 as float frames [size, length + 1, 128]."""
        return torch.from_numpy(np.stack([self.crop(first + i) for i in range(size)])).float()
