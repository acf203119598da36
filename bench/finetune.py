"""Fine-tuning bench: does `training/finetune.py` adapt a bundle to one composer, and what does it
cost the others?

    python bench/finetune.py [--composer "Frédéric Chopin"] [--minutes 10] [--base assets/checkpoints/default]
        [--others 4] [--per-other 6] [--max-tokens 2048] [--keep runs/finetuned/chopin] [--json]

The composer's MAESTRO *train* pieces are linked into a temp folder outside the repository (a user's
folder), the base is fine-tuned on it exactly as the command does (its own held-out share of those
train files picks the best step), and then base and result are scored on MAESTRO *validation*: all
of that composer's pieces, `--per-other` pieces of each of the `--others` composers with the most
validation pieces, and those others pooled. Bits per note, conditioned on each piece's composer.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import shutil
import tempfile
from collections import Counter

import numpy as np
import torch

from comagen.bundle.checkpoint import load_bundle
from comagen.report import add_data_options, emit
from comagen.training.data import Piece, load_index, load_tokenized, select_split
from comagen.training.evaluate import evaluate_pieces
from comagen.training.finetune import finetune

ROOT = Path(__file__).resolve().parents[1]


def user_folder(pieces: list[Piece], composer: str, where: Path) -> Path:
    """The composer's train pieces as symlinks in a folder of their own (nothing is copied)."""
    folder = where / composer.split()[-1].lower()
    folder.mkdir()
    for p in select_split(pieces, "train"):
        if p.composer == composer:
            (folder / p.path.name).symlink_to(p.path.resolve())
    return folder


def validation_set(pieces: list[Piece], composer: str, others: int, per_other: int) -> tuple[list[Piece], list[str]]:
    """All of the composer's validation pieces and a fixed spread of the biggest other composers'."""
    val = sorted(select_split(pieces, "validation"), key=lambda p: p.key)
    counts = Counter(p.composer for p in val if p.composer != composer and "/" not in p.composer)
    names = [n for n, _ in counts.most_common(others)]
    chosen = [p for p in val if p.composer == composer]
    for name in names:
        theirs = [p for p in val if p.composer == name]
        chosen += [theirs[i] for i in np.linspace(0, len(theirs) - 1, min(per_other, len(theirs))).astype(int)]
    return chosen, names


def pooled(per: dict, names: list[str]) -> dict:
    """Bits per note over several composers' pieces together (weighted by their notes)."""
    notes = sum(per[n]["notes"] for n in names)
    return {"bits_per_note": sum(per[n]["bits_per_note"] * per[n]["notes"] for n in names) / notes,
            "files": sum(per[n]["files"] for n in names), "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=ROOT / "assets" / "checkpoints" / "default")
    add_data_options(parser, ROOT)
    parser.add_argument("--composer", default="Frédéric Chopin")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=4)
    parser.add_argument("--per-other", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=2048, help="tokens scored per validation piece")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="also keep the fine-tuned bundle here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pieces = load_index(args.data)
    work = Path(tempfile.mkdtemp(prefix="comagen-finetune-bench-"))
    try:
        folder = user_folder(pieces, args.composer, work)
        out = args.keep or work / "out" / folder.name
        run = finetune(args.base, folder, out, minutes=args.minutes, steps=args.steps, composer=args.composer,
                       threads=args.threads, progress=not args.json)
        base, tuned = load_bundle(args.base), load_bundle(out)
        chosen, others = validation_set(pieces, args.composer, args.others, args.per_other)
        val = load_tokenized(chosen, base.tokenizer, args.cache, progress=not args.json)
        scores = {name: evaluate_pieces(b.model, val, b.tokenizer, b.composers, seq_len=run_seq_len(b),
                                        max_tokens=args.max_tokens, progress=not args.json)["per_composer"]
                  for name, b in (("before", base), ("after", tuned))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for label, names in [(args.composer, [args.composer]), *[(n, [n]) for n in others],
                         ("others pooled", others)]:
        before, after = pooled(scores["before"], names), pooled(scores["after"], names)
        rows.append({"validation pieces": label, "files": before["files"], "before": before["bits_per_note"],
                     "after": after["bits_per_note"], "change": after["bits_per_note"] - before["bits_per_note"]})
    summary = {"composer": args.composer, "train_files": len(run.train_files),
               "held_out_train_files": len(run.validation_files), "steps": run.steps, "minutes": run.minutes,
               "stopped": run.stopped, "held_out_before": round(run.before, 3), "held_out_after": round(run.after, 3),
               "threads": args.threads, "max_tokens": args.max_tokens}
    emit(f"fine-tuning {args.base.name} on {args.composer}: MAESTRO validation bits per note", rows, summary,
         as_json=args.json)


def run_seq_len(bundle: object) -> int:
    """The crop length the bundle was trained with (its evaluation context)."""
    return int(bundle.summary.get("seq_len") or bundle.config.max_seq_len)


if __name__ == "__main__":
    main()
