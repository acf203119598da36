"""Continuing piano audio: the prompt cut into beats at its tempo, encoded by the codec, continued code by
code by the melformer (a KV-cached llama), and each new beat decoded as soon as its codes exist and put
back onto the prompt's tempo, so a caller can play beat k while beat k + 1 is sampled.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from comagen.audio.beatfile import BeatAudio
from comagen.audio.convert import beat_grid, from_beats, to_beats
from comagen.errors import AudioError

MAX_BEATS = 1024  # a continuation longer than this is a mistake on the command line, not a request


def check_beats(beats: int) -> None:
    """A continuation length the command line accepts, or one line."""
    if not 1 <= beats <= MAX_BEATS:
        raise AudioError(f"--beats {beats}: give 1 to {MAX_BEATS} beats")


def prompt_codes(codec: torch.nn.Module, samples: np.ndarray, rate: int, bpm: float) -> tuple[torch.Tensor, np.ndarray]:
    """The prompt's whole beats as codes [1, beats * codes_per_beat] and its beat boundaries (seconds)."""
    grid = beat_grid(len(samples) / rate, bpm)
    if len(grid) < 2:
        raise AudioError(f"the prompt is shorter than one beat at {bpm:g} bpm")
    beats = to_beats(samples.mean(axis=1, keepdims=True), rate, grid, codec.cfg.samples_per_beat)
    wave = torch.from_numpy(beats.blocks.reshape(-1)).to(next(codec.parameters()).device)
    return codec.encode(wave[None]), grid


def _sample(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator) -> torch.Tensor:
    logits = logits.float() / max(temperature, 1e-5)
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def continue_codes(melformer: torch.nn.Module, codes: torch.Tensor, count: int, temperature: float = 1.0,
                   top_k: int = 0, seed: int = 0) -> Iterator[torch.Tensor]:
    """`count` new codes, one [1] tensor at a time. Past the trained length the context slides: the last
    half window is prefilled again, so positions never run beyond what the model learned."""
    window = melformer.cfg.max_seq_len
    composer = torch.zeros(1, dtype=torch.long, device=codes.device)
    generator = torch.Generator(device=codes.device).manual_seed(seed)
    seen = codes[:, -window // 2:]
    logits, state = melformer.prefill(seen, composer, melformer.new_state(1))
    for _ in range(count):
        code = _sample(logits, temperature, top_k, generator)
        yield code
        seen = torch.cat((seen, code[:, None]), dim=1)
        if state.pos + 1 > window:
            seen = seen[:, -window // 2:]
            logits, state = melformer.prefill(seen, composer, melformer.new_state(1))
        else:
            logits, state = melformer.step(code, composer, state)


def continue_audio(codec: torch.nn.Module, melformer: torch.nn.Module, samples: np.ndarray, rate: int,
                   bpm: float, beats: int, temperature: float = 1.0, top_k: int = 0,
                   seed: int = 0) -> Iterator[np.ndarray]:
    """Each continued beat as samples x 1 at the prompt's rate and tempo, decoded with the beat before it
    as context (the decoder's convolutions then see no edge at the start of every beat)."""
    check_beats(beats)
    codes, grid = prompt_codes(codec, samples, rate, bpm)
    per_beat, spb, period = codec.codes_per_beat, codec.cfg.samples_per_beat, 60.0 / bpm
    previous, beat, done = codes[:, -per_beat:], [], 0
    for code in continue_codes(melformer, codes, beats * per_beat, temperature, top_k, seed):
        beat.append(code)
        if len(beat) < per_beat:
            continue
        current = torch.stack(beat, dim=1)
        wave = codec.decode(torch.cat((previous, current), dim=1))[0, -spb:].cpu().numpy()
        times = grid[-1] + period * np.array([done, done + 1])  # absolute, so rounding never drifts
        yield from_beats(BeatAudio(wave.reshape(1, spb, 1).astype(np.float32), times, rate))
        previous, beat, done = current, [], done + 1
