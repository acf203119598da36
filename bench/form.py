"""Do musical forms hold? Piano-roll self-similarity between sections of generated pieces.

    python bench/form.py [--checkpoint assets/checkpoints/default] [--form AABA] [--seeds 4] [--json]
    python bench/form.py --section-bars 0 --seconds 600 --seeds 1   # sections sized so the form spans 10 minutes

For each seed, a piece in the given form is generated from nothing; each section's piano roll
(88 pitches x 1/8 s frames, velocity-weighted) is compared with every other section's by cosine
similarity. Same-letter pairs should be far more alike than different-letter pairs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import itertools
import time

import numpy as np
import symusic

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.forms import parse_form, section_bars_for
from comagen.generation.prompt import Prompt
from comagen.generation.request import MAX_TOKENS_CAP, Request
from comagen.generation.sampling import Sampling
from comagen.generation.session import generate
from comagen.music.midi import SECONDS_PER_BAR
from comagen.report import emit

FRAME = 0.125


def section_roll(score: symusic.Score, start: float, seconds: float) -> np.ndarray:
    """Velocity-weighted piano roll of [start, start + seconds), time relative to the section start."""
    roll = np.zeros((128, int(round(seconds / FRAME))), dtype=np.float32)
    for track in score.to("second").tracks:
        for note in track.notes:
            a = int((note.time - start) / FRAME)
            b = int(np.ceil((note.time + note.duration - start) / FRAME))
            if b <= 0 or a >= roll.shape[1]:
                continue
            roll[note.pitch, max(a, 0):min(b, roll.shape[1])] = np.maximum(
                roll[note.pitch, max(a, 0):min(b, roll.shape[1])], note.velocity / 127)
    return roll


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float((a * b).sum() / (na * nb)) if na and nb else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("assets/checkpoints/default"))
    parser.add_argument("--form", default="AABA")
    parser.add_argument("--section-bars", type=int, default=4, help="0: from --seconds, so the form spans it")
    parser.add_argument("--seconds", type=float, default=32.0, help="the piece's length when --section-bars is 0")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bundle = load_bundle(args.checkpoint)
    letters = parse_form(args.form)
    args.section_bars = args.section_bars or section_bars_for(args.form, args.seconds)
    rows, same, different = [], [], []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        session = generate(bundle, Prompt.empty(), Request(form=args.form, section_bars=args.section_bars,
                                                           seed=seed, max_tokens=MAX_TOKENS_CAP,
                                                           sampling=Sampling(temperature=1.0, top_p=0.95)))
        score = session.score(0)
        starts = session.section_starts(0)
        rolls = [section_roll(score, s, args.section_bars * SECONDS_PER_BAR) for s in starts]
        seed_same, seed_diff = [], []
        for i, j in itertools.combinations(range(len(rolls)), 2):
            sim = cosine(rolls[i], rolls[j])
            (seed_same if letters[i] == letters[j] else seed_diff).append(sim)
        same += seed_same
        different += seed_diff
        rows.append({"seed": seed, "sections": len(starts), "notes": session.stats["notes"],
                     "music_s": session.stats["music_seconds"],
                     "same_letter": round(float(np.mean(seed_same)), 3) if seed_same else None,
                     "different_letter": round(float(np.mean(seed_diff)), 3) if seed_diff else None})
    summary = {"form": args.form, "section_bars": args.section_bars, "checkpoint": str(args.checkpoint),
               "same_letter_mean": round(float(np.mean(same)), 3),
               "different_letter_mean": round(float(np.mean(different)), 3),
               "seconds": round(time.perf_counter() - t0, 1)}
    emit(f"form self-similarity ({args.form})", rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
