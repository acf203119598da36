"""The continuation benchmark (after MIREX 2025's piano continuation: 4 bars in, 12 bars out).

For pieces spread over a split, a 4-bar prompt from the middle of the piece is continued by the
model and compared, by simple musical statistics, with the prompt itself, beside two references
from the same pieces: what the pianist really played next (the ceiling) and the next 12 bars of
a different piece (the floor). Statistics of a continuation against its prompt, all on the 120 bpm
grid every score is put on (`compare`):

- key: correlation of the duration-weighted pitch-class histograms;
- density: |log2| of the ratio of notes per second;
- dynamics, register: absolute gaps of mean velocity and mean pitch;
- silence: absolute gap of the share of time with no note sounding;
- overlap: overlapping area of the histograms of pitch, velocity, log duration, log inter-onset
  interval and polyphony (their mean).

A continuation should be as close to its prompt as the pianist's own next bars are, not closer and
not further, so each statistic is scored as **closeness**: 1 - |model - real| / |floor - real| of
the means over pieces (1 = the pianist, 0 = another piece, below 0 = further than another piece).
The earlier "higher is better" columns (density as min/max ratio, the pooled overlap against all
real continuations) are kept beside it for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from comagen.bundle.checkpoint import Bundle
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.session import generate
from comagen.music.midi import SECONDS_PER_BAR
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.data import TokenizedPiece

PROMPT_BARS = 4
CONTINUATION_BARS = 12
POOLED_BINS = {
    "pitch": np.arange(20.5, 109.5, 1.0),
    "velocity": np.arange(0, 132, 4.0),
    "log_duration": np.linspace(np.log(0.01), np.log(10.0), 41),
    "log_ioi": np.linspace(np.log(0.01), np.log(4.0), 41),
    "polyphony": np.arange(0.5, 17.5, 1.0),
}


@dataclass
class Notes:
    """Notes of an excerpt in seconds from its start (structured columns, one row a note)."""

    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    seconds: float

    @classmethod
    def from_score(cls, score: symusic.Score, start: float, seconds: float) -> Notes:
        """The notes of `score` with onsets in [start, start + seconds), times relative to `start`."""
        cols = [t.notes.numpy() for t in score.to("second").tracks if len(t.notes)]
        if not cols:
            return cls(*(np.zeros(0) for _ in range(4)), seconds)
        notes = {k: np.concatenate([c[k] for c in cols]) for k in ("time", "duration", "pitch", "velocity")}
        keep = (notes["time"] >= start - 1e-6) & (notes["time"] < start + seconds - 1e-6)
        order = np.argsort(notes["time"][keep], kind="stable")
        return cls(notes["time"][keep][order] - start, notes["duration"][keep][order],
                   notes["pitch"][keep][order].astype(float), notes["velocity"][keep][order].astype(float), seconds)

    def pitch_classes(self) -> np.ndarray:
        return np.bincount(self.pitch.astype(int) % 12, weights=np.minimum(self.duration, 2.0), minlength=12)

    def silence(self, step: float = 0.05) -> float:
        grid = np.arange(0.0, self.seconds, step)
        sounding = np.zeros(len(grid), dtype=bool)
        for t, d in zip(self.time, self.duration, strict=True):
            sounding[(grid >= t) & (grid < t + d)] = True
        return float(1.0 - sounding.mean()) if len(grid) else 1.0

    def pooled(self) -> dict[str, np.ndarray]:
        """Per-note values of the pooled statistics."""
        onsets = np.unique(np.round(self.time, 3))
        ioi = np.diff(onsets)
        ends = self.time + self.duration
        poly = np.array([((self.time <= t) & (ends > t)).sum() for t in onsets]) if len(onsets) else np.zeros(0)
        return {"pitch": self.pitch, "velocity": self.velocity, "log_duration": np.log(np.maximum(self.duration, 1e-3)),
                "log_ioi": np.log(ioi[ioi > 0]), "polyphony": poly.astype(float)}


CLOSENESS = ("key", "density", "dynamics", "register", "silence", "overlap")  # the statistics scored as closeness


def compare(prompt: Notes, cont: Notes) -> dict[str, float]:
    """How a continuation relates to its prompt (see the module docstring); `density_ratio` and
    `silence_share` are the earlier columns."""
    a, b = prompt.pitch_classes(), cont.pitch_classes()
    key = float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else 0.0
    da, db = len(prompt.time) / prompt.seconds, len(cont.time) / cont.seconds
    both = len(cont.time) and len(prompt.time)
    return {
        "key": key,
        "density": abs(float(np.log2((db + 0.5 / cont.seconds) / (da + 0.5 / prompt.seconds)))),
        "dynamics": abs(prompt.velocity.mean() - cont.velocity.mean()) if both else 127.0,
        "register": abs(prompt.pitch.mean() - cont.pitch.mean()) if both else 88.0,
        "silence": abs(cont.silence() - prompt.silence()),
        "overlap": histogram_overlap([prompt.pooled()], [cont.pooled()])["mean"],
        "density_ratio": min(da, db) / max(da, db) if max(da, db) else 1.0,
        "silence_share": cont.silence(),
    }


def closeness(model: float, real: float, floor: float) -> float:
    """1 - |model - real| / |floor - real|: 1 is the pianist's own continuation, 0 another piece's."""
    return 1.0 - abs(model - real) / abs(floor - real) if floor != real else float("nan")


def pooled_overlap(ours: list[Notes], real: list[Notes]) -> dict[str, float]:
    """Overlapping area of each pooled statistic's histogram (1 = the same distribution)."""
    return histogram_overlap([n.pooled() for n in ours], [n.pooled() for n in real])  # once per excerpt


