"""The piano-roll transformer behind the token models' `Session` interface, so whatever runs a
`Session` (the app's jobs, Stop, the live view and sound) runs it unchanged: iterate it (one step
per frame, every variation in one batch), read `snapshot()` from another thread, `stop()` it.

Its rows are token ids all the same: each variation's new frames decoded to notes
(`frames_to_score`) and written with the plain REMI tokenizer, starting on the prompt's next bar
line (`Prompt.seconds`), where a token model's continuation starts too, at the prompt's median
velocity (frames hold none); so results, the splice into
the user's file, Continue and Undo work as they do for the token models. The prompt is read back
from its ids as frames up to that bar line (a note held across it is struck again there).
Frames are sampled as `comagen.generation.pianoroll` says (temperature, top-k, top-p, the 88 keys,
forms through the sectional memory); the settings that mean nothing for a frame of independent keys
(min-p, the leans and per-decision temperatures, composer, guidance, attention windows) are not read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

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
from comagen.music.frames import DECODE_VELOCITY, frames_to_score, note_spans, spans_to_frames

RUNTIME = "torch (piano-roll frames)"


class FrameSession:
    """A running piano-roll generation with `Session`'s interface (see the module)."""

    def __init__(self, bundle: FrameBundle, prompt: Prompt, request: Request) -> None:
        if request.seconds is None:
            raise ConfigError("the piano-roll model generates a length in seconds, not a token count")
        self.bundle, self.prompt, self.request = bundle, prompt, request
        fs = bundle.frames
        self.section_frames = request.section_bars * 4 * fs.frames_per_beat
        letters = parse_form(request.form)
        self.total = len(letters) * self.section_frames if letters else round(request.seconds * fs.frames_per_second)
        self.prompt_frames, self.velocity = _prompt_frames(bundle, prompt)
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
            for row in np.stack(made, axis=1):  # made is not empty here: the cache starts at 0 frames
                score = frames_to_score(row, self.bundle.frames, velocity=self.velocity)
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


def _prompt_frames(bundle: FrameBundle, prompt: Prompt) -> tuple[np.ndarray, int]:
    """The prompt's ids as frames [L, 128] up to its next bar line, where the new frames begin, and
    the velocity the new notes play at: the prompt's median (frames hold none), else the default."""
    if not prompt.ids:
        return np.zeros((0, KEYS), dtype=np.float32), DECODE_VELOCITY
    score = bundle.tokenizer.decode_ids(prompt.ids)
    velocities = np.concatenate([t.notes.numpy()["velocity"] for t in score.tracks] or [np.zeros(0)])
    velocity = int(np.median(velocities)) if len(velocities) else DECODE_VELOCITY
    spans = note_spans(score, bundle.frames)
    frames = spans_to_frames(spans, 0, round(prompt.seconds * bundle.frames.frames_per_second)).astype(np.float32)
    return frames, velocity


def open_session(bundle: Bundle, prompt: Prompt, request: Request) -> Session | FrameSession:
    """The session that runs `bundle`: frames for a piano-roll bundle, tokens for the rest."""
    if isinstance(bundle, FrameBundle):
        return FrameSession(bundle, prompt, request)
    return Session(bundle, prompt, request)
