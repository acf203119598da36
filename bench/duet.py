"""The duet, measured: takeover latency and whether answers keep time, in a real Chromium against a
real app; and whether a duet's answers are as musical as a plain continuation of the same phrases.

    python bench/duet.py [--checkpoint assets/checkpoints/flagship] [--turns 20] [--phrases 16] [--json]

Latency: real MAESTRO validation phrases (2 bars each) are played into the Play tab through the
page's own MIDI message handler, as a MIDI keyboard delivers them, in real time; the turn passes
after the pause (1 s), and the latency is from that moment (last key released + pause) to the first
answer note's sound in the page (the synth's output time). Answers are 8 bars; the player cuts in
1.5 s into most of them and lets the last few play out, whose notes show whether the stream stays
ahead of playback (lead = a note's time in the piece minus when it reached the page; the first
note of each answer is due at once by design and is the latency instead).
Quality: the same model answers 4-bar phrases through the duet engine (the phrase fed note by note)
and continues them as a plain generation, 4 bars each; the continuation benchmark's key, density
and pooled overlap of each against its phrase.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import symusic  # noqa: E402

from comagen.bundle.checkpoint import load_bundle  # noqa: E402
from comagen.generation.duet import Duet  # noqa: E402
from comagen.generation.player import TimedNote  # noqa: E402
from comagen.generation.prompt import load_prompt  # noqa: E402
from comagen.generation.session import generate  # noqa: E402
from comagen.generation.settings import bundle_settings  # noqa: E402
from comagen.music.midi import SECONDS_PER_BAR, load_score, midi_bytes  # noqa: E402
from comagen.report import emit  # noqa: E402
from comagen.training.continuation import Notes, compare  # noqa: E402
from comagen.training.data import load_index, select_split  # noqa: E402
from studio.appserver import serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
PAUSE, ANSWER_BARS, CUT_AFTER_S, PLAYED_OUT = 1.0, 8, 1.5, 3
PLAY_PHRASE_JS = """async (events) => {
  const t0 = performance.now();
  for (const [t, status, a, b] of events) {
    const wait = t0 + t * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    comagenPlay.midiMessage([status, a, b], performance.now());
  }
}"""


def phrases(data: Path, count: int, bars: int, skip: float = 10.0) -> list[list[TimedNote]]:
    """`count` phrases of `bars` bars from different validation pieces (from `skip` s in), times from 0."""
    out = []
    for piece in select_split(load_index(data), "validation"):
        notes = load_score(piece.path).to("second").tracks[0].notes
        start, end = skip, skip + bars * SECONDS_PER_BAR
        chosen = [TimedNote(n.time - start, min(n.time + n.duration, end) - start, n.pitch, n.velocity)
                  for n in notes if start <= n.time < end]
        if len(chosen) >= 4 * bars:
            out.append(sorted(chosen, key=lambda n: (n.start, n.pitch)))
        if len(out) == count:
            break
    return out


def midi_events(phrase: list[TimedNote]) -> list[list[float]]:
    events = [[n.start, 0x90, n.pitch, n.velocity] for n in phrase] + [[n.end, 0x80, n.pitch, 0] for n in phrase]
    return sorted(events, key=lambda e: (e[0], e[1] == 0x90))


def browser_turns(url: str, checkpoint: str, played: list[list[TimedNote]]) -> tuple[list[dict], list[float]]:
    """Per turn: its latency (ms); and the leads (ms) of the notes of the answers played out."""
    from playwright.sync_api import sync_playwright

    rows, leads = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#generate")
        page.evaluate("window.comagenSynth && window.comagenSynth.ready")
        page.evaluate(f"comagenPlay.start({{checkpoint: {checkpoint!r}, pause: {PAUSE}, answer_bars: {ANSWER_BARS}}})")
        page.wait_for_function("comagenPlay.state.log.some((e) => e.type === 'ready')", timeout=120_000)
        for i, phrase in enumerate(played):
            page.evaluate(PLAY_PHRASE_JS, midi_events(phrase))
            page.wait_for_function(f"comagenPlay.state.turns.length > {i} && "
                                   f"comagenPlay.state.turns[{i}].firstSound !== undefined", timeout=60_000)
            turn = page.evaluate(f"comagenPlay.state.turns[{i}]")
            rows.append({"turn": i + 1, "notes_played": len(phrase),
                         "latency_ms": turn["firstSound"] - 1000 * (turn["lastRelease"] + turn["pause"])})
            if i >= len(played) - PLAYED_OUT:
                page.wait_for_function("comagenPlay.state.turn === 'player' && !comagenPlay.state.queue.length",
                                       timeout=120_000)
                leads += answer_leads(page.evaluate("comagenPlay.state.log"), i)
            else:
                time.sleep(CUT_AFTER_S)
        browser.close()
    return rows, leads


def answer_leads(log: list[dict], turn: int) -> list[float]:
    """Leads (ms) of answer `turn`'s notes after its first: time in the piece minus arrival."""
    starts = [k for k, e in enumerate(log) if e.get("type") == "turn" and e.get("who") == "model"]
    begin = starts[turn]
    end = starts[turn + 1] if turn + 1 < len(starts) else len(log)
    notes = [e for e in log[begin:end] if e.get("type") == "note"]
    return [1000 * n["start"] - n["received"] for n in notes[1:]]


