"""Tokenizer speed: notes/s in one process, and the wall time to cache all of MAESTRO.

    python bench/tokenize.py --data ../shared/data/maestro [--json] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse
import tempfile
import time

from comagen.music.midi import load_score
from comagen.music.tokenizer import PianoTokenizer
from comagen.report import emit
from comagen.training.data import load_index, select_split, tokenize_pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-files", type=int, default=20, help="files for the one-process rate")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tokenizer = PianoTokenizer()
    pieces = load_index(args.data)
    sample = sorted(select_split(pieces, "validation"), key=lambda p: p.key)[: args.sample_files]
    notes = 0
    t0 = time.perf_counter()
    for p in sample:
        score = load_score(p.path)
        notes += score.note_num()
        tokenizer.encode_score(score)
    one = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = tokenize_pieces(pieces, tokenizer, tmp, workers=args.workers, progress=not args.json)
        wall = time.perf_counter() - t0
    rows = [
        {"measure": "one process (load+grid+fold+encode)", "files": len(sample), "notes": notes,
         "seconds": round(one, 2), "notes_per_s": round(notes / one)},
        {"measure": f"cache all MAESTRO v3 ({args.workers} processes)", "files": len(pieces),
         "notes": report.notes, "seconds": round(wall, 2), "notes_per_s": round(report.notes / wall)},
    ]
    emit("tokenize", rows, {"notes_per_s_per_process": round(notes / one), "maestro_wall_s": round(wall, 1),
                             "maestro_tokens": report.tokens, "failed": len(report.failed)}, as_json=args.json)


if __name__ == "__main__":
    main()
