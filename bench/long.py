"""Does a ten-minute piece stream in flat memory? RSS and speed while a checkpoint writes one.

    python bench/long.py [--checkpoint assets/checkpoints/default] [--seconds 600] [--every 30]
                         [--runtime auto] [--threads 1] [--no-audio] [--figure docs/figures/long.png] [--json]

The whole engine at batch 1 (grammar, sampling, the runtime `auto` picks for the bundle), from
nothing, default sampling, until `--seconds` of music. Every `--every` seconds of music a row:
music time, tokens, RSS (MiB, /proc/self/statm), tokens/s over the stretch just before it and
overall. The verdict is the RSS growth from minute 1 to the end: the model state is constant-size,
so only the token list (8 bytes a token) should grow. Then the piece is written as MIDI and
rendered to a WAV file with `comagen.render.audio.render_wav`, and for comparison through the float path
(`render_audio` + `wav_bytes`), each with its own peak RSS above the RSS before it (the kernel's
high-water mark, reset through /proc/self/clear_refs where allowed); a one-note render first gives
the fixed cost (the soundfont's one load per process, which later renders share: bench/audio.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import os
import tempfile
import time

import symusic
import torch
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.prompt import Prompt
from comagen.generation.request import tokens_for_seconds
from comagen.generation.session import Session
from comagen.generation.settings import Settings
from comagen.music.midi import midi_bytes
from comagen.render.audio import render_audio, render_wav, wav_bytes
from comagen.report import emit

PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
POLL_STEPS = 64  # look at the music's length every this many tokens


def rss_mib() -> float:
    """Resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MIB