def histogram_overlap(ours: list[dict[str, np.ndarray]], real: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Overlapping area of each statistic's histogram, the values of all excerpts of a side pooled."""
    pooled = (ours, real)
    out = {}
    for name, bins in POOLED_BINS.items():
        p, q = (np.concatenate([values[name] for values in side]) for side in pooled)
        hp, hq = (np.histogram(np.clip(v, bins[0], bins[-1]), bins)[0].astype(float) for v in (p, q))
        out[name] = float(np.minimum(hp / max(hp.sum(), 1), hq / max(hq.sum(), 1)).sum())
    out["mean"] = float(np.mean(list(out.values())))
    return out


@dataclass
class Excerpt:
    """One benchmark item: a piece's prompt bars and the bars the pianist played next."""

    piece: TokenizedPiece
    score: symusic.Score
    start: float  # seconds where the continuation starts (a bar line)

    def prompt_notes(self) -> Notes:
        seconds = PROMPT_BARS * SECONDS_PER_BAR
        return Notes.from_score(self.score, self.start - seconds, seconds)

    def real_notes(self) -> Notes:
        return Notes.from_score(self.score, self.start, CONTINUATION_BARS * SECONDS_PER_BAR)

    def prompt(self, tokenizer: PianoTokenizer) -> Prompt:
        """The prompt bars as tokens, shifted to start at time 0."""
        seconds = PROMPT_BARS * SECONDS_PER_BAR
        tpq = self.score.ticks_per_quarter
        bar = 4 * tpq
        first = int(round((self.start - seconds) / SECONDS_PER_BAR)) * bar
        clipped = self.score.clip(first, first + PROMPT_BARS * bar, clip_end=False).shift_time(-first)
        return Prompt(tokenizer.encode_prepared(clipped), seconds)


def excerpt(piece: TokenizedPiece, tokenizer: PianoTokenizer) -> Excerpt | None:
    """The benchmark item from the middle of a piece (None when it is too short)."""
    score = tokenizer.decode_ids(piece.ids.tolist())
    bars = int(score.end() // (4 * score.ticks_per_quarter))
    if bars < PROMPT_BARS + CONTINUATION_BARS + 2:
        return None
    middle = max(PROMPT_BARS, bars // 2 - CONTINUATION_BARS // 2)
    return Excerpt(piece, score, middle * SECONDS_PER_BAR)


def continue_excerpt(bundle: Bundle, item: Excerpt, request: Request) -> tuple[list[Notes], dict]:
    """The model's continuations of an item's prompt (one per variation the request asks for), as notes
    from the continuation's start, and the engine's figures for them (`Progress.stats`)."""
    prompt = item.prompt(bundle.tokenizer)
    session = generate(bundle, prompt, request)
    seconds = request.seconds or CONTINUATION_BARS * SECONDS_PER_BAR
    return [Notes.from_score(session.score(r), prompt.seconds, seconds) for r in range(request.variations)], \
        session.stats
