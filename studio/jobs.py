"""Generation jobs: a `Session` sampling on its own thread, the running job of each browser session
(so Stop reaches the right one), and `stream`, which turns a job into the page's updates.

A generation runs on its own thread: torch's inference mode is per thread, and Gradio resumes a
streaming generator on whichever worker thread is free.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError
from comagen.generation.frame_session import open_session
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.session import Progress
from studio.limits import CONTEXT_CAP, TOKEN_CAP
from studio.livesound import SoundFeed
from studio.memory import release_memory
from studio.present import (
    LIVE_ROLL_TOKENS,
    TEXT_TAIL,
    Rendered,
    live_piece_roll,
    render_take,
    stats_markdown,
    token_text,
)
from studio.take import Take

log = logging.getLogger("comagen.studio")
LIVE_VIEWS = ("on", "text", "off")  # what the page shows while sampling (COMAGEN_LIVE_VIEW)
TEXT_INTERVAL = 0.5  # token text refresh (s): each update costs the sampling thread in the server
FIRST_NOTES_INTERVAL = 0.05  # while the notes sent reach less than SOUND_LEAD_S into the music: the
SOUND_LEAD_S = 1.0  # page sounds soon after Generate, and has the music of a text interval and more in hand
ROLL_MIN_INTERVAL = 1.0  # live piano roll: at most one redraw a second ...
ROLL_COST_FACTOR = 4.0  # ... and drawing may take at most a quarter of the wall time


class Job:
    """A `Session` sampling on its own thread; read `generated()` any time, `stop()` keeps what exists."""

    def __init__(self, bundle: Bundle, prompt: Prompt, request: Request) -> None:
        self.session = open_session(bundle, prompt, request)  # a piano-roll bundle samples frames
        self.error: str | None = None
        self.first_token_at: float | None = None
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name="comagen-job")
        self._thread.start()

    def _run(self) -> None:
        try:
            for _ in self.session:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter() - self.started
        except ComagenError as exc:
            log.info("generation refused: %s", exc)
            self.error = str(exc)
        except Exception as exc:  # a bug must end the job with a message, not hang the page
            log.exception("generation failed")  # the traceback goes to the server log
            self.error = f"generation failed: {type(exc).__name__}: {exc}"

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done

    def stop(self) -> None:
        self.session.stop()

    def snapshot(self, tail: int | None = None) -> Progress:
        return self.session.snapshot(tail)


class Registry:
    """The running job of each browser session, so a Stop click reaches the right one."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def put(self, key: str, job: Job) -> None:
        with self._lock:
            self._jobs[key] = job

    def drop(self, key: str, job: Job) -> None:
        with self._lock:
            if self._jobs.get(key) is job:
                del self._jobs[key]

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def stop(self, key: str) -> bool:
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job.stop()
        return job is not None


@dataclass
class Frame:
    """One streamed update: token text per variation, live rolls when redrawn, and the end state."""

    texts: list[str]
    status: str
    rolls: list[np.ndarray] | None = None
    take: Take | None = None
    results: list[Rendered] | None = None
    stats: str = ""
    first_token_s: float | None = None
    notes: str | None = None  # the first variation's new notes so far, for the page's live sound


def live_view_from_env() -> str:
    """COMAGEN_LIVE_VIEW: "on" (token text and piano roll while sampling, the default), "text" or "off"
    (nothing until the results: the fastest on a slow machine)."""
    live = os.environ.get("COMAGEN_LIVE_VIEW", "on").strip().lower()
    if live not in LIVE_VIEWS:
        raise ComagenError(f"COMAGEN_LIVE_VIEW must be one of {', '.join(LIVE_VIEWS)}, not {live!r}")
    return live


def _take_stats(progress: Progress) -> dict:
    """The final figures, with each variation's notes and seconds for the results table."""
    return {**progress.stats, "row_notes": list(progress.row_notes), "row_seconds": list(progress.row_seconds)}


def _filling(feed: SoundFeed | None) -> bool:
    return feed is not None and feed.seconds < SOUND_LEAD_S


def stream(bundle: Bundle, prompt: Prompt, request: Request, name: str, *, registry: Registry | None = None,
           key: str = "", live: str = "on", sound: bool = False) -> Iterator[Frame]:
    """Run one generation, yielding a text frame every TEXT_INTERVAL s (`live` "on": with piano rolls
    at most every ROLL_MIN_INTERVAL s, slower when drawing is slow; "text": without; "off": no frame
    until the end) and a final frame with the results. With `sound` (and a live view), frames carry
    the new notes so far (`SoundFeed`), every FIRST_NOTES_INTERVAL s (and no roll) until they reach
    SOUND_LEAD_S into the music."""
    if len(prompt.ids) + request.max_tokens > CONTEXT_CAP + TOKEN_CAP:
        raise ComagenError(f"the piece has reached {len(prompt.ids)} tokens, the app's limit for Continue; "
                           "press Undo or start a new piece")
    job = Job(bundle, prompt, request)
    if registry is not None:
        registry.put(key, job)
    feed = SoundFeed(bundle, prompt) if sound and live != "off" else None
    try:  # a consumer that leaves (the browser closed, gradio closes this generator) stops the job
        last_roll, roll_interval = 0.0, ROLL_MIN_INTERVAL
        while not job.wait(None if live == "off" else FIRST_NOTES_INTERVAL if _filling(feed) else TEXT_INTERVAL):
            filling = _filling(feed)
            progress = job.snapshot(tail=max(TEXT_TAIL, LIVE_ROLL_TOKENS) if live == "on" else TEXT_TAIL)
            rows, stats, totals = [list(r) for r in progress.rows], progress.stats, progress.lengths
            frame = Frame([token_text(bundle, ids, n) for ids, n in zip(rows, totals, strict=True)],
                          f"Generating: {stats['tokens']} tokens, {stats['music_seconds']:.1f} of "
                          f"{request.seconds:.0f} s of music, {stats['tokens_per_s']:.0f} tokens/s",
                          first_token_s=job.first_token_at,
                          notes=feed.update(list(job.snapshot().rows[0])) if feed else None)
            if live == "on" and not filling and time.perf_counter() - last_roll >= roll_interval and any(rows):
                t0 = time.perf_counter()
                frame.rolls = [live_piece_roll(bundle, prompt, ids, n) for ids, n in zip(rows, totals, strict=True)]
                last_roll = time.perf_counter()
                roll_interval = max(ROLL_MIN_INTERVAL, ROLL_COST_FACTOR * (last_roll - t0))
            yield frame
    finally:
        if not job.done:  # closed mid-stream: no one will read the rest, so stop sampling now
            job.stop()
        if registry is not None:
            registry.drop(key, job)
    if job.error:
        raise ComagenError(job.error)
    progress = job.snapshot()
    rows = [list(r) for r in progress.rows]
    take = Take(prompt, rows, request.seed, request.composer, request.windows, name, _take_stats(progress))
    stopped = progress.stopped
    texts = [token_text(bundle, ids) for ids in rows]
    yield Frame(texts, "Rendering audio and figures ...", first_token_s=job.first_token_at,
                notes=feed.update(rows[0]) if feed else None)  # the rest sounds while the audio renders
    results = render_take(bundle, take)
    release_memory()
    yield Frame(texts, "Stopped; kept what was generated." if stopped
                else "Done.", [r.roll for r in results], take, results, stats_markdown(take, stopped),
                job.first_token_at)
