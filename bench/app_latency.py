"""What a user of the app waits for: time to the first streamed token, and the total time for 20 s
of new music including the audio, MIDI, piano roll and attention figure, through the same
`studio.stream` the page uses (no browser; the HTTP hop adds milliseconds).

    python bench/app_latency.py [--checkpoint assets/checkpoints/default] [--seconds 20] [--runs 2] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse
import os
import time

import studio
from comagen.generation.settings import Settings
from comagen.report import emit

PROMPTS = ['L. van Beethoven: Bagatelle in A minor, WoO 59 "Für Elise"', "E. Satie: Gymnopédie No. 1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path,
                        default=Path(os.environ.get("COMAGEN_CHECKPOINT", studio.CHECKPOINTS_DIR / "default")))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keep", type=float, default=8.0, help="prompt seconds kept")
    parser.add_argument("--runs", type=int, default=2, help="runs per prompt (seeds 0..runs-1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bundle = studio.Checkpoints({"bench": args.checkpoint}).get("bench")
    load_s = time.perf_counter() - t0
    gallery = studio.build_gallery()
    rows = []
    for label in PROMPTS:
        for seed in range(args.runs):
            prompt, name = studio.resolve_prompt(bundle, None, gallery, label, args.keep)
            request = studio.app_request(bundle, Settings(seconds=args.seconds, seed=seed), random_seed=False)
            start = time.perf_counter()
            gaps, last, sampled_at = [], start, None
            for frame in studio.stream(bundle, prompt, request, name):
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                if frame.status.startswith("Rendering"):
                    sampled_at = now
            total = time.perf_counter() - start
            stats = frame.take.stats
            rows.append({"prompt": name, "seed": seed, "first_token_s": round(frame.first_token_s or 0.0, 3),
                         "sampling_s": round(sampled_at - start, 2), "total_s": round(total, 2),
                         "music_s": stats["music_seconds"], "tokens_per_s": stats["tokens_per_s"],
                         "realtime_factor": stats["realtime_factor"],
                         "max_update_gap_s": round(max(gaps[1:-2] or [0.0]), 2)})
    summary = {"checkpoint": str(args.checkpoint), "load_s": round(load_s, 2),
               "median_first_token_s": sorted(r["first_token_s"] for r in rows)[len(rows) // 2],
               "median_total_s": sorted(r["total_s"] for r in rows)[len(rows) // 2],
               "requested_music_s": args.seconds}
    emit(f"app latency: {args.seconds:.0f} s of music with audio and figures", rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
