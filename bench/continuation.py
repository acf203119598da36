"""Continuation benchmark: does the model continue a prompt as the pianist did, in key, pace, dynamics and register?

    python bench/continuation.py [--checkpoint assets/checkpoints/flagship] [--split validation] [--pieces 32]
        [--seed 0] [--variations 2] [--row key_strength=0.5,dynamics_strength=1 ...] [--sweep NAME=V1,V2 ...]
        [--row windows=64/256/1024] [--figure FIG.png] [--json]

4 bars of prompt from the middle of each of N pieces spread over the split, 12 bars (24 s) of
continuation, compared with the real next 12 bars (ceiling) and another piece's next 12 bars
(floor); see comagen/training/continuation.py for the statistics and their closeness (1 = the
pianist, 0 = another piece). Each `--row` is one sampling setting; `--sweep` values multiply out
(same prompts and seeds for all); a sampling field not named takes the checkpoint's tuned default
(its sampling.json), else the global one. With neither, one row of the tuned defaults. Tune on
validation only; report test once. Each prompt is continued `--variations` times in one batch
(sampling swings a piece's statistics widely; every statistic is the mean over all continuations).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import itertools
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle
from comagen.errors import ConfigError
from comagen.generation.request import Request
from comagen.generation.settings import TUNABLE, TUNED, Settings, bundle_settings, parse_windows
from comagen.music.midi import SECONDS_PER_BAR
from comagen.render.closeness import closeness_figure
from comagen.report import add_data_options, emit
from comagen.training.continuation import (
    CLOSENESS,
    CONTINUATION_BARS,
    closeness,
    compare,
    continue_excerpt,
    excerpt,
    pooled_overlap,
)
from comagen.training.data import load_index, load_tokenized, select_split

ROOT = Path(__file__).resolve().parents[1]
OLD = ("density_ratio", "silence_share")


def assignments(text: str) -> dict[str, list]:
    """'a=1,b=2' (one row) or 'a=1,2' (a sweep) -> {name: [values]}; names are sampling fields, or
    windows as 'windows=64/256/1024' (the scales' widths, narrower than trained)."""
    out: dict[str, list] = {}
    name = None
    for part in text.split(","):
        if "=" in part:
            name, part = part.split("=", 1)
            if name not in TUNABLE:
                raise ConfigError(f"{name!r} is not a sampling setting; choose from {', '.join(TUNABLE)}")
            out[name] = []
        if name is None:
            raise ConfigError(f"expected NAME=VALUE, not {text!r}")
        out[name].append(parse_windows(part.replace("/", ",")) if name == "windows" else float(part))
    return out


def settings_rows(rows: list[str], sweeps: list[str]) -> list[dict]:
    """The sampling overrides of every row: each --row, then every combination of the --sweep values."""
    out = [{k: v[-1] for k, v in assignments(r).items()} for r in rows]
    grid = {k: v for s in sweeps for k, v in assignments(s).items()}
    if grid:
        out += [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return out or [{}]


def mean_of(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in (*CLOSENESS, *OLD)}


def scored(label: str, stats: dict[str, float], ceiling: dict, floor: dict) -> dict:
    """A table row: the raw statistics, each one's closeness, and their mean."""
    near = {f"c_{k}": closeness(stats[k], ceiling[k], floor[k]) for k in CLOSENESS}
    return {"setting": label, **{k: stats[k] for k in CLOSENESS}, **near,
            "c_mean": float(np.nanmean(list(near.values()))), **{k: stats[k] for k in OLD}}


def reference_rows(items: list) -> tuple[list, list, dict, dict, list[dict]]:
    """The excerpts' prompts and real continuations, the statistics of the ceiling (the real next 12
    bars) and the floor (another piece's), and their two table rows: every model is scored between them."""
    prompts, reals = [i.prompt_notes() for i in items], [i.real_notes() for i in items]
    ceiling = mean_of([compare(p, r) for p, r in zip(prompts, reals, strict=True)])
    floor = mean_of([compare(p, reals[(i + 1) % len(reals)]) for i, p in enumerate(prompts)])
    half = len(reals) // 2
    rows = [scored("real next 12 bars (ceiling)", ceiling, ceiling, floor) | {
                "pooled": pooled_overlap(reals[:half], reals[half:])["mean"]},
            scored("another piece (floor)", floor, ceiling, floor) | {"pooled": float("nan")}]
    return prompts, reals, ceiling, floor, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "flagship")
    add_data_options(parser, ROOT)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--pieces", type=int, default=32)
    parser.add_argument("--row", action="append", default=[], help="one setting, e.g. key_strength=0.5,top_p=0.95")
    parser.add_argument("--sweep", action="append", default=[], help="values to multiply out, e.g. key_strength=0,1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variations", type=int, default=2, help="continuations per prompt (one batch)")
    parser.add_argument("--figure", type=Path, help="write the closeness figure here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bundle = load_bundle(args.checkpoint)
    tuned = bundle_settings(bundle)
    settings = [replace(tuned, **over) for over in settings_rows(args.row, args.sweep)]
    pieces = sorted(select_split(load_index(args.data), args.split), key=lambda p: p.key)
    spread = [pieces[i] for i in np.linspace(0, len(pieces) - 1, min(len(pieces), 2 * args.pieces)).astype(int)]
    items = [e for e in (excerpt(t, bundle.tokenizer) for t in load_tokenized(spread, bundle.tokenizer, args.cache,
                                                                               progress=False)) if e][:args.pieces]
    prompts, reals, ceiling, floor, rows = reference_rows(items)
    seconds = CONTINUATION_BARS * SECONDS_PER_BAR
    plain = Settings()
    for s in settings:
        request = Request(max_tokens=150 * int(seconds), seconds=seconds, sampling=s.sampling(), seed=args.seed,
                          variations=args.variations, windows=list(s.windows) or None)  # the streaming windows
        label = " ".join([*(f"{k}={getattr(s, k):g}" for k in TUNED if getattr(s, k) != getattr(plain, k)),
                          *([f"windows={'/'.join(map(str, s.windows))}"] if s.windows else [])]) or "plain"
        runs = [continue_excerpt(bundle, item, request) for item in tqdm(items, desc=label,
                                                                          leave=False)]
        ours = [notes for rows, _ in runs for notes in rows]
        stats = mean_of([compare(prompt, notes) for prompt, (rows, _) in zip(prompts, runs, strict=True)
                         for notes in rows])
        rows.append(scored(label, stats, ceiling, floor) | {
            "pooled": pooled_overlap(ours, reals)["mean"],
            "tokens_per_s": float(np.median([run["tokens_per_s"] for _, run in runs]))})
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items() if k != "setting"),
              file=sys.stderr, flush=True)  # each row as it lands: a long sweep's finished rows survive a stop
    if args.figure:
        closeness_figure(rows, CLOSENESS, f"{bundle.name}: {len(items)} {args.split} pieces", args.figure)
    emit(f"continuation bench: {bundle.name}, {len(items)} {args.split} pieces, 4 bars in, "
         f"{CONTINUATION_BARS} bars out, seed {args.seed}", rows,
         {"checkpoint": str(args.checkpoint), "split": args.split, "pieces": len(items), "seed": args.seed},
         as_json=args.json)


if __name__ == "__main__":
    main()
