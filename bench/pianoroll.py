"""The piano-roll transformer measured: frame NLL (nats per frame) on a split against two floors, and
streaming speed through the whole generation loop (sampling included) at batch 1.

- nll: the model against each key's training frequency and "repeat the last frame" (each key keeps
  or flips its state at its own training rates), both estimated on a fixed spread of train pieces,
  on the first --max-frames frames of a fixed spread of --files pieces of --split (tune on
  validation; report test once).
- continuation: the continuation benchmark (`comagen.training.continuation`, as `bench/continuation.py`
  runs it for the token models: 4 bars in, 12 out, --pieces pieces of --split, --variations each)
  with the bundle's tuned sampling, beside the pianist's own next bars (ceiling) and another
  piece's (floor), each statistic's closeness between them. Each --row is one setting over the
  tuned ones: sampling (temperature, top_k, top_p) and how frames become notes (velocity=draw|median,
  timing=draw|grid: `FrameDecoding`), e.g. --row velocity=median,timing=grid --row top_k=8.
- speed: frames per second and x real time at 1 thread over consecutive stretches of one 4,096-frame
  stream (past the 1,024-frame memory the state slides; the cost per frame should stay flat), wall
  and process-CPU time side by side (CPU time is what a busy shared machine does not inflate).

    python bench/pianoroll.py --checkpoint assets/checkpoints/pianoroll [--split test]
        [--sections nll,continuation,speed] [--row NAME=VALUE,...] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse
import time
from dataclasses import fields, replace

import numpy as np
import torch

from bench.continuation import mean_of, reference_rows, scored
from comagen.bundle.pianoroll import FrameBundle, frame_bundle
from comagen.errors import ConfigError
from comagen.generation.frame_session import FrameDecoding, FrameSession
from comagen.generation.pianoroll import FrameSampling, generate_frames
from comagen.generation.request import Request
from comagen.generation.settings import TUNED, bundle_settings
from comagen.music.midi import SECONDS_PER_BAR
from comagen.report import add_data_options, emit
from comagen.training.continuation import CONTINUATION_BARS, Notes, compare, excerpt, pooled_overlap
from comagen.training.data import load_index, load_tokenized, select_split
from comagen.training.frame_data import load_frame_pieces
from comagen.training.frame_nll import floor_nll, key_rates, model_nll


def spread(items: list, n: int) -> list:
    return [items[i] for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]


def nll_rows(bundle: FrameBundle, data: Path, split: str, files: int, max_frames: int,
             train_files: int) -> list[dict]:
    pieces = load_index(data)
    train = load_frame_pieces(spread(sorted(select_split(pieces, "train"), key=lambda p: p.key), train_files),
                              bundle.frames)
    scored = load_frame_pieces(spread(select_split(pieces, split), files), bundle.frames)
    floors = floor_nll(key_rates(train, max_frames * 4), scored, max_frames)
    model = model_nll(bundle.model, scored, max_frames, "cpu")
    rows = [{"predictor": name, "nats_per_frame": value} for name, value in floors.items()]
    rows.append({"predictor": f"pianoroll ({bundle.name})", "nats_per_frame": model})
    for row in rows:
        row["vs_repeat_last"] = row["nats_per_frame"] - floors["repeat_last_frame"]
    return rows


def continuation_rows(bundle: FrameBundle, data: Path, cache: Path, split: str, pieces: int, variations: int,
                      seed: int, rows_: list[str]) -> list[dict]:
    everything = sorted(select_split(load_index(data), split), key=lambda p: p.key)
    tokenized = load_tokenized(spread(everything, 2 * pieces), bundle.tokenizer, cache, progress=False)
    items = [e for e in (excerpt(t, bundle.tokenizer) for t in tokenized) if e][:pieces]
    prompts, reals, ceiling, floor, rows = reference_rows(items)
    for row in rows_ or [""]:
        stats, ours = _continued(bundle, items, prompts, row, variations, seed)
        rows.append(scored(f"{bundle.name} ({row or 'its sampling.json'})", stats, ceiling, floor) | {
            "pooled": pooled_overlap(ours, reals)["mean"]})
    return rows


def _continued(bundle: FrameBundle, items: list, prompts: list[Notes], row: str, variations: int,
               seed: int) -> tuple[dict, list[Notes]]:
    """Mean statistics against the prompts and all continuations of one --row setting."""
    over = dict(part.split("=", 1) for part in row.split(",") if part)
    decode = {f.name for f in fields(FrameDecoding)}
    unknown = sorted(set(over) - decode - set(TUNED))
    if unknown:
        raise ConfigError(f"--row: {', '.join(unknown)} is neither a sampling setting nor velocity/timing")
    settings = replace(bundle_settings(bundle), **{k: float(v) for k, v in over.items() if k not in decode})
    decoding = FrameDecoding(**{k: v for k, v in over.items() if k in decode})
    seconds = CONTINUATION_BARS * SECONDS_PER_BAR
    request = Request(max_tokens=150 * int(seconds), seconds=seconds, sampling=settings.sampling(), seed=seed,
                      variations=variations)
    ours = []
    for item in items:
        session = FrameSession(bundle, item.prompt(bundle.tokenizer), request, decoding)
        for _ in session:
            pass
        ours.append([Notes.from_score(session.score(r), session.prompt.seconds, seconds) for r in range(variations)])
    stats = mean_of([compare(p, n) for p, rows_ in zip(prompts, ours, strict=True) for n in rows_])
    return stats, [n for rows_ in ours for n in rows_]


def speed_rows(bundle: FrameBundle, total: int, stretch: int, seed: int) -> list[dict]:
    torch.set_num_threads(1)
    fps = bundle.frames.frames_per_second
    rows, wall0, cpu0 = [], time.perf_counter(), time.process_time()
    stream = generate_frames(bundle.model, None, total, FrameSampling(), seed)
    for index, _ in enumerate(stream, start=1):
        if index % stretch == 0:
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            rows.append({"frames": f"{index - stretch}-{index}", "frames_per_s_wall": stretch / wall,
                         "x_real_time_wall": stretch / wall / fps, "frames_per_s_cpu": stretch / cpu,
                         "x_real_time_cpu": stretch / cpu / fps})
            wall0, cpu0 = time.perf_counter(), time.process_time()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, Path(__file__).resolve().parents[1])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--sections", default="nll,continuation,speed")
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--max-frames", type=int, default=2048)
    parser.add_argument("--train-files", type=int, default=120, help="train pieces the floors' rates come from")
    parser.add_argument("--frames", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pieces", type=int, default=32, help="continuation: pieces of --split")
    parser.add_argument("--variations", type=int, default=2, help="continuation: continuations per prompt")
    parser.add_argument("--row", action="append", default=[], help="continuation: one setting, e.g. top_k=8,"
                        "velocity=median (sampling fields, velocity=draw|median, timing=draw|grid)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bundle = frame_bundle(args.checkpoint)
    sections = args.sections.split(",")
    if "nll" in sections:
        emit(f"frame NLL on {args.split} (nats per frame; lower is better)",
             nll_rows(bundle, args.data, args.split, args.files, args.max_frames, args.train_files),
             {"files": args.files, "max_frames": args.max_frames}, as_json=args.json)
    if "continuation" in sections:
        emit(f"continuation bench: {bundle.name}, {args.split}, 4 bars in, {CONTINUATION_BARS} bars out, "
             f"seed {args.seed}", continuation_rows(bundle, args.data, args.cache, args.split, args.pieces,
                                                    args.variations, args.seed, args.row),
             {"split": args.split, "pieces": args.pieces, "seed": args.seed}, as_json=args.json)
    if "speed" in sections:
        emit("streaming speed, batch 1, 1 thread, whole generation loop",
             speed_rows(bundle, args.frames, 1024, args.seed), {"memory_frames": bundle.model.memory},
             as_json=args.json)


if __name__ == "__main__":
    main()
