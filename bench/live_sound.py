"""Hear it as it is written: from the Generate click to the first note's sound in the page, against
the WAV's arrival, in headless Chromium on the real app (studio.appserver; Chromium allowed to
play without a gesture).

    python bench/live_sound.py [--checkpoint assets/checkpoints/flagship] [--seconds 20] [--runs 3] [--json]

Each run is a fresh page (the synth loaded, a shipped prompt picked, its first 8 s kept); times are
the page's own clock (performance.now) from the click: to the first notes' arrival (the hidden
#live-notes text), to the first noteOn's sound as the synth reports it (`onEvent` perf), and to the
first variation's WAV link. Also the notes that sounded before the WAV, the pauses a late note made
the page's playback take (live.js: a stutter) and the analyser's peak.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import statistics
import tempfile

from comagen.report import emit
from studio.appserver import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from app_support import (  # noqa: E402 - the tests' chromium, flags and page steps
    ARGS,
    CHROMIUM,
    GENERATION_TIMEOUT_MS,
    pick_gallery_prompt,
    set_number,
)

WATCH = """() => {
  const w = window.__live = { click: null, first: null, wav: null, before: 0, notes: null };
  window.comagenSynth.onEvent((e) => {
    if (e.type !== "noteOn" || w.click === null) return;
    if (w.first === null) w.first = e.perf;
    if (w.wav === null) w.before += 1;
  });
  document.querySelector("#generate").addEventListener("click", () => { w.click = performance.now(); }, true);
  const look = setInterval(() => {
    const box = document.querySelector("#live-notes textarea");
    const arrived = box && box.value.split("\\n").length > 2;
    if (w.click !== null && w.notes === null && arrived) w.notes = performance.now();
    if (w.click !== null && document.querySelector("#wav-0 a[href*='.wav']")) {
      w.wav = performance.now(); clearInterval(look);
    }
  }, 10);
}"""


def one_run(browser, url: str, seconds: float) -> dict:  # noqa: ANN001 - playwright
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.goto(url)
        page.wait_for_selector("#generate", timeout=60_000)
        if not page.evaluate("() => window.comagenSynth.ready"):
            raise SystemExit(f"live sound unavailable: {page.evaluate('() => window.comagenSynth.message')}")
        pick_gallery_prompt(page, keep_seconds=8)
        set_number(page, "length (seconds of new music)", seconds)
        page.evaluate(WATCH)
        page.evaluate("() => window.comagenSynth.resetStats()")
        page.click("#generate")
        page.wait_for_function("() => window.__live.wav !== null", timeout=GENERATION_TIMEOUT_MS)
        w = page.evaluate("() => window.__live")
        level = page.evaluate("() => window.comagenSynth.stats().level")
        live = page.evaluate("() => window.comagenLive")
    finally:
        page.close()
    first = None if w["first"] is None else round((w["first"] - w["click"]) / 1000, 2)
    return {"notes_arrive_s": None if w["notes"] is None else round((w["notes"] - w["click"]) / 1000, 2),
            "first_sound_s": first, "wav_s": round((w["wav"] - w["click"]) / 1000, 2),
            "notes_before_wav": w["before"], "pauses": live["pauses"], "paused_s": round(live["paused_s"], 3),
            "peak_level": round(level, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "flagship")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of new music asked for")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="comagen-live-sound-") as tmp, \
            serve(args.checkpoint.resolve(), Path(tmp) / "app.log") as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            rows = [{"run": i, **one_run(browser, server.url, args.seconds)} for i in range(args.runs)]
        finally:
            browser.close()
    firsts = [r["first_sound_s"] for r in rows if r["first_sound_s"] is not None]
    emit(f"live sound: Generate to first note vs to the WAV, {args.seconds:.0f} s of music, "
         f"{args.checkpoint.name}", rows,
         {"median_first_sound_s": statistics.median(firsts) if firsts else None,
          "median_wav_s": statistics.median(r["wav_s"] for r in rows)}, as_json=args.json)


if __name__ == "__main__":
    main()
