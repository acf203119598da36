"""Train a BPE vocabulary over our REMI tokens on the MAESTRO train split.

    python training/train_tokenizer.py --data DIR --vocab-size 1024 --out tokenizer.json

Prints tokens per note on validation files before and after BPE (with --json, one JSON object).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comagen.cli import run_for_user
from comagen.music.midi import load_score
from comagen.music.tokenizer import PianoTokenizer, train_bpe
from comagen.training.data import load_index, select_split


def tokens_per_note(tokenizer: PianoTokenizer, paths: list[Path]) -> float:
    scores = [load_score(p) for p in paths]
    return sum(len(tokenizer.encode_score(s)) for s in scores) / sum(s.note_num() for s in scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-files", type=int, default=None, help="train on the first N train files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    def work() -> dict:
        pieces = load_index(args.data)
        train = [p.path for p in select_split(pieces, "train")][: args.max_files]
        check = [p.path for p in select_split(pieces, "validation")][:10]
        base = PianoTokenizer()
        t0 = time.perf_counter()
        bpe = train_bpe(base, train, args.vocab_size)
        seconds = time.perf_counter() - t0
        bpe.save(args.out)
        result = {
            "out": str(args.out),
            "train_files": len(train),
            "base_vocab": base.vocab_size,
            "vocab": bpe.vocab_size,
            "tokens_per_note_before": round(tokens_per_note(base, check), 4),
            "tokens_per_note_after": round(tokens_per_note(bpe, check), 4),
            "seconds": round(seconds, 1),
        }
        for key, value in result.items():
            print(f"{key:>24}  {value}")
        return result

    return run_for_user(work, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
