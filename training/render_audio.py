"""Render a share of MAESTRO train and validation to beat-aligned files (never holdout), cached and restartable.

    python training/render_audio.py [--data ../shared/data/maestro] [--out cache/beats] [--share 1.0]
        [--max-files N] [--seconds S] [--samples-per-beat 16000] [--split test] [--workers N]

Each performance is re-timed onto the 120 bpm grid, rendered through FluidSynth and cut at its exact
beats. `--split test` renders the test split instead (for reporting once; holdout never); `--workers`
renders that many pieces at a time (a lent GPU machine's 16 cores). A file that exists is skipped; each is
written under a temporary name and renamed when complete (comagen.audio.beatfile.write_beats), so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm

from comagen.audio.beatfile import write_beats
from comagen.audio.convert import DEFAULT_SAMPLES_PER_BEAT, beat_grid, to_beats
from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation")  # what training renders; the test split only when asked for by name


def chosen(data: Path, share: float, max_files: int | None, splits: tuple[str, ...] = SPLITS) -> list[dict]:
    """Every k-th row of `splits` (of MAESTRO's csv: train, validation, test) so that `share` is kept."""
    with (data / "maestro-v3.0.0.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] in splits]
    step = max(1, round(1 / share))
    return rows[::step][:max_files]


def render_one(data: Path, row: dict, out: Path, seconds: float | None, spb: int) -> None:
    """Render one performance (its first `seconds` if given) to `out`, unless it is there already."""
    if out.exists():
        return
    score = to_grid(load_score(data / row["midi_filename"], max_seconds=1e9), 480)
    if seconds:
        score = score.clip(0, int(480 * GRID_BPM / 60 * seconds))
    samples, rate = render_audio(score)
    write_beats(out, to_beats(samples, rate, beat_grid(len(samples) / rate, GRID_BPM), spb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "maestro")
    parser.add_argument("--out", type=Path, default=ROOT / "cache" / "beats")
    parser.add_argument("--share", type=float, default=1.0)
    parser.add_argument("--max-files", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="render only each piece's first S seconds")
    parser.add_argument("--samples-per-beat", type=int, default=DEFAULT_SAMPLES_PER_BEAT)
    parser.add_argument("--split", choices=("train", "validation", "test"), help="only this split (default: "
                        "train and validation)")
    parser.add_argument("--workers", type=int, default=1, help="pieces rendered at a time")
    args = parser.parse_args()
    rows = chosen(args.data, args.share, args.max_files, (args.split,) if args.split else SPLITS)
    files = [args.out / r["split"] / (Path(r["midi_filename"]).stem + ".beats") for r in rows]
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(render_one, args.data, row, out, args.seconds, args.samples_per_beat)
                for row, out in zip(rows, files, strict=True)]
        for job in tqdm(jobs, unit="piece"):
            job.result()
    total = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {total / 1e6:.1f} MB on disk in {args.out}")


if __name__ == "__main__":
    main()
