"""Audio previews before and after the shared soundfont and the compressed player file.

    python bench/audio.py [--seconds 20 300] [--data ../shared/data/maestro] [--json]

A real MAESTRO performance (the shortest validation piece long enough, cut to each length) is
rendered by two variants, each in a fresh subprocess so that its peak RSS is its own (the kernel's
high-water mark VmHWM of that process's memory; its ru_maxrss would not do: Linux carries ru_maxrss
across exec, so a child started from this torch-laden parent would report the parent's ~240 MiB):

- before: `comagen/render/audio.py` as of BEFORE (loaded from `git show`): a new FluidSynth synth
  per render, loading the whole soundfont, and the WAV that the page's player got;
- after: the library now: the soundfont loaded once and lent to a fresh synth per render, writing
  the WAV download and the player's compressed file (`PLAYER_SUFFIX`) from one synthesis.

Each subprocess renders the take twice in a row (reuse pays from the second), then twice at once
from two threads (the app renders from worker threads): render seconds, peak RSS after the two
sequential renders and after the overlapping pair, and the player file's size against the WAV's.
Then the formats that were candidates for the player: the longest take's 16-bit frames encoded as
FLAC, Ogg Vorbis and MP3 by libsndfile (soundfile), in the blocks the library writes: size, seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import importlib.util
import json
import subprocess
import tempfile
import threading
import time
from types import ModuleType

import symusic

from comagen.report import add_data_options, emit

# The library's audio module (and soundfile), and the MAESTRO index (which brings torch), are imported
# where used: a `before` subprocess must hold only what the old code needed, or its peak RSS is not its own.

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "10098c73aab3206126179580efbce6fefc026e88"  # the last commit with a synth (and soundfont load) per render
SKIP_SECONDS = 10.0  # the take starts this far into the piece
FORMATS = (".flac", ".ogg", ".mp3")


def piece(data: Path, seconds: float) -> Path:
    """The shortest validation piece (never holdout) that holds a `seconds` take after SKIP_SECONDS."""
    from comagen.training.data import load_index, select_split

    pieces = [p for p in select_split(load_index(data), "validation") if p.duration > seconds + 2 * SKIP_SECONDS]
    return min(pieces, key=lambda p: p.duration).path


def take(midi: Path, seconds: float) -> symusic.Score:
    """`seconds` of the performance, from SKIP_SECONDS in, moved to start at 0."""
    score = symusic.Score(midi).to("second")
    start = score.start() + SKIP_SECONDS
    return score.clip(start, start + seconds, clip_end=True).shift_time(-start)


def before_module(folder: Path) -> ModuleType:
    """The audio module of BEFORE, imported from a temporary file."""
    path = folder / "audio_before.py"
    path.write_text(subprocess.run(["git", "show", f"{BEFORE}:comagen/render/audio.py"], cwd=ROOT, check=True,
                                   capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location("audio_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_mib() -> float:
    """This process's peak resident set so far (VmHWM, KiB in /proc/self/status)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child(variant: str, midi: Path, seconds: float, out: Path) -> dict:
    """One variant's renders in this (fresh) process."""
    if variant == "before":
        render_wav = before_module(out).render_wav

        def render(stem: str) -> list[Path]:
            return [render_wav(score, out / f"{stem}.wav")]
    else:
        from comagen.render.audio import PLAYER_SUFFIX, render_files

        def render(stem: str) -> list[Path]:
            return render_files(score, [out / f"{stem}.wav", out / f"{stem}{PLAYER_SUFFIX}"])
    score = take(midi, seconds)
    result = {"variant": variant, "take_s": seconds, "base_mib": round(peak_mib(), 1)}
    for name in ("first_s", "second_s"):
        start = time.perf_counter()
        files = render(name)
        result[name] = round(time.perf_counter() - start, 2)
    result["peak_mib"] = round(peak_mib(), 1)
    threads = [threading.Thread(target=render, args=(f"thread{i}",)) for i in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.update(two_threads_s=round(time.perf_counter() - start, 2), peak_two_mib=round(peak_mib(), 1),
                  wav_mb=round(files[0].stat().st_size / 1e6, 2), player=files[-1].suffix,
                  player_mb=round(files[-1].stat().st_size / 1e6, 2))
    return result


def run_child(variant: str, midi: Path, seconds: float, out: Path) -> dict:
    """`child` in a fresh interpreter; its one JSON line back."""
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--midi", str(midi), "--take", str(seconds),
                           "--out", str(out)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def formats(wav: Path) -> list[dict]:
    """The player candidates: size and encode seconds of the same 16-bit frames."""
    import soundfile

    from comagen.render.audio import BLOCK_FRAMES

    frames, rate = soundfile.read(wav, dtype="int16")
    rows = []
    for suffix in FORMATS:
        path = wav.with_name(f"format{suffix}")
        start = time.perf_counter()
        with soundfile.SoundFile(path, "w", rate, 2) as sound:
            for first in range(0, len(frames), BLOCK_FRAMES):
                sound.write(frames[first:first + BLOCK_FRAMES])
        rows.append({"format": suffix, "encode_s": round(time.perf_counter() - start, 2),
                     "mb": round(path.stat().st_size / 1e6, 2),
                     "x_smaller": round(wav.stat().st_size / path.stat().st_size, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[20.0, 300.0], help="take lengths")
    add_data_options(parser, ROOT)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["before", "after"], help=argparse.SUPPRESS)
    parser.add_argument("--midi", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--take", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.midi, args.take, args.out)))
        return
    from comagen.render.audio import PLAYER_SUFFIX

    rows, summary = [], {"before": BEFORE[:10], "player": PLAYER_SUFFIX}
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            midi = piece(args.data, seconds)
            summary[f"piece_{seconds:.0f}s"] = str(midi.relative_to(args.data))
            for variant in ("before", "after"):
                out = Path(tmp) / f"{variant}{seconds:.0f}"
                out.mkdir()
                rows.append(run_child(variant, midi, seconds, out))
        summary["formats"] = formats(out / "first_s.wav")
    emit("audio previews: per-render synth + WAV player (before) vs shared soundfont + "
         f"{PLAYER_SUFFIX} player (after)", rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
