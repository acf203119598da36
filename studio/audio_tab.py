"""The experimental Audio tab without gradio: a prompt as sound (the Compose prompt rendered by FluidSynth,
or an uploaded WAV at a tempo the user gives), continued beat by beat by the shipped melformer bundle
(`comagen.audio.continuation`), each beat handed to the page as it is decoded; at the end a spectrogram
of prompt and continuation and the WAV to download."""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from comagen.audio.continuation import MAX_BEATS, continue_audio
from comagen.audio.convert import beat_grid
from comagen.audio.wavfile import read_wav
from comagen.bundle.audio import load_audio_bundle
from comagen.bundle.checkpoint import Bundle
from comagen.errors import AudioError, ComagenError
from comagen.generation.prompt import Prompt
from comagen.music.midi import GRID_BPM
from comagen.render.audio import render_audio
from comagen.render.spectrogram import spectrogram_figure
from studio.assets import CHECKPOINTS_DIR
from studio.outfiles import new_out_dir
from studio.present import figure_array

AUDIO_CHECKPOINT = CHECKPOINTS_DIR / "melformer"  # COMAGEN_AUDIO_CHECKPOINT overrides
RATE = 22050  # the Compose prompt's render: the codec hears 8 kHz at 120 bpm, so more is only bytes on the page
TAB_MAX_BEATS = 64  # 32 s at 120 bpm, about 5 s of one thread: one click holds the server briefly
UPLOAD_MAX_SECONDS = 600.0  # a WAV longer than this is refused by its header (the CLI takes an hour)
PROMPT_KEEP_SECONDS = 30.0  # the prompt's last whole beats within this: the melformer sees 16 beats anyway
NAME_MAX = 60


def audio_checkpoint() -> Path:
    """The audio bundle the tab uses: COMAGEN_AUDIO_CHECKPOINT, else the shipped melformer."""
    return Path(os.environ.get("COMAGEN_AUDIO_CHECKPOINT") or AUDIO_CHECKPOINT)


@functools.cache
def audio_models(path: Path) -> dict[str, torch.nn.Module]:
    """Codec and melformer of the bundle at `path`, loaded once per process."""
    return load_audio_bundle(path, need=("codec", "melformer")).models


@dataclass
class AudioPrompt:
    """A prompt as sound: mono samples, their rate and tempo, and a name for files."""

    samples: np.ndarray
    rate: int
    bpm: float
    label: str


@dataclass
class AudioFrame:
    """One update of the tab: a status line, the audio so far, and at the end the figure and the WAV."""

    status: str
    audio: tuple[int, np.ndarray] | None = None  # (rate, int16 samples): prompt then the beats so far
    spectrogram: np.ndarray | None = None
    wav: Path | None = None


def rendered_prompt(bundle: Bundle, prompt: Prompt, label: str) -> AudioPrompt:
    """The Compose prompt through FluidSynth up to where the continuation would start, on the 120 bpm grid
    every score is timed on (its beats are exact, as in the renders the melformer learned from)."""
    if not prompt.ids:
        raise AudioError("the Compose prompt is empty: pick a gallery prompt or upload a MIDI or a WAV")
    samples, rate = render_audio(bundle.tokenizer.decode_ids(prompt.ids), RATE, tail_seconds=0.0)
    end = round(prompt.seconds * rate)
    mono = np.pad(samples.mean(axis=1), (0, max(end - len(samples), 0)))[:end]
    return AudioPrompt(mono.astype(np.float32), rate, GRID_BPM, label)


def uploaded_prompt(path: str | Path, bpm: float | None) -> AudioPrompt:
    """An uploaded WAV at `bpm` (120 when not given), refused in one line when unusable (checked by its
    header before any sample is read, as audio-continue does)."""
    bpm = GRID_BPM if bpm is None or bpm == "" else float(bpm)
    beat_grid(0.0, bpm)  # a BPM out of range is one line before the file is read
    samples, rate = read_wav(Path(path), max_seconds=UPLOAD_MAX_SECONDS)
    return AudioPrompt(samples.mean(axis=1), rate, bpm, Path(path).stem)


