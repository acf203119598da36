"""Round-trip fidelity: how far a performance moves when tokenized and decoded again.

Notes are matched pitch by pitch in time order (the n-th C4 of the input against the n-th C4 of
the output), which is exact when no note was dropped and robust when a duplicate was.
Durations are compared as they sound: sustain folded into both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import symusic

from comagen.music.midi import fold_sustain, load_score
from comagen.music.tokenizer import PianoTokenizer


@dataclass
class RoundTrip:
    notes_in: int
    notes_out: int
    tokens: int
    tokens_per_note: float
    onset_error_ms_median: float
    onset_error_ms_p95: float
    onset_error_ms_max: float
    last_note_error_ms: float
    duration_error_ms_median: float
    seconds: float

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _note_table(score: symusic.Score) -> dict[str, np.ndarray]:
    """Onset, sounding end and pitch of every note, in seconds, sustain folded."""
    sec = fold_sustain(score).to("second")
    parts = [t.notes.numpy() for t in sec.tracks if len(t.notes)]
    if not parts:
        return {"time": np.zeros(0), "end": np.zeros(0), "pitch": np.zeros(0, dtype=int)}
    time = np.concatenate([p["time"] for p in parts]).astype(np.float64)
    dur = np.concatenate([p["duration"] for p in parts]).astype(np.float64)
    pitch = np.concatenate([p["pitch"] for p in parts]).astype(np.int64)
    return {"time": time, "end": time + dur, "pitch": pitch}


def _match(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ref, out) matched per pitch by nearest onset in order."""
    ri, oi = [], []
    for p in np.intersect1d(ref["pitch"], out["pitch"]):
        r = np.flatnonzero(ref["pitch"] == p)
        o = np.flatnonzero(out["pitch"] == p)
        r = r[np.argsort(ref["time"][r], kind="stable")]
        o = o[np.argsort(out["time"][o], kind="stable")]
        if len(r) == len(o):
            ri.append(r)
            oi.append(o)
            continue
        # A note was dropped (duplicate onset): pair each output note with its nearest input.
        j = np.searchsorted(ref["time"][r], out["time"][o])
        lo = np.clip(j - 1, 0, len(r) - 1)
        hi = np.clip(j, 0, len(r) - 1)
        near = np.where(
            np.abs(ref["time"][r][lo] - out["time"][o]) <= np.abs(ref["time"][r][hi] - out["time"][o]), lo, hi
        )
        ri.append(r[near])
        oi.append(o)
    if not ri:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.concatenate(ri), np.concatenate(oi)


def roundtrip_score(tokenizer: PianoTokenizer, score: symusic.Score) -> RoundTrip:
    ids = tokenizer.encode_score(score)
    decoded = tokenizer.decode_ids(ids)
    ref, out = _note_table(score), _note_table(decoded)
    ri, oi = _match(ref, out)
    onset = np.abs(ref["time"][ri] - out["time"][oi]) * 1000
    dur = np.abs((ref["end"] - ref["time"])[ri] - (out["end"] - out["time"])[oi]) * 1000
    last = int(np.argmax(ref["time"])) if len(ref["time"]) else -1
    last_err = float(onset[ri == last].min()) if np.any(ri == last) else float("nan")
    n_in, n_out = len(ref["time"]), len(out["time"])
    return RoundTrip(
        notes_in=n_in,
        notes_out=n_out,
        tokens=len(ids),
        tokens_per_note=len(ids) / max(n_in, 1),
        onset_error_ms_median=float(np.median(onset)) if len(onset) else float("nan"),
        onset_error_ms_p95=float(np.percentile(onset, 95)) if len(onset) else float("nan"),
        onset_error_ms_max=float(onset.max()) if len(onset) else float("nan"),
        last_note_error_ms=last_err,
        duration_error_ms_median=float(np.median(dur)) if len(dur) else float("nan"),
        seconds=float(ref["end"].max()) if n_in else 0.0,
    )


def roundtrip_file(tokenizer: PianoTokenizer, path: str | Path) -> RoundTrip:
    return roundtrip_score(tokenizer, load_score(path))
