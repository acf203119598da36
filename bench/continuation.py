"""Continuation benchmark: does the model keep the prompt's key, pace, dynamics and register?

    python bench/continuation.py [--checkpoint assets/checkpoints/default] [--split validation]
        [--pieces 16] [--temperatures 1.0] [--top-ps 0.95] [--min-ps 0] [--key-strengths 0] [--top-k 0] [--json]

4 bars of prompt from the middle of each of N pieces spread over the split, 12 bars (24 s) of
continuation, compared with the real next 12 bars (ceiling) and another piece's next 12 bars
(floor); see comagen/training/continuation.py for the statistics. Several values per sampling option give
a sweep (every combination, one row each, same prompts and seeds); an option not given takes the
checkpoint's tuned default (its sampling.json), else the global one. Tune on validation only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import itertools

import numpy as np
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling
from comagen.generation.settings import tuned_settings
from comagen.music.midi import SECONDS_PER_BAR
from comagen.report import add_data_options, emit
from comagen.training.continuation import CONTINUATION_BARS, compare, continue_excerpt, excerpt, pooled_overlap
from comagen.training.data import load_index, load_tokenized, select_split

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("key", "density", "velocity_gap", "register_gap", "silence")


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def mean_of(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "default")
    add_data_options(parser, ROOT)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--pieces", type=int, default=16)
    parser.add_argument("--temperatures", type=floats)
    parser.add_argument("--top-ps", type=floats)
    parser.add_argument("--min-ps", type=floats)
    parser.add_argument("--key-strengths", type=floats)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bundle = load_bundle(args.checkpoint)
    tuned = tuned_settings(bundle.sampling)
    options = {"temperatures": "temperature", "top_ps": "top_p", "min_ps": "min_p", "key_strengths": "key_strength"}
    sweep = [getattr(args, option) or [getattr(tuned, name)] for option, name in options.items()]
    top_k = tuned.top_k if args.top_k is None else args.top_k
    pieces = sorted(select_split(load_index(args.data), args.split), key=lambda p: p.key)
    spread = [pieces[i] for i in np.linspace(0, len(pieces) - 1, min(len(pieces), 2 * args.pieces)).astype(int)]
    items = [e for e in (excerpt(t, bundle.tokenizer) for t in load_tokenized(spread, bundle.tokenizer, args.cache,
                                                                               progress=False)) if e][:args.pieces]
    prompts, reals = [i.prompt_notes() for i in items], [i.real_notes() for i in items]
    ceiling = mean_of([compare(p, r) for p, r in zip(prompts, reals, strict=True)])
    floor = mean_of([compare(p, reals[(i + 1) % len(reals)]) for i, p in enumerate(prompts)])
    half = len(reals) // 2
    rows = [{"setting": "real next 12 bars (ceiling)", **ceiling,
             "pooled": pooled_overlap(reals[:half], reals[half:])["mean"]},
            {"setting": "another piece (floor)", **floor, "pooled": float("nan")}]
    seconds = CONTINUATION_BARS * SECONDS_PER_BAR
    for t, p, m, k in itertools.product(*sweep):
        request = Request(max_tokens=150 * int(seconds), seconds=seconds, sampling=Sampling(t, top_k, p, m, k),
                          seed=args.seed)
        label = f"T={t} top-p={p} min-p={m} key={k}"
        ours = [continue_excerpt(bundle, item, request)
                for item in tqdm(items, desc=label, disable=args.json, leave=False)]
        stats = mean_of([compare(a, b) for a, b in zip(prompts, ours, strict=True)])
        reached = {k: (stats[k] - floor[k]) / (ceiling[k] - floor[k]) for k in ("key", "density")
                   if ceiling[k] != floor[k]}
        rows.append({"setting": f"{label} top-k={top_k}", **stats,
                     "pooled": pooled_overlap(ours, reals)["mean"], "key_reached": reached.get("key", float("nan")),
                     "density_reached": reached.get("density", float("nan"))})
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items() if k != "setting"),
              file=sys.stderr, flush=True)  # each row as it lands: a long sweep's finished rows survive a stop
    emit(f"continuation bench: {bundle.name}, {len(items)} {args.split} pieces, 4 bars in, "
         f"{CONTINUATION_BARS} bars out", rows, {"checkpoint": str(args.checkpoint), "split": args.split,
                                                 "pieces": len(items)}, as_json=args.json)


if __name__ == "__main__":
    main()
