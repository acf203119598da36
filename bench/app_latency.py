"""What a user of the app waits for: time to the first streamed token, and the total time for 20 s
of new music including the audio, MIDI, piano roll and attention figure, through the same
`studio.stream` the page uses (no browser; the HTTP hop adds milliseconds).

    python bench/app_latency.py [--checkpoint assets/checkpoints/default] [--seconds 20] [--runs 2] [--json]
    python bench/app_latency.py --live on,server-off,off [--checkpoint DIR] [--seconds 20] [--runs 2] [--json]

With --live, what the live view (token text and piano roll while sampling) costs the engine: the
same generations (prompt, seed, the page's settings for the checkpoint) made in turns by
  on          the real app (`python app.py`, started through studio.appserver), /generate read with
              gradio_client as the page reads it, every streamed update;
  server-off  the real app with COMAGEN_LIVE_VIEW=off: the same server, no update until the results;
  studio      `studio.stream` with live rolls in this process, no HTTP (the drawing without gradio);
  off         the same generation job (`studio.jobs.Job`) in this process, nothing drawn or sent.
tokens/s is the engine's own (tokens over its sampling time) in every mode; the summary gives each
mode's median and its ratio to `server-off` (the live view's own cost; the target is at most 10 %, a
ratio of at least 0.9) and to `off` (the server's cost besides). Each mode first makes 2 s of music
untimed (a process's first generation builds its ONNX session); then the modes take turns, the order
reversed every round, so drifting load hits all alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/tokenize.py shadows the stdlib)

import argparse
import os
import re
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace

import studio
from comagen.bundle.checkpoint import Bundle
from comagen.generation.settings import Settings, bundle_settings
from comagen.report import emit

PROMPTS = ['L. van Beethoven: Bagatelle in A minor, WoO 59 "Für Elise"', "E. Satie: Gymnopédie No. 1"]
LIVE_MODES = ("on", "server-off", "studio", "off")
SERVED = {"on": "on", "server-off": "off"}  # modes that run in the real app, with its COMAGEN_LIVE_VIEW
STATS = re.compile(r"\*\*([\d.]+) tokens/s\*\*, ([\d.]+) s of music in ([\d.]+) s \(real-time factor \*\*([\d.]+)")


def page_settings(bundle: Bundle, seconds: float, seed: int) -> Settings:
    """What the page sends when only length and seed are set: the checkpoint's tuned sampling."""
    return replace(bundle_settings(bundle), seconds=seconds, seed=seed)


def latency_rows(bundle: Bundle, seconds: float, keep: float, runs: int) -> list[dict]:
    """First token, sampling and total time of each prompt and seed through `studio.stream`."""
    gallery = studio.build_gallery()
    rows = []
    for label in PROMPTS:
        for seed in range(runs):
            prompt, name = studio.resolve_prompt(bundle, None, gallery, label, keep)
            request = studio.app_request(bundle, page_settings(bundle, seconds, seed), random_seed=False)
            start = time.perf_counter()
            gaps, last, sampled_at = [], start, None
            for frame in studio.stream(bundle, prompt, request, name):
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                if frame.status.startswith("Rendering"):
                    sampled_at = now
            total = time.perf_counter() - start
            stats = frame.take.stats
            rows.append({"prompt": name, "seed": seed, "first_token_s": round(frame.first_token_s or 0.0, 3),
                         "sampling_s": round(sampled_at - start, 2), "total_s": round(total, 2),
                         "music_s": stats["music_seconds"], "tokens_per_s": stats["tokens_per_s"],
                         "realtime_factor": stats["realtime_factor"],
                         "max_update_gap_s": round(max(gaps[1:-2] or [0.0]), 2)})
    return rows


def generate_in_app(client, label: str, seconds: float, seed: int, keep: float) -> dict:  # noqa: ANN001
    """One /generate through the real server, every streamed update read; the engine's figures
    parsed from the stats it returns."""
    job = client.submit(prompt=label, upload=None, keep_seconds=keep, seconds=seconds, seed=seed,
                        random_seed=False, api_name="/generate")
    updates = sum(1 for _ in job)
    out = job.result()
    found = STATS.search(out[1])
    if out[0] != "Done." or found is None:
        raise RuntimeError(f"/generate ended with status {out[0]!r} and stats {out[1][:200]!r}")
    rate, music, wall, factor = (float(g) for g in found.groups())
    return {"tokens_per_s": rate, "music_s": music, "sampling_s": wall, "realtime_factor": factor, "updates": updates}