def peak_mib() -> float:
    """The kernel's high-water mark of the resident set (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Start a new high-water mark (Linux: writing 5 to clear_refs); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def generate_long(checkpoint: Path, seconds: float, every: float, runtime: str) -> tuple[list[dict], Session]:
    """Run one piece, sampling RSS and speed every `every` seconds of music."""
    bundle = load_bundle(checkpoint)
    settings = Settings(seconds=seconds)
    request = settings.request(bundle.composers, bundle.config.windows, max_tokens=tokens_for_seconds(seconds),
                               runtime=runtime)
    session = Session(bundle, Prompt.empty(), request)
    rows, mark = [], every
    start = time.perf_counter()

    def row() -> dict:
        progress, now = session.snapshot(tail=0), time.perf_counter() - start
        tokens, before = progress.lengths[0], rows[-1] if rows else {"tokens": 0, "wall_s": 0.0}
        return {"music_s": round(progress.row_seconds[0], 1), "tokens": tokens, "rss_mib": round(rss_mib(), 1),
                "tok_per_s": round((tokens - before["tokens"]) / max(now - before["wall_s"], 1e-9), 1),
                "tok_per_s_all": round(tokens / now, 1), "wall_s": round(now, 1)}

    with tqdm(total=int(seconds), unit="s of music", disable=None) as bar:
        for step in session:
            if step % POLL_STEPS:
                continue
            music = session.snapshot(tail=0).row_seconds[0]
            bar.update(int(music) - bar.n)
            if music >= mark:
                rows.append(row())
                tqdm.write(str(rows[-1]), file=sys.stderr)
                mark += every
    rows.append(row())
    return rows, session


def render_peaks(score: symusic.Score, out: Path) -> dict:
    """Seconds and peak RSS above the starting RSS of the streamed WAV render and of the float path."""
    note = symusic.Score(480)
    note.tracks.append(symusic.Track(program=0))
    note.tracks[0].notes.append(symusic.Note(0, 240, 60, 90))
    t0 = time.perf_counter()
    render_audio(note)  # loads the soundfont that both renders below share
    result: dict = {"one_note_render_s": round(time.perf_counter() - t0, 2), "peak_reset": reset_peak()}
    base = rss_mib()
    t0 = time.perf_counter()
    render_wav(score, out / "piece.wav")
    result.update(render_wav_s=round(time.perf_counter() - t0, 1), render_wav_peak_mib=round(peak_mib() - base, 1),
                  wav_mib=round((out / "piece.wav").stat().st_size / 2**20, 1))
    reset_peak()
    base = rss_mib()
    t0 = time.perf_counter()
    samples, rate = render_audio(score)
    data = wav_bytes(samples, rate)
    result.update(float_path_s=round(time.perf_counter() - t0, 1),
                  float_path_peak_mib=round(peak_mib() - base, 1))
    del samples, data
    return result


def app_stream(checkpoint: Path, seconds: float, every: float) -> tuple[list[dict], dict]:
    """The app's own stream (studio.stream: live text and rolls, then MIDI, audio, figures) of one
    long piece: RSS and the live payload every `every` seconds of music, and the peak while rendering."""
    import studio

    bundle = load_bundle(checkpoint)
    request = studio.app_request(bundle, Settings(seconds=seconds), random_seed=False)
    registry, rows, mark, roll_kib = studio.Registry(), [], every, 0.0
    start, peak_before_end, runtime = time.perf_counter(), 0.0, ""
    for frame in studio.stream(bundle, Prompt.empty(), request, "long", registry=registry, key="bench"):
        runtime = frame.take.stats["runtime"] if frame.take else runtime
        if frame.rolls:
            roll_kib = sum(r.nbytes for r in frame.rolls) / 1024
        job = registry.get("bench")
        if frame.take is None and job is not None:
            progress = job.snapshot(tail=0)
            if progress.row_seconds[0] >= mark:
                rows.append({"music_s": round(progress.row_seconds[0], 1), "tokens": progress.lengths[0],
                             "rss_mib": round(rss_mib(), 1), "text_chars": sum(map(len, frame.texts)),
                             "roll_kib": round(roll_kib, 1), "wall_s": round(time.perf_counter() - start, 1)})
                tqdm.write(str(rows[-1]), file=sys.stderr)
                mark += every
        elif frame.take is None:  # the last text frame: sampling is over, rendering starts now
            peak_before_end = rss_mib()
            reset_peak()
    return rows, {"app_runtime": runtime, "app_render_peak_mib": round(peak_mib() - peak_before_end, 1),
                  "app_rss_after_mib": round(rss_mib(), 1), "app_wall_s": round(time.perf_counter() - start, 1)}


def figure(rows: list[dict], path: Path, title: str) -> None:
    """RSS and tokens/s against minutes of music."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    minutes = [r["music_s"] / 60 for r in rows]
    left.plot(minutes, [r["rss_mib"] for r in rows], marker="o")
    left.set(xlabel="minutes of music", ylabel="RSS (MiB)", ylim=(0, max(r["rss_mib"] for r in rows) * 1.2))
    right.plot(minutes, [r["tok_per_s"] for r in rows], marker="o", color="tab:orange")
    right.set(xlabel="minutes of music", ylabel="tokens/s (last stretch)", ylim=(0, None))
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("assets/checkpoints/default"))
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds of music between rows")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-audio", action="store_true", help="skip the renders")
    parser.add_argument("--figure", type=Path, default=None, help="also draw RSS and tokens/s into this PNG")
    parser.add_argument("--app-seconds", type=float, default=0.0,
                        help="also stream a piece this long through the app's backend (studio.stream, at most 300)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, session = generate_long(args.checkpoint, args.seconds, args.every, args.runtime)
    first = next((r for r in rows if r["music_s"] >= 60), rows[0])
    stats = session.stats
    summary = {"checkpoint": str(args.checkpoint), "runtime": stats["runtime"], "runtime_note": session.runtime.note,
               "threads": args.threads,
               "music_seconds": stats["music_seconds"], "tokens": stats["tokens"],
               "seconds_elapsed": stats["seconds_elapsed"], "realtime_factor": stats["realtime_factor"],
               "rss_growth_mib": round(rows[-1]["rss_mib"] - first["rss_mib"], 1),
               "verdict": f"RSS {first['rss_mib']:.0f} MiB at {first['music_s']:.0f} s of music -> "
                          f"{rows[-1]['rss_mib']:.0f} MiB at {rows[-1]['music_s']:.0f} s "
                          f"({rows[-1]['rss_mib'] - first['rss_mib']:+.1f} MiB)"}
    with tempfile.TemporaryDirectory() as tmp:
        score = session.score(0)
        (Path(tmp) / "piece.mid").write_bytes(midi_bytes(score))
        if not args.no_audio:
            summary.update(render_peaks(score, Path(tmp)))
    if args.figure:
        figure(rows, args.figure, f"{args.checkpoint.name}, batch 1, {stats['runtime']}, {args.threads} thread(s)")
        summary["figure"] = str(args.figure)
    if args.app_seconds:
        app_rows, app_summary = app_stream(args.checkpoint, args.app_seconds, args.every)
        emit(f"the app's stream of a {args.app_seconds:.0f} s piece", app_rows, app_summary, as_json=False)
        summary.update(app_summary, app_rows=app_rows)
    emit(f"a {args.seconds:.0f} s piece, batch 1 ({args.checkpoint.name})", rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
