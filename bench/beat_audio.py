"""Beat-aligned audio: round-trip error, size and conversion speed per samples-per-beat choice.

    python bench/beat_audio.py [--files 8] [--seconds 10] [--spb 4000 8000 16000 40000] [--json]

The first --files MAESTRO validation performances, each cut to --seconds on the 120 bpm grid, are
rendered through the project's FluidSynth path (44.1 kHz stereo), converted to beat-aligned blocks and
back, and compared with the render: SNR (dB, over all files), worst max abs error, bytes per second of
music in the file format, and conversion speed (seconds of music per second of CPU, both ways).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import csv
import time

import numpy as np

from comagen.audio.convert import beat_grid, from_beats, to_beats
from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio
from comagen.report import emit

ROOT = Path(__file__).resolve().parents[1]


def renders(data: Path, files: int, seconds: float) -> list[tuple[np.ndarray, int]]:
    """Render the first `files` validation performances, cut to `seconds` on the grid."""
    with (data / "maestro-v3.0.0.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "validation"][:files]
    ticks = int(480 * GRID_BPM / 60 * seconds)
    return [render_audio(to_grid(load_score(data / r["midi_filename"]), 480).clip(0, ticks)) for r in rows]


def measure(clips: list[tuple[np.ndarray, int]], spb: int) -> dict:
    """One row: SNR, max abs error, bytes per second and speed for `spb` samples per beat."""
    signal = noise = worst = music = cpu = 0.0
    for samples, rate in clips:
        start = time.process_time()
        back = from_beats(to_beats(samples, rate, beat_grid(len(samples) / rate, GRID_BPM), spb))
        cpu += time.process_time() - start
        error = samples[: len(back)] - back
        signal, noise = signal + float((samples[: len(back)] ** 2).sum()), noise + float((error**2).sum())
        worst, music = max(worst, float(np.abs(error).max())), music + len(back) / rate
    per_second = spb * 2 * 4 * GRID_BPM / 60
    return {"samples_per_beat": spb, "rate_hz_at_120": int(spb * GRID_BPM / 60),
            "snr_db": round(10 * np.log10(signal / noise), 1), "max_abs_err": round(worst, 4),
            "bytes_per_s": int(per_second), "mb_per_hour": round(per_second * 3600 / 1e6),
            "x_realtime": round(music / cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "maestro")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spb", type=int, nargs="+", default=[4000, 8000, 16000, 40000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clips = renders(args.data, args.files, args.seconds)
    rows = [measure(clips, spb) for spb in args.spb]
    emit("Beat-aligned audio round trip", rows, {"files": len(clips), "seconds_each": args.seconds},
         as_json=args.json)


if __name__ == "__main__":
    main()