def last_beats(prompt: AudioPrompt, seconds: float = PROMPT_KEEP_SECONDS) -> AudioPrompt:
    """The prompt from the beat boundary that leaves at most `seconds`, so the beat grid keeps its phase."""
    grid = beat_grid(len(prompt.samples) / prompt.rate, prompt.bpm)
    if len(grid) < 2:
        raise AudioError(f"the prompt ({len(prompt.samples) / prompt.rate:.2f} s) is shorter than one beat at "
                         f"{prompt.bpm:g} bpm")
    keep = max(int(seconds * prompt.bpm / 60.0), 1)
    first = grid[max(len(grid) - 1 - keep, 0)]
    return AudioPrompt(prompt.samples[round(first * prompt.rate):], prompt.rate, prompt.bpm, prompt.label)


def continue_stream(prompt: AudioPrompt, beats: int, seed: int = 0, checkpoint: Path | None = None
                    ) -> Iterator[AudioFrame]:
    """Continue `prompt` for `beats` beats: a frame per decoded beat (the audio so far), then the last
    frame with the spectrogram and the WAV. Bad input is one AudioError line before any work."""
    beats = int(beats)
    if not 1 <= beats <= min(TAB_MAX_BEATS, MAX_BEATS):
        raise AudioError(f"{beats} beats: give 1 to {TAB_MAX_BEATS}")
    prompt = last_beats(prompt)
    whole = beat_grid(len(prompt.samples) / prompt.rate, prompt.bpm)[-1]
    head = prompt.samples[:round(whole * prompt.rate)]  # what the melformer continues from
    yield AudioFrame(f"Encoding {len(head) / prompt.rate:.1f} s of prompt ({prompt.bpm:g} bpm) ...",
                     _pcm(prompt.rate, head))
    models, start, made = audio_models(checkpoint or audio_checkpoint()), time.perf_counter(), []
    for beat in continue_audio(models["codec"], models["melformer"], prompt.samples[:, None], prompt.rate,
                               prompt.bpm, beats, seed=seed):
        made.append(beat[:, 0])
        tail = np.concatenate(made)
        yield AudioFrame(_progress(len(made), beats, len(tail) / prompt.rate, time.perf_counter() - start),
                         _pcm(prompt.rate, np.concatenate((head, tail))))
    figure = figure_array(spectrogram_figure(head, tail, prompt.rate, f"{prompt.label}: prompt, then {beats} "
                                             "beats of the melformer"))
    wav = new_out_dir() / f"comagen_audio_{re.sub(r'[^A-Za-z0-9_-]+', '_', prompt.label)[:NAME_MAX]}_seed{seed}.wav"
    soundfile.write(str(wav), np.concatenate((head, tail)), prompt.rate, subtype="PCM_16")
    yield AudioFrame(f"Done: {beats} beats ({len(tail) / prompt.rate:.1f} s) after {len(head) / prompt.rate:.1f} s "
                     f"of prompt, made in {time.perf_counter() - start:.1f} s.", _pcm(prompt.rate, np.concatenate(
                         (head, tail))), figure, wav)


def tab_stream(wav: str | Path | None, bpm: float | None, beats: int, seed: int | None,
               compose: Callable[[], tuple[Bundle, Prompt, str]]) -> Iterator[AudioFrame]:
    """What the tab's button does: continue the uploaded WAV, else the Compose prompt (`compose` resolves
    it: checkpoint, prompt, name); anything unusable ends the stream with one line, the app going on."""
    try:
        if wav:
            prompt = uploaded_prompt(wav, bpm)
        else:
            bundle, score_prompt, label = compose()
            prompt = rendered_prompt(bundle, score_prompt, label)
        yield from continue_stream(prompt, beats, int(seed or 0))
    except ComagenError as exc:  # AudioError, MidiError, AudioUnavailableError, CheckpointError
        yield AudioFrame(f"**Error:** {exc}")


def _progress(done: int, beats: int, seconds: float, elapsed: float) -> str:
    return (f"Beat {done}/{beats}: {seconds:.1f} s of audio in {elapsed:.1f} s "
            f"({seconds / max(elapsed, 1e-6):.1f}x real time) ...")


def _pcm(rate: int, samples: np.ndarray) -> tuple[int, np.ndarray]:
    """What the page's player takes: 16-bit samples (gradio would convert floats itself, with a warning)."""
    return rate, (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
