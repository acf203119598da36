"""The piano-roll transformer behind the token models' `Session` interface, so whatever runs a
`Session` (the app's jobs, Stop, the live view and sound) runs it unchanged: iterate it (one step
per frame, every variation in one batch), read `snapshot()` from another thread, `stop()` it.

Its rows are token ids all the same: each variation's new frames decoded to notes
(`frames_to_score`) and written with the plain REMI tokenizer, starting on the prompt's next bar
line (`Prompt.seconds`), where a token model's continuation starts too; so results, the splice into
the user's file, Continue and Undo work as they do for the token models. The prompt is read back
from its ids as frames up to that bar line; a key the model keeps holding across it is the
prompt's own note going on, not struck again. What frames cannot hold is restored from the
prompt (`FrameDecoding`): each new note's velocity, and where its onset sits inside its 62.5 ms
frame, are drawn from the prompt's notes (measured in `bench/pianoroll.py --sections continuation`).
Frames are sampled as `comagen.generation.pianoroll` says (temperature, top-k, top-p, the 88 keys,
forms through the sectional memory); the settings that mean nothing for a frame of independent keys
(min-p, the leans and per-decision temperatures, composer, guidance, attention windows) are not read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import symusic

from comagen.bundle.checkpoint import Bundle
from comagen.bundle.pianoroll import FrameBundle
from comagen.errors import ConfigError
from comagen.generation.forms import parse_form
from comagen.generation.pianoroll import FrameSampling, one_thread, sample_frames
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.session import Progress, Session
from comagen.model.pianoroll import KEYS
from comagen.music.frames import DECODE_VELOCITY, FrameSettings, frames_to_score, note_spans, spans_to_frames
from comagen.music.midi import GRID_BPM

RUNTIME = "torch (piano-roll frames)"
FINE = 12  # ticks per frame of the decoded notes: room for an onset inside its frame


@dataclass(frozen=True)
class FrameDecoding:
    """How new frames become notes: what frames cannot hold, restored from the prompt.

    velocity "draw": each new note plays at the velocity of a prompt note drawn for it (the prompt's
    spread of loudness, not one value), "median": all at the prompt's median. timing "draw": each
    onset moves inside its frame as a drawn prompt note sits in its own (a chord's notes spread as
    the pianist's do), "grid": onsets on the frame. Draws hash the seed, the row, onset and key, so
    a note keeps its values while the take grows.
    """

    velocity: str = "draw"
    timing: str = "draw"

    def __post_init__(self) -> None:
        if self.velocity not in ("draw", "median") or self.timing not in ("draw", "grid"):
            raise ConfigError("velocity must be 'draw' or 'median', timing 'draw' or 'grid'")


class FrameSession:
    """A running piano-roll generation with `Session`'s interface (see the module)."""

    def __init__(self, bundle: FrameBundle, prompt: Prompt, request: Request,
                 decoding: FrameDecoding = FrameDecoding()) -> None:
        if request.seconds is None:
            raise ConfigError("the piano-roll model generates a length in seconds, not a token count")
        self.bundle, self.prompt, self.request, self.decoding = bundle, prompt, request, decoding
        fs = bundle.frames
        self.section_frames = request.section_bars * 4 * fs.frames_per_beat
        letters = parse_form(request.form)
        self.total = len(letters) * self.section_frames if letters else round(request.seconds * fs.frames_per_second)
        self.prompt_frames, self.voices = _prompt_frames(bundle, prompt)
        self.made: list[np.ndarray] = []  # frames [variations, 128], one per step
        self.elapsed, self.steps, self.stopped = 0.0, 0, False
        self._lock = threading.Lock()
        self._encoded: tuple[int, list[list[int]], list[int]] = (0, [[] for _ in range(request.variations)],
                                                                  [0] * request.variations)

    def stop(self) -> None:
        """End after the current frame (what was made is kept)."""
        self.stopped = True

    def __iter__(self) -> Iterator[int]:
        req, s = self.request, self.request.sampling
        sampling = FrameSampling(s.temperature, s.top_k, s.top_p)
        t0 = time.perf_counter()
        frames = sample_frames(self.bundle.model, self.prompt_frames, self.total, sampling, req.seed,
                               req.variations, req.form, self.section_frames)
        with one_thread():
            for index, frame in enumerate(frames):
                with self._lock:
                    self.made.append(frame)
                    self.steps += 1
                    self.elapsed = time.perf_counter() - t0
                yield index
                if self.stopped:
                    break

    def snapshot(self, tail: int | None = None) -> Progress:
        """Each variation's tokens so far (their last `tail` with `tail`) and the figures."""
        with self._lock:
            made, steps, elapsed, stopped = list(self.made), self.steps, self.elapsed, self.stopped
        ids, notes = self._tokens(made)
        rows = tuple(tuple(r if tail is None else r[max(len(r) - tail, 0):]) for r in ids)
        seconds = len(made) / self.bundle.frames.frames_per_second
        return Progress(rows, tuple(notes), (seconds,) * len(ids), steps, elapsed, stopped, RUNTIME,
                        tuple(len(r) for r in ids))

    def _tokens(self, made: list[np.ndarray]) -> tuple[list[list[int]], list[int]]:
        """The new frames of each variation as token ids and note counts (kept until a frame is added)."""
        count, ids, notes = self._encoded
        if count != len(made):
            ids, notes = [], []
            held = self.prompt_frames[-1] > 0 if len(self.prompt_frames) else np.zeros(KEYS, dtype=bool)
            for index, row in enumerate(np.stack(made, axis=1)):  # made is not empty: the cache starts at 0
                new = frames_to_score(row, self.bundle.frames).tracks[0].notes.numpy()
                goes_on = (new["time"] == 0) & held[new["pitch"]]  # the prompt's note, held over
                new = {k: v[~goes_on] for k, v in new.items()}
                score = _voiced(new, self.voices, self.decoding, self.request.seed + index, self.bundle.frames)
                ids.append(self.bundle.tokenizer.encode_score(score))
                notes.append(score.note_num())
            self._encoded = (len(made), ids, notes)
        return ids, notes

    def score(self, row: int = 0, with_prompt: bool = True) -> symusic.Score:
        """A variation as a score (its tokens decoded, after the prompt's with `with_prompt`), as `Session.score`."""
        ids = list(self.snapshot().rows[row])
        return self.bundle.tokenizer.decode_ids((self.prompt.ids if with_prompt else []) + ids)

    @property
    def stats(self) -> dict:
        return self.snapshot(tail=0).stats


def _prompt_frames(bundle: FrameBundle, prompt: Prompt) -> tuple[np.ndarray, np.ndarray]:
    """The prompt's ids as frames [L, 128] up to its next bar line, where the new frames begin, and
    its notes' velocities and onsets' places inside their frames (0..1) as rows [n, 2]; no notes: the
    default velocity on the frame."""
    if not prompt.ids:
        return np.zeros((0, KEYS), dtype=np.float32), np.array([[DECODE_VELOCITY, 0.0]])
    score = bundle.tokenizer.decode_ids(prompt.ids)
    cols = [t.notes.numpy() for t in score.tracks if len(t.notes)]
    per_tick = bundle.frames.frames_per_beat / score.ticks_per_quarter
    frame = np.concatenate([c["time"] for c in cols] or [np.zeros(0)]) * per_tick
    velocity = np.concatenate([c["velocity"] for c in cols] or [np.zeros(0)])
    voices = np.stack((velocity, frame % 1.0), axis=1) if len(velocity) else np.array([[DECODE_VELOCITY, 0.0]])
    spans = note_spans(score, bundle.frames)
    frames = spans_to_frames(spans, 0, round(prompt.seconds * bundle.frames.frames_per_second)).astype(np.float32)
    return frames, voices


def _voiced(notes: dict[str, np.ndarray], voices: np.ndarray, decoding: FrameDecoding, seed: int,
            fs: FrameSettings) -> symusic.Score:
    """The new notes (onsets and durations in frames) as a score with velocities and onsets inside
    their frames as `decoding` says, drawn from the prompt's `voices` [n, 2] (velocity, place)."""
    start, end = notes["time"].astype(np.int64), (notes["time"] + notes["duration"]).astype(np.int64)
    pitch = notes["pitch"].astype(np.int64)
    velocity = voices[_draw(seed, start, pitch, 1, len(voices)), 0]
    if decoding.velocity == "median":
        velocity = np.full(len(start), int(np.median(voices[:, 0])))
    place = voices[_draw(seed, start, pitch, 2, len(voices)), 1] if decoding.timing == "draw" else 0.0
    onset = start * FINE + np.round(np.asarray(place) * FINE).astype(np.int64)
    score = symusic.Score(fs.frames_per_beat * FINE, ttype="tick")
    score.tempos.append(symusic.Tempo(0, GRID_BPM, ttype="tick"))
    track = symusic.Track(name="Piano", program=0, ttype="tick")
    if len(start):
        track.notes = symusic.Note.from_numpy(
            time=onset.astype(np.int32), duration=np.maximum(end * FINE - onset, 1).astype(np.int32),
            pitch=pitch.astype(np.int8), velocity=np.clip(velocity, 1, 127).astype(np.int8), ttype="tick")
    score.tracks.append(track)
    return score


def _draw(seed: int, start: np.ndarray, pitch: np.ndarray, salt: int, n: int) -> np.ndarray:
    """An index below `n` per note, a hash of (seed, salt, onset, key): the same note, the same draw."""
    with np.errstate(over="ignore"):
        x = (start.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + pitch.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
             + np.uint64((seed * 1_000_003 + salt) & 0xFFFFFFFF) * np.uint64(0x94D049BB133111EB))
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    return (x % np.uint64(n)).astype(np.int64)


def open_session(bundle: Bundle, prompt: Prompt, request: Request) -> Session | FrameSession:
    """The session that runs `bundle`: frames for a piano-roll bundle, tokens for the rest."""
    if isinstance(bundle, FrameBundle):
        return FrameSession(bundle, prompt, request)
    return Session(bundle, prompt, request)
