"""Infilling benchmark: does choosing among K sampled spans make the following music more likely?

    python bench/infill.py [--checkpoint assets/checkpoints/default] [--split validation]
        [--pieces 12] [--span-bars 4] [--suffix-bars 8] [--candidates 8] [--json]

For N pieces spread over the split, a span of bars in the middle of each is regenerated and the
next bars after it are scored (bits per note) after: the chosen infill (best of K candidates), a
plain continuation (one sample, no choice), the mean of the K candidates (what one sample gives on
average) and the real span the pianist played. Tune on validation only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np
import torch
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.infill import cut_span, infill, left_context, scored_suffix, suffix_bits
from comagen.generation.settings import Settings
from comagen.music.grammar import RemiGrammar
from comagen.music.midi import SECONDS_PER_BAR
from comagen.report import add_data_options, emit
from comagen.training.data import load_index, load_tokenized, select_split

ROOT = Path(__file__).resolve().parents[1]


def middle_span(ids: list[int], grammar: RemiGrammar, span_bars: int, suffix_bars: int) -> tuple[float, float] | None:
    """Start and end (seconds) of a span in the middle of a piece with `suffix_bars` after it; None if too short."""
    bars = sum(t == grammar.bar_id for t in ids)
    if bars < span_bars + suffix_bars + 4:
        return None
    start = max(2, bars // 2 - span_bars // 2)
    return start * SECONDS_PER_BAR, (start + span_bars) * SECONDS_PER_BAR


def measure(bundle, ids: list[int], start: float, end: float, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """Suffix bits per note of one piece after each kind of span."""
    chosen = infill(bundle, ids, start, end, args.request, candidates=args.candidates, suffix_bars=args.suffix_bars)
    plain = infill(bundle, ids, start, end, args.request, candidates=1, suffix_bars=args.suffix_bars)
    grammar = RemiGrammar(bundle.tokenizer)
    span = cut_span(grammar, ids, start, end)
    suffix = scored_suffix(grammar, span.after, args.suffix_bars)
    context = left_context(grammar, bundle.tokenizer.bos_id, span.before, bundle.config.max_seq_len)
    notes = chosen.candidates[0].suffix_notes
    return {"chosen": chosen.candidates[chosen.chosen].bits_per_note, "plain": plain.candidates[0].bits_per_note,
            "mean_of_k": float(np.mean([c.bits_per_note for c in chosen.candidates])),
            "worst_of_k": max(c.bits_per_note for c in chosen.candidates),
            "real": suffix_bits(bundle, context, span.inside, suffix) / notes, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "default")
    add_data_options(parser, ROOT)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--span-bars", type=int, default=4)
    parser.add_argument("--suffix-bars", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.checkpoint)
    # the global sampling defaults (not the checkpoint's tuned sampling.json)
    args.request = Settings(seed=args.seed).request(bundle.composers, None, max_tokens=1)
    grammar = RemiGrammar(bundle.tokenizer)
    pieces = sorted(select_split(load_index(args.data), args.split), key=lambda p: p.key)
    spread = [pieces[i] for i in np.linspace(0, len(pieces) - 1, min(len(pieces), 2 * args.pieces)).astype(int)]
    items = []
    for t in load_tokenized(spread, bundle.tokenizer, args.cache, progress=False):
        ids = t.ids.tolist()
        span = middle_span(ids, grammar, args.span_bars, args.suffix_bars)
        if span:
            items.append((ids, *span))
    items = items[:args.pieces]
    results = [measure(bundle, ids, a, b, args) for ids, a, b in tqdm(items, desc="infill", disable=args.json)]
    notes = np.array([r["notes"] for r in results], dtype=float)
    rows = []
    for key, label in (("real", "real span"), ("chosen", f"chosen infill (best of K={args.candidates})"),
                       ("plain", "plain continuation (K=1)"), ("mean_of_k", f"mean of the K={args.candidates}"),
                       ("worst_of_k", f"worst of the K={args.candidates}")):
        values = np.array([r[key] for r in results])
        rows.append({"span": label, "bits_per_note": float((values * notes).sum() / notes.sum()),
                     "vs_plain": float(((values - np.array([r["plain"] for r in results])) * notes).sum()
                                       / notes.sum()),
                     "pieces_below_plain": int((values < np.array([r["plain"] for r in results])).sum())})
    emit(f"infill bench: {bundle.name}, {len(items)} {args.split} pieces, {args.span_bars}-bar span, next "
         f"{args.suffix_bars} bars scored", rows,
         {"checkpoint": str(args.checkpoint), "split": args.split, "pieces": len(items),
          "candidates": args.candidates, "per_piece": results}, as_json=args.json)


if __name__ == "__main__":
    main()
