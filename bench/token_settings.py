"""The token-settings trade-off behind the tokenizer defaults, measured on MAESTRO validation.

For each setting: vocabulary size, tokens per note, note-count change, onset error (median,
p95, worst file's p95), last-note error and sounding-duration error.

    python bench/token_settings.py --data ../shared/data/maestro [--max-files N] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse

import numpy as np

from comagen.music.midi import load_score
from comagen.music.roundtrip import roundtrip_score
from comagen.music.tokenizer import PianoTokenizer, TokenSettings
from comagen.report import emit
from comagen.training.data import load_index, select_split

SETTINGS = [
    TokenSettings(positions_per_beat=8),
    TokenSettings(positions_per_beat=12),
    TokenSettings(positions_per_beat=24),
    TokenSettings(positions_per_beat=24, num_velocities=16),
    TokenSettings(positions_per_beat=24, pedal="tokens"),
    TokenSettings(positions_per_beat=32),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--max-files", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pieces = select_split(load_index(args.data), "validation")[: args.max_files]
    scores = [load_score(p.path) for p in pieces]
    rows = []
    for settings in SETTINGS:
        tok = PianoTokenizer(settings)
        results = [roundtrip_score(tok, s) for s in scores]
        n_in = sum(r.notes_in for r in results)
        rows.append({
            "positions_per_beat": settings.positions_per_beat,
            "velocities": settings.num_velocities,
            "pedal": settings.pedal,
            "vocab": tok.vocab_size,
            "tokens_per_note": round(sum(r.tokens for r in results) / n_in, 3),
            "notes_lost_pct": round(100 * (n_in - sum(r.notes_out for r in results)) / n_in, 3),
            "onset_ms_median": round(float(np.median([r.onset_error_ms_median for r in results])), 2),
            "onset_ms_p95": round(float(np.median([r.onset_error_ms_p95 for r in results])), 2),
            "worst_file_p95": round(max(r.onset_error_ms_p95 for r in results), 2),
            "last_note_ms_max": round(max(r.last_note_error_ms for r in results), 2),
            "duration_ms_median": round(float(np.median([r.duration_error_ms_median for r in results])), 2),
        })
    emit("token settings (MAESTRO validation)", rows, {"files": len(pieces)}, as_json=args.json)


if __name__ == "__main__":
    main()
