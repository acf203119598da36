"""Generating with the piano-roll transformer: frames sampled key by key, a sequence memory (the
model's streaming state) and a sectional memory for forms.

Sampling a frame of 128 independent keys (each key its own Bernoulli):
- temperature divides the logits (p = sigmoid(logit / T)); T = 0 is greedy (a key sounds when p > 1/2).
- top-p is the nucleus of each key's own two outcomes, sound or silent: an outcome whose probability
  is below 1 - top_p is never drawn, so a key with p < 1 - top_p stays silent and one with
  p > top_p always sounds. Nucleus over whole frames (2^128 of them) is not computable; per key it
  does what top-p does for tokens: it cuts the unreliable tail of each decision.
- top-k is a hand's limit: only the k likeliest keys of a frame may sound (k = 10: ten fingers
  and sustain aside). With independent keys nothing else stops a frame from filling with many
  unlikely keys at once; top-k bounds how many.
- grammar: only the piano's 88 keys (21..108) can sound, so every frame decodes to playable notes.

Forms (`comagen.generation.forms`): each section lasts `section_frames`; when a letter first opens,
the running state is remembered as that letter's memory (a copy of the streaming state: what led
into it); when the letter returns, that copy is brought back and reads the frames as they are
made, and each frame is sampled from a blend of the two states' key probabilities, weighted
toward the recalled memory over `blend_frames` (a linear ramp), so the return recalls its own
material without a jump. The running state reads every frame throughout, so what follows hears it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from comagen.errors import ConfigError
from comagen.generation.forms import parse_form
from comagen.model.pianoroll import KEYS, PianoRoll
from comagen.model.state import DecodeState
from comagen.music.frames import piano_key_mask


@dataclass(frozen=True)
class FrameSampling:
    """How a frame is drawn from its 128 key probabilities (see the module for the meanings)."""

    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature >= 0, top_k >= 0 and 0 < top_p <= 1, please")


def key_probabilities(logits: torch.Tensor, sampling: FrameSampling) -> torch.Tensor:
    """Probabilities [B, 128] that each key sounds, after temperature and the piano's keys."""
    piano = torch.from_numpy(piano_key_mask()).to(logits.device)
    scaled = logits.float() / max(sampling.temperature, 1e-6)
    return torch.sigmoid(scaled).masked_fill(~piano, 0.0)


def draw_frame(probs: torch.Tensor, sampling: FrameSampling, generator: torch.Generator) -> torch.Tensor:
    """A frame [B, 128] of 0/1 from key probabilities, with top-p per key and top-k per frame."""
    if sampling.temperature == 0:
        frame = (probs > 0.5).float()
    else:
        cut = 1.0 - sampling.top_p
        probs = torch.where(probs < cut, 0.0, torch.where(probs > sampling.top_p, 1.0, probs))
        frame = (torch.rand(probs.shape, generator=generator, device=probs.device) < probs).float()
    if sampling.top_k:
        keep = probs.topk(min(sampling.top_k, KEYS), dim=-1).indices
        frame = frame * torch.zeros_like(frame).scatter_(-1, keep, 1.0)
    return frame


@dataclass
class SectionalMemory:
    """Each letter's memory (the streaming state and next-frame logits where it first opened) and
    the recalled one while its letter returns."""

    letters: list[str]
    section_frames: int
    blend_frames: int
    memories: dict[str, tuple[DecodeState, torch.Tensor]] = field(default_factory=dict)
    recalled: DecodeState | None = None
    recalled_logits: torch.Tensor | None = None

    def weight(self, index: int, running: DecodeState, logits: torch.Tensor) -> float:
        """The recalled memory's share of frame `index`'s probabilities (0 outside a return)."""
        if not self.letters:
            return 0.0
        if index % self.section_frames == 0:
            self._open(index // self.section_frames, running, logits)
        if self.recalled is None:
            return 0.0
        return min(1.0, (index % self.section_frames + 1) / max(self.blend_frames, 1))

    def _open(self, section: int, running: DecodeState, logits: torch.Tensor) -> None:
        self.recalled = self.recalled_logits = None
        if section >= len(self.letters):  # past the form's end: free continuation
            return
        letter = self.letters[section]
        if letter in self.memories:
            state, first = self.memories[letter]
            self.recalled, self.recalled_logits = state.clone(), first.clone()
        else:
            self.memories[letter] = (running.clone(), logits.clone())

    def read(self, model: PianoRoll, frame: torch.Tensor) -> None:
        """The recalled state reads the frame just drawn, as the running one does."""
        if self.recalled is not None:
            self.recalled_logits = model.step(frame, self.recalled)[0]


@torch.inference_mode()
def generate_frames(model: PianoRoll, prompt: np.ndarray | None, frames: int, sampling: FrameSampling, seed: int,
                    form: str | None = None, section_frames: int = 64, blend_frames: int = 16) -> Iterator[np.ndarray]:
    """New frames [128] one at a time after `prompt` [L, 128] (silence when None or empty), streaming
    through the model's state; a `form` (e.g. "AABA") drives the sectional memory."""
    for frame in sample_frames(model, prompt, frames, sampling, seed, 1, form, section_frames, blend_frames):
        yield frame[0]


@torch.inference_mode()
def sample_frames(model: PianoRoll, prompt: np.ndarray | None, frames: int, sampling: FrameSampling, seed: int,
                  variations: int = 1, form: str | None = None, section_frames: int = 64,
                  blend_frames: int = 16) -> Iterator[np.ndarray]:
    """`generate_frames` for `variations` rows in one batch: frames [variations, 128] one at a time."""
    device = model.head.weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    start = prompt if prompt is not None and len(prompt) else np.zeros((1, KEYS), dtype=np.float32)
    running = model.new_state(variations, device)
    start = torch.as_tensor(np.asarray(start, dtype=np.float32), device=device)[None].expand(variations, -1, -1)
    logits, _ = model.prefill(start, running)
    memory = SectionalMemory(parse_form(form), max(section_frames, 1), blend_frames)
    for index in range(frames):
        weight = memory.weight(index, running, logits)
        probs = key_probabilities(logits, sampling)
        if weight:
            probs = (1 - weight) * probs + weight * key_probabilities(memory.recalled_logits, sampling)
        frame = draw_frame(probs, sampling, generator)
        logits, _ = model.step(frame, running)
        memory.read(model, frame)
        yield frame.cpu().numpy()


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread while frames are sampled (then as before): at batch 1 this
    model's products are too small to share; on the shared 2-core machine two threads sampled
    24-67 frames/s against 480-575 on one (`python -m comagen generate` ran at 1.25x real time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