def quality(bundle_path: Path, data: Path, count: int) -> list[dict]:
    """Key, density and pooled overlap of duet answers and plain continuations of the same 4-bar phrases."""
    bundle = load_bundle(bundle_path)
    settings = bundle_settings(bundle)
    seconds = 4 * SECONDS_PER_BAR
    sides: dict[str, list[dict]] = {"duet answer": [], "plain continuation": []}
    for k, phrase in enumerate(phrases(data, count, 4)):
        duet = Duet(bundle, replace(settings, seed=k))
        duet.play(phrase)
        answer = list(duet.answer(seconds + PAUSE, seconds))
        sides["duet answer"].append(compare(notes_of(phrase, 0.0, seconds),
                                            notes_of(answer, answer[0].start if answer else 0.0, seconds)))
        sides["plain continuation"].append(compare(notes_of(phrase, 0.0, seconds),
                                                   plain(bundle, replace(settings, seed=k, seconds=seconds), phrase)))
    return [{"side": side, **{s: statistics.fmean(r[s] for r in got) for s in ("key", "density", "overlap")},
             "phrases": len(got)} for side, got in sides.items()]


def notes_of(notes: list[TimedNote], origin: float, seconds: float) -> Notes:
    columns = ([n.start - origin for n in notes], [n.end - n.start for n in notes], [n.pitch for n in notes],
               [n.velocity for n in notes])
    return Notes(*(np.array(c, float) for c in columns), seconds)


def plain(bundle, settings, phrase: list[TimedNote]) -> Notes:  # noqa: ANN001
    """A plain generation continuing `phrase` for `settings.seconds`, as Notes from where it starts."""
    score = symusic.Score(ttype="second")
    track = symusic.Track(program=0, ttype="second")
    for n in phrase:
        track.notes.append(symusic.Note(n.start, n.end - n.start, n.pitch, n.velocity, ttype="second"))
    score.tracks.append(track)
    prompt = load_prompt(bundle.tokenizer, midi_bytes(score.to("tick", min_dur=1)))
    session = generate(bundle, prompt, settings.request(bundle.composers, bundle.config.windows, max_tokens=4096))
    return Notes.from_score(session.score(0), prompt.seconds, settings.seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "flagship")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "maestro")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--phrases", type=int, default=16, help="4-bar phrases for the quality comparison")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    played = phrases(args.data, args.turns, 2)
    with tempfile.TemporaryDirectory() as tmp, serve(args.checkpoint, Path(tmp) / "app.log") as server:
        rows, leads = browser_turns(server.url, args.checkpoint.name, played)
    latencies = sorted(r["latency_ms"] for r in rows)
    summary = {"checkpoint": args.checkpoint.name, "turns": len(rows),
               "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1),
               "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1),
               "latency_max_ms": round(latencies[-1], 1),
               "answers_played_out": PLAYED_OUT, "answer_bars": ANSWER_BARS,
               "worst_lead_ms": round(min(leads), 1) if leads else None, "late_notes": sum(x < 0 for x in leads),
               "quality": quality(args.checkpoint, args.data, args.phrases)}
    emit("duet: takeover latency in Chromium (ms)", rows, summary, as_json=args.json)


if __name__ == "__main__":
    main()
