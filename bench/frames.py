"""The frame length of the piano-roll model, measured on MAESTRO validation: for each candidate,
the round-trip onset error (each decoded note against the nearest original onset of its key), the
notes merged or lost (a key struck again while held, or twice within one frame), frames per second
and frames per note (sequence length), and how re-struck keys are kept apart (gap, merge, onsets).

    python bench/frames.py [--data DIR] [--max-files N] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse

import numpy as np
import symusic

from comagen.music.frames import FrameSettings, frames_to_score, score_to_frames
from comagen.music.midi import load_score
from comagen.report import add_data_options, emit
from comagen.training.data import load_index, select_split

CANDIDATES = [(4, "gap", False), (8, "gap", False), (12, "gap", False), (24, "gap", False),
              (8, "merge", False), (8, "gap", True), (12, "gap", True)]


def onset_errors(original: symusic.Score, decoded: symusic.Score) -> np.ndarray:
    """Seconds from each decoded note's onset to the nearest original onset of the same key."""
    a = original.to("second").tracks[0].notes.numpy()
    b = decoded.to("second").tracks[0].notes.numpy()
    errors = []
    for key in np.unique(b["pitch"]):
        ref = np.sort(a["time"][a["pitch"] == key])
        got = b["time"][b["pitch"] == key]
        after = np.clip(np.searchsorted(ref, got), 0, len(ref) - 1)
        before = np.maximum(after - 1, 0)
        errors.append(np.minimum(np.abs(got - ref[before]), np.abs(got - ref[after])))
    return np.concatenate(errors) if errors else np.zeros(0)


def measure(scores: list[symusic.Score], fpb: int, restrike: str, onsets: bool) -> dict:
    settings = FrameSettings(fpb, restrike)
    notes_in = notes_out = frames = 0
    errors = []
    for score in scores:
        fr, marks = score_to_frames(score, settings, onsets=True)
        back = frames_to_score(fr, settings, marks if onsets else None)
        notes_in, notes_out, frames = notes_in + score.note_num(), notes_out + back.note_num(), frames + len(fr)
        errors.append(onset_errors(score, back))
    err = np.concatenate(errors) * 1000
    return {"frame_ms": round(settings.seconds_per_frame * 1000, 1), "restrike": restrike,
            "onset_channel": onsets, "frames_per_s": settings.frames_per_second,
            "frames_per_note": round(frames / notes_in, 2), "onset_ms_median": float(np.median(err)),
            "onset_ms_p95": float(np.percentile(err, 95)),
            "notes_merged_or_lost_pct": round(100 * (notes_in - notes_out) / notes_in, 2),
            "memory_1024_frames_s": round(1024 * settings.seconds_per_frame, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, Path(__file__).resolve().parents[1])
    parser.add_argument("--max-files", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pieces = select_split(load_index(args.data), "validation")
    pieces = pieces[:: max(1, len(pieces) // args.max_files)][: args.max_files]  # a fixed spread
    scores = [load_score(p.path) for p in pieces]
    rows = [measure(scores, fpb, restrike, onsets) for fpb, restrike, onsets in CANDIDATES]
    emit("piano-roll frame lengths (MAESTRO validation)", rows,
         {"files": len(scores), "notes": sum(s.note_num() for s in scores)}, as_json=args.json)


if __name__ == "__main__":
    main()