def generate_here(bundle: Bundle, gallery: dict, label: str, seconds: float, seed: int, keep: float,
                  live: bool) -> dict:
    """The same generation in this process: through `studio.stream` (live) or its bare job."""
    from studio.jobs import Job

    prompt, name = studio.resolve_prompt(bundle, None, gallery, label, keep)
    request = studio.app_request(bundle, page_settings(bundle, seconds, seed), random_seed=False)
    updates = 0
    if live:
        takes = [frame.take for frame in studio.stream(bundle, prompt, request, name)]
        updates, stats = len(takes), takes[-1].stats
    else:
        job = Job(bundle, prompt, request)
        job.wait()
        if job.error:
            raise RuntimeError(job.error)
        stats = job.snapshot().stats
    return {"tokens_per_s": stats["tokens_per_s"], "music_s": stats["music_seconds"],
            "sampling_s": stats["seconds_elapsed"], "realtime_factor": stats["realtime_factor"], "updates": updates}


def live_rows(bundle: Bundle, checkpoint: Path, modes: list[str], seconds: float, keep: float,
              runs: int) -> list[dict]:
    """Each prompt and seed in every mode, the modes taking turns (reversed every other round)."""
    from gradio_client import Client

    from studio.appserver import serve

    gallery = studio.build_gallery()
    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="comagen-live-") as tmp:
        clients = {}
        for mode in (m for m in modes if m in SERVED):
            server = stack.enter_context(serve(checkpoint.resolve(), Path(tmp) / f"{mode}.log",
                                               env={"COMAGEN_LIVE_VIEW": SERVED[mode]}))
            clients[mode] = Client(server.url, verbose=False, download_files=False, analytics_enabled=False)
            stack.callback(clients[mode].close)

        def one(mode: str, label: str, secs: float, seed: int) -> dict:
            if mode in clients:
                return generate_in_app(clients[mode], label, secs, seed, keep)
            return generate_here(bundle, gallery, label, secs, seed, keep, live=mode == "studio")

        for mode in modes:  # untimed: the first generation of a process builds its ONNX session
            one(mode, PROMPTS[0], 2.0, 0)
        for round_ in range(runs):
            for label in PROMPTS:
                for mode in modes if round_ % 2 == 0 else modes[::-1]:
                    rows.append({"live": mode, "prompt": label.split(":")[0], "seed": round_,
                                 **one(mode, label, seconds, round_)})
    return rows


def live_summary(rows: list[dict], modes: list[str]) -> dict:
    """Median tokens/s and real-time factor per mode, and each mode's tokens/s over `off`'s."""
    median = {m: round(statistics.median(r["tokens_per_s"] for r in rows if r["live"] == m), 1) for m in modes}
    factor = {m: round(statistics.median(r["realtime_factor"] for r in rows if r["live"] == m), 2) for m in modes}
    out = {"median_tokens_per_s": median, "median_realtime_factor": factor}
    for base in ("off", "server-off"):
        if base in modes:
            out[f"ratio_to_{base}"] = {m: round(median[m] / median[base], 3) for m in modes if m != base}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path,
                        default=Path(os.environ.get("COMAGEN_CHECKPOINT", studio.CHECKPOINTS_DIR / "default")))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keep", type=float, default=8.0, help="prompt seconds kept")
    parser.add_argument("--runs", type=int, default=2, help="runs per prompt (seeds 0..runs-1)")
    parser.add_argument("--live", default="", help=f"compare live-view modes, comma-separated: {','.join(LIVE_MODES)}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bundle = studio.Checkpoints({"bench": args.checkpoint}).get("bench")
    load_s = time.perf_counter() - t0
    summary = {"checkpoint": str(args.checkpoint), "load_s": round(load_s, 2), "requested_music_s": args.seconds}
    if args.live:
        modes = args.live.split(",")
        if not set(modes) <= set(LIVE_MODES):
            parser.error(f"--live takes {', '.join(LIVE_MODES)}")
        rows = live_rows(bundle, args.checkpoint, modes, args.seconds, args.keep, args.runs)
        summary.update(live_summary(rows, modes))
        title = f"live view: tokens/s of {args.seconds:.0f} s of music with and without it"
    else:
        rows = latency_rows(bundle, args.seconds, args.keep, args.runs)
        summary.update({"median_first_token_s": sorted(r["first_token_s"] for r in rows)[len(rows) // 2],
                        "median_total_s": sorted(r["total_s"] for r in rows)[len(rows) // 2]})
        title = f"app latency: {args.seconds:.0f} s of music with audio and figures"
    emit(title, rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
