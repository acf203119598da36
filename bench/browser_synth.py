"""Which SoundFont2 synth the page plays live sound with: js-synthesizer (FluidSynth compiled to
WebAssembly) against spessasynth_lib (a JavaScript synth), both in headless Chromium.

    python bench/browser_synth.py [--runs 3] [--seconds 8] [--json]

The page is the app's own live-sound layer (studio/web.py routes and head, studio/browser/static/
synth.js) on a bare local server, one page per engine and run, each in a fresh browser (no cache),
the engines taking turns. Per engine: the bytes the page loads (library files and the soundfont, which both share),
start-up (navigation to the first note's sound on the page's analyser, median of the runs), and how
close it sounds to the server: the first `--seconds` of a shipped prompt, scheduled through
`comagenSynth.noteOn/noteOff/pedal` on the audio clock, recorded off the synth's output and
compared with comagen's FluidSynth render of the same notes, with the page's soundfont (TimGM6mb)
and with the app's own (what the WAV download uses): Pearson correlation of log-mel spectrograms
and of RMS envelopes (dB), after the best alignment within +-0.25 s (the offset is reported).
Needs `npm ci` in studio/browser with dev dependencies (scripts/setup.sh --dev).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import base64
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlparse

import numpy as np
import symusic
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from comagen.render.audio import SUSTAIN_CC, render_audio
from comagen.render.soundfont import find_soundfont, pretty_midi_soundfont
from comagen.report import emit
from studio.web import ENGINES, head_html, web_routes

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "assets" / "prompts" / "beethoven_fur_elise.mid"
sys.path.insert(0, str(ROOT / "tests"))
from app_support import ARGS, CHROMIUM  # noqa: E402 - the tests' chromium and its flags

RATE = 44100  # headless Chromium's AudioContext rate here; the server renders at the same
LIBRARY = {"fluid": "js-synthesizer 1.13.0", "spessa": "spessasynth_lib 4.3.14"}
MAX_LAG_S = 0.4
FLOOR_DB = 60  # log-mel cells more than this under the peak count as silence (FluidSynth dithers 16-bit output)
# Before the page's scripts: hand the bench the analyser that synth.js puts after the synth.
TAP = """
const made = AudioContext.prototype.createAnalyser;
AudioContext.prototype.createAnalyser = function () {
  const node = made.call(this);
  window.__tap = { ctx: this, node };
  return node;
};
"""
# A recorder on the audio thread (no sample lost under load): every render quantum after the
# analyser, mixed to mono, with its frame on the audio clock.
RECORDER = """class Rec extends AudioWorkletProcessor {
  process(inputs) { const x = inputs[0][0]; if (x) this.port.postMessage([currentFrame, x.slice()]); return true; }
}
registerProcessor("rec", Rec);"""
FIRST_SOUND = """async () => {
  const s = window.comagenSynth;
  if (!(await s.ready)) return { error: s.message };
  const ready = performance.now();
  s.noteOn(60, 100);
  while (s.stats().level <= 0) await new Promise((r) => setTimeout(r, 5));
  return { ready_ms: ready, sound_ms: performance.now() };
}"""
PLAY = """async ([events, recorder]) => {
  const s = window.comagenSynth, { ctx, node } = window.__tap;
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([recorder], { type: "text/javascript" })));
  const rec = new AudioWorkletNode(ctx, "rec", { channelCount: 1, channelCountMode: "explicit" });
  const chunks = [];
  rec.port.onmessage = (e) => chunks.push(e.data);
  node.connect(rec);
  rec.connect(ctx.destination);
  const base = s.now() + 0.5;
  for (const [t, kind, pitch, vel] of events) {
    if (kind === "on") s.noteOn(pitch, vel, base + t);
    else if (kind === "off") s.noteOff(pitch, base + t);
    else s.pedal(vel >= 64, base + t);
  }
  const end = base + events[events.length - 1][0] + 1.5;
  while (s.now() < end + 0.2) await new Promise((r) => setTimeout(r, 50));
  rec.disconnect();
  const first = Math.round(base * ctx.sampleRate), kept = chunks.filter(([f]) => f >= first);
  const all = new Float32Array(kept.reduce((a, [, c]) => a + c.length, 0));
  let at = 0; for (const [, c] of kept) { all.set(c, at); at += c.length; }
  const bytes = new Uint8Array(all.buffer); let bin = "";
  for (let i = 0; i < bytes.length; i += 8192) bin += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return { rate: ctx.sampleRate, offset_s: kept[0][0] / ctx.sampleRate - base, samples: btoa(bin) };
}"""


class Served:
    """ASGI wrapper counting the body bytes served per path (worklet fetches never reach the page's events)."""

    def __init__(self, app: Starlette) -> None:
        self.app, self.bytes = app, {}

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        async def counted(message: dict) -> None:
            if message["type"] == "http.response.body":
                self.bytes[scope["path"]] = self.bytes.get(scope["path"], 0) + len(message.get("body", b""))
            await send(message)
        await self.app(scope, receive, counted if scope["type"] == "http" else send)


@contextmanager
def page_server(engine: str) -> Iterator[tuple[str, Served]]:
    """The live-sound routes and a bare page whose head is the app's, for `engine`, on a free port."""
    page = HTMLResponse(f"<!doctype html><html><head>{head_html(engine)}</head><body>bench</body></html>")
    app = Served(Starlette(routes=[Route("/", lambda _r: page), *web_routes()]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        server.should_exit = True
        thread.join(10)


def excerpt(seconds: float) -> tuple[symusic.Score, list[list]]:
    """The prompt's first `seconds` as a score (for the server) and as timed events (for the page)."""
    score = symusic.Score(str(PROMPT)).to("second").clip(0, seconds, clip_end=True)
    events = []
    for track in score.tracks:
        for n in track.notes:
            events += [[n.time, "on", n.pitch, n.velocity], [n.time + n.duration, "off", n.pitch, 0]]
        events += [[c.time, "pedal", 0, c.value] for c in track.controls if c.number == SUSTAIN_CC]
    return score, sorted(events, key=lambda e: (e[0], e[1] != "off"))


def run_page(pw, url: str, events: list[list] | None) -> dict:  # noqa: ANN001 - playwright
    """One fresh browser on the page: the hosts it asked, start-up, and (with `events`) a recording."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_context().new_page()
        page.add_init_script(TAP)
        hosts: set[str] = set()
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname or "") if r.url.startswith("http") else None)
        page.goto(url)
        out = page.evaluate(FIRST_SOUND)
        if "error" in out:
            raise SystemExit(f"{url}: live sound unavailable: {out['error']}")
        if events:
            out["recording"] = page.evaluate(PLAY, [events, RECORDER])
        return {**out, "hosts": hosts}
    finally:
        browser.close()


def log_mel(x: np.ndarray, rate: int, bands: int = 64, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Log-mel spectrogram (dB, floored FLOOR_DB under its peak), frames x bands."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(30), mel(min(8000, rate / 2)), bands + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    db = 10 * np.log10(power @ bank.T + 1e-12)
    return np.maximum(db, db.max() - FLOOR_DB)


def rms_db(x: np.ndarray, rate: int, frame_s: float = 0.02) -> np.ndarray:
    n = int(rate * frame_s)
    r = 20 * np.log10(np.sqrt((x[: len(x) // n * n].reshape(-1, n) ** 2).mean(1)) + 1e-9)
    return np.maximum(r, r.max() - 60)


def closeness(page: np.ndarray, server: np.ndarray, rate: int) -> dict:
    """Correlations of log-mel and RMS envelope at the best lag of the page's recording (|lag| <= 0.4 s),
    and how late the page sounded (the lag, to a hop of 11.6 ms)."""
    hop = 512
    ref = rms_db(server, rate, hop / rate)
    got = rms_db(page, rate, hop / rate)
    best = max(range(-int(MAX_LAG_S * rate / hop), int(MAX_LAG_S * rate / hop) + 1),
               key=lambda k: _corr(ref, got[max(k, 0):]) if k >= 0 else _corr(ref[-k:], got))
    shifted = page[best * hop:] if best >= 0 else np.concatenate([np.zeros(-best * hop, np.float32), page])
    n = min(len(shifted), len(server))
    return {"logmel_r": round(_corr(log_mel(shifted[:n], rate), log_mel(server[:n], rate)), 3),
            "rms_r": round(_corr(rms_db(shifted[:n], rate), rms_db(server[:n], rate)), 3),
            "late_ms": round(best * hop / rate * 1000, 1)}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n].ravel(), b[:n].ravel())[0, 1])


def measure(runs: int, events: list[list]) -> dict[str, tuple[list[dict], dict[str, float]]]:
    """Each engine's pages and the bytes its server sent per page; the engines take turns (the order
    reversed every run) so that load on the machine hits both alike. The first run of each records."""
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack, sync_playwright() as pw:
        servers = {e: stack.enter_context(page_server(e)) for e in ENGINES}
        results: dict[str, list[dict]] = {e: [] for e in ENGINES}
        for i in range(runs):
            for engine in ENGINES if i % 2 == 0 else ENGINES[::-1]:
                results[engine].append(run_page(pw, servers[engine][0], events if i == 0 else None))
    return {e: (results[e], {p: n / runs for p, n in servers[e][1].bytes.items()}) for e in ENGINES}


def engine_row(engine: str, results: list[dict], sizes: dict[str, float], renders: dict[str, np.ndarray]) -> dict:
    """Page weight, median start-up, and the first run's recording against each server render."""
    rec = results[0]["recording"]
    if rec["rate"] != RATE:
        raise SystemExit(f"the page runs at {rec['rate']} Hz, the server renders at {RATE}")
    page = np.frombuffer(base64.b64decode(rec["samples"]), np.float32)
    page = page[max(int(-rec["offset_s"] * rec["rate"]), 0):]  # time 0: when the excerpt starts
    row = {"engine": engine, "library": LIBRARY[engine],
           "library_kb": round(sum(v for u, v in sizes.items() if "/lib/" in u or "/static/" in u) / 1024),
           "soundfont_kb": round(sum(v for u, v in sizes.items() if u.endswith(".sf2")) / 1024),
           "startup_ms": round(statistics.median(r["sound_ms"] for r in results)),
           "ready_ms": round(statistics.median(r["ready_ms"] for r in results)),
           "other_hosts": len({h for r in results for h in r["hosts"]} - {"127.0.0.1"})}
    for name, server in renders.items():
        close = closeness(page, server, rec["rate"])
        row.update({f"{k}_{name}": v for k, v in close.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh pages per engine (start-up is their median)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the excerpt compared")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    score, events = excerpt(args.seconds)
    small, app_sf = pretty_midi_soundfont(), find_soundfont()
    renders = {"same_sf2": render_audio(score, RATE, small)[0].mean(1),
               "app_wav": render_audio(score, RATE, app_sf)[0].mean(1)}
    rows = [engine_row(e, results, sizes, renders) for e, (results, sizes) in measure(args.runs, events).items()]
    emit(f"browser synths: page weight, start-up to first sound (median of {args.runs}), closeness to "
         f"FluidSynth over {args.seconds:.0f} s", rows,
         {"page_soundfont": f"{small.name} ({small.stat().st_size / 2**20:.1f} MiB)",
          "app_soundfont": f"{app_sf.name} ({app_sf.stat().st_size / 2**20:.1f} MiB)",
          "excerpt": PROMPT.name}, as_json=args.json)


if __name__ == "__main__":
    main()
