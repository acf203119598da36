"""The app under load and hostile input, end to end: a real `python app.py` on a loopback port,
several clients at once through gradio_client, one that leaves mid-stream, and uploads of every
bad kind. Every good client must get a complete MIDI that parses with notes, every bad upload one
clear line naming its file, the server must stay up, stop working for a client that left, keep
no temp file past COMAGEN_OUT_MAX_AGE, and give back the memory the load took.

    python bench/app_load.py [--checkpoint assets/checkpoints/default] [--clients 8] [--seconds 4]
                             [--max-age 30] [--json]

Prints one row per request and a summary (requests served, failures, p50/p95 latency, RSS of the
server process: at start, after one request, peak (VmHWM), right after the load, and at rest once
its files expired); `--json` ends with one JSON line.
tests/test_app_load.py runs the same `run_load` with fewer clients.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # the repo, not bench/, first on sys.path (bench/tokenize.py shadows the stdlib)
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import httpx
import symusic
from gradio_client import Client, handle_file
from PIL import Image

import studio
from comagen.report import emit
from studio.appserver import AppServer, serve

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = sorted(studio.PROMPTS_DIR.glob("*.mid"))
MIDI_OUT = 3 + 3 * studio.MAX_VARIATIONS  # index of the first variation's MIDI in /generate's outputs
REQUEST_TIMEOUT = 240.0  # one request, queue wait included, on a busy 2-core machine
IDLE_TIMEOUT = 60.0  # how long the server may keep working after a client left
IDLE_CPU = 0.3  # CPU seconds per second below which the server counts as idle
AGE_SLACK = 10.0  # seconds a file may overstay COMAGEN_OUT_MAX_AGE (the cleaner's wake-up on a busy CPU)
RSS_SLACK_MIB = 160  # how far above its size after one request the server may rest after the load
UNCLEAR = ("Traceback", "upstream Gradio app has raised an exception", "Error raised.")


# ------------------------------------------------------------------------------ hostile files


def _score(notes: list[tuple[int, int, int]], tpq: int = 480) -> symusic.Score:
    score = symusic.Score(tpq)
    track = symusic.Track("piano", 0, False)
    for time_, duration, pitch in notes:
        track.notes.append(symusic.Note(time_, duration, pitch, 80))
    score.tracks.append(track)
    return score


def sixteen_tracks() -> bytes:
    """16 tracks, one of them drums: valid, and played as one piano (drums dropped)."""
    score = symusic.Score(480)
    for k in range(16):
        track = symusic.Track(f"track {k}", (8 * k) % 128, k == 9)
        for i in range(8):
            track.notes.append(symusic.Note(i * 480, 480, 36 + 3 * k, 80))
        score.tracks.append(track)
    return score.dumps_midi()


def hour_note() -> bytes:
    """One note held for an hour (120 bpm: 2 beats a second): valid; its length is capped in tokens."""
    return _score([(0, 480 * 2 * 3600, 60)]).dumps_midi()


def dense() -> bytes:
    """20,000 notes inside one second: far more tokens than any prompt may hold."""
    return _score([(i * 960 // 20000, 10, 21 + i % 88) for i in range(20000)]).dumps_midi()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Hostile:
    """An upload and what the server must answer: a refusal containing `message`, or a result."""

    name: str
    data: Callable[[Path], bytes]  # given a real MIDI file to cut or pad
    message: str | None  # None: a valid file the server must serve
    names_file: bool = True  # the refusal starts with the file's name (gradio's own checks do not)


HOSTILE = [
    Hostile("empty.mid", lambda src: b"", "empty.mid: the file is empty"),
    Hostile("truncated.mid", lambda src: src.read_bytes()[: len(src.read_bytes()) // 2],
            "truncated.mid: the MIDI data is corrupt"),
    Hostile("image.mid", lambda src: png(), "image.mid: not a MIDI file"),
    Hostile("too_big.mid", lambda src: src.read_bytes() + bytes(studio.UPLOAD_MAX_BYTES + 300_000),
            "MB upload limit"),
    Hostile("dense.mid", lambda src: dense(), "token prompt limit"),
    Hostile("song.mp3", lambda src: src.read_bytes(), "Invalid file type", names_file=False),  # gradio refuses it
    Hostile("sixteen_tracks.mid", lambda src: sixteen_tracks(), None),
    Hostile("hour_note.mid", lambda src: hour_note(), None),
]


# ------------------------------------------------------------------------------ measuring


@dataclass
class Monitor:
    """Watches the age of the server's oldest temp file until stopped (peak RSS is VmHWM)."""

    server: AppServer
    interval: float = 0.25
    oldest_file_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="load-monitor")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.oldest_file_s = max(self.oldest_file_s, oldest_file_age(self.server.out_root))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def temp_files(root: Path) -> list[tuple[Path, float]]:
    """Every file under `root` (the app's own folder: libraries such as ONNX Runtime drop files of their
    own in the temp folder) and when it appeared (ctime, as the app's cleaner counts)."""
    out = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                out.append((path, path.lstat().st_ctime))
            except FileNotFoundError:
                continue
    return out


def oldest_file_age(root: Path) -> float:
    now = time.time()
    return max((now - ctime for _, ctime in temp_files(root)), default=0.0)


def wait_idle(server: AppServer, timeout: float = IDLE_TIMEOUT) -> float | None:
    """Seconds until the server uses under IDLE_CPU for a whole second; None if it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = server.cpu_seconds()
        time.sleep(1.0)
        if server.cpu_seconds() - before < IDLE_CPU:
            return time.monotonic() - start
    return None


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 8 values p95 is the slowest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))] if ordered else 0.0


# ------------------------------------------------------------------------------ requests


def _one_line_clear(message: str, fragment: str, name: str | None) -> str | None:
    """Why `message` is not a clear refusal (one line, saying why, starting with the file's `name`
    when given), or None when it is."""
    if not message or "\n" in message.strip() or any(u in message for u in UNCLEAR):
        return f"unclear message {message[:200]!r}"
    if (name and not message.startswith(f"{name}: ")) or fragment not in message:
        return f"message {message[:200]!r} does not start with {name!r} or lacks {fragment!r}"
    return None


def _check_midi(path: str | Path) -> tuple[int, str | None]:
    """Notes of a returned MIDI, and why it is not a usable result (None when it is)."""
    try:
        notes = symusic.Score.from_midi(Path(path).read_bytes()).note_num()
    except Exception as exc:  # a result that does not parse is exactly what this bench looks for
        return 0, f"returned MIDI does not parse: {exc}"
    return notes, None if notes > 0 else "returned MIDI has no notes"


def good_request(url: str, downloads: Path, prompt: Path, seconds: float, seed: int, label: str) -> dict:
    """One client asking for `seconds` of music after a shipped prompt; checks the MIDI it gets."""
    gallery = {item.path.name: name for name, item in studio.build_gallery().items() if item.path}
    row = {"request": label, "kind": "good", "expected": "result", "outcome": "", "notes": 0, "seconds": 0.0,
           "problem": ""}
    client = Client(url, verbose=False, download_files=str(downloads))
    start = time.perf_counter()
    try:
        job = client.submit(prompt=gallery[prompt.name], upload=None, keep_seconds=4, seconds=seconds, seed=seed,
                            random_seed=False, api_name="/generate")
        out = job.result(timeout=REQUEST_TIMEOUT)
    except FutureTimeout:
        row.update(outcome="timeout", problem=f"no answer within {REQUEST_TIMEOUT:.0f} s")
        return row
    except Exception as exc:  # any refusal of a good request is a failure to report
        row.update(outcome="error", problem=f"{type(exc).__name__}: {str(exc)[:200]}")
        return row
    finally:
        row["seconds"] = round(time.perf_counter() - start, 2)
        client.close()
    row["notes"], problem = _check_midi(out[MIDI_OUT])
    row["outcome"] = out[0]
    if out[0] != "Done.":
        problem = f"status {out[0]!r}, not 'Done.'"
    row["problem"] = problem or ""
    return row


def hostile_request(client: Client, upload: Path, bad: Hostile, seconds: float) -> dict:
    """One upload through gradio_client: refused with a clear line naming it, or served in full."""
    message = bad.message
    row = {"request": upload.name, "kind": "hostile", "expected": "refusal" if message else "result",
           "outcome": "", "notes": 0, "seconds": 0.0, "problem": ""}
    start = time.perf_counter()
    try:
        out = client.submit(prompt=studio.NOTHING, upload=handle_file(str(upload)), keep_seconds=4, seconds=seconds,
                            seed=1, random_seed=False, api_name="/generate").result(timeout=REQUEST_TIMEOUT)
    except FutureTimeout:
        row.update(outcome="timeout", problem=f"no answer within {REQUEST_TIMEOUT:.0f} s")
        return row
    except Exception as exc:  # the refusal we hope for arrives as an exception
        text = str(exc)
        row["outcome"] = text[:120]
        name = upload.name if bad.names_file else None
        row["problem"] = ("served nothing" if message is None else _one_line_clear(text, message, name)) or ""
        return row
    finally:
        row["seconds"] = round(time.perf_counter() - start, 2)
    row["outcome"] = out[0]
    row["notes"], problem = _check_midi(out[MIDI_OUT])
    row["problem"] = ("accepted a bad upload" if message else problem) or ""
    return row


def _raw_call(url: str, params: dict, *, leave_when_generating: bool = False,
              timeout: float = REQUEST_TIMEOUT) -> tuple[str, object]:
    """/generate over gradio's plain HTTP API: (last event, its data). With `leave_when_generating`,
    close the connection as soon as tokens stream (a client that leaves mid-stream)."""
    params = {"prompt": studio.NOTHING, "upload": None, "keep_seconds": 4, "seed": 1, "random_seed": False, **params}
    with httpx.Client(timeout=httpx.Timeout(timeout)) as http:
        answer = http.post(f"{url}/gradio_api/call/v2/generate", json=params)
        answer.raise_for_status()
        event_id = answer.json()["event_id"]
        event, deadline = "", time.monotonic() + timeout
        with http.stream("GET", f"{url}/gradio_api/call/generate/{event_id}") as stream:
            for line in stream.iter_lines():
                if time.monotonic() > deadline:
                    return "timeout", None
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("generating", "complete", "error"):
                    data = json.loads(line[5:])
                    if event != "generating":
                        return event, data
                    if leave_when_generating and str(data[0]).startswith("Generating"):
                        return "left", data
    return "closed", None


def leaving_client(server: AppServer) -> dict:
    """Ask for the longest piece, leave as soon as tokens stream; the server must go idle again."""
    row = {"request": "leaves mid-stream", "kind": "disconnect", "expected": "server idles", "outcome": "",
           "notes": 0, "seconds": 0.0, "problem": ""}
    start = time.perf_counter()
    event, _ = _raw_call(server.url, {"seconds": studio.MAX_SECONDS}, leave_when_generating=True)
    if event != "left":
        row.update(outcome=event, problem=f"never streamed tokens ({event})")
        return row
    idle = wait_idle(server)
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["outcome"] = f"idle after {idle:.1f} s" if idle is not None else "still busy"
    if idle is None:
        row["problem"] = f"server still busy {IDLE_TIMEOUT:.0f} s after its client left"
    return row


def path_attacks(server: AppServer, workdir: Path, seconds: float) -> list[dict]:
    """Uploads whose *names or paths* are hostile: a traversal file name must stay a plain name
    inside the upload folder; a FileData path outside the upload folder must never be read."""
    source = PROMPTS[-1]  # a short real piece
    rows = []
    secret = workdir / "outside" / "secret.mid"  # a valid MIDI: if the server read it, it would be served
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(source.read_bytes())
    for label, path in (("path outside uploads", str(secret)),
                        ("../ path out of uploads", f"{server.upload_root}/x/../../../../outside/secret.mid")):
        start = time.perf_counter()
        event, data = _raw_call(server.url, {"upload": {"path": path, "meta": {"_type": "gradio.FileData"}},
                                             "seconds": seconds})
        rows.append({"request": label, "kind": "hostile", "expected": "refusal", "outcome": f"{event}: {data}"[:120],
                     "notes": 0, "seconds": round(time.perf_counter() - start, 2),
                     "problem": "" if event == "error" else f"served a file outside the upload folder ({event})"})

    name = "../../../../../../../comagen-escape.mid"
    start = time.perf_counter()
    row = {"request": "upload named ../../x.mid", "kind": "hostile", "expected": "result", "outcome": "",
           "notes": 0, "seconds": 0.0, "problem": ""}
    with httpx.Client(timeout=httpx.Timeout(REQUEST_TIMEOUT)) as http:
        stored = http.post(f"{server.url}/gradio_api/upload", files=[("files", (name, source.read_bytes()))])
        stored.raise_for_status()
        stored_path = Path(stored.json()[0])
        event, data = _raw_call(server.url, {"upload": {"path": str(stored_path), "orig_name": name,
                                                        "meta": {"_type": "gradio.FileData"}}, "seconds": seconds})
        problems = []
        if server.upload_root.resolve() not in stored_path.resolve().parents:
            problems.append(f"stored outside the upload folder: {stored_path}")
        escaped = (server.upload_root / "x" / name).resolve()
        if escaped.exists():
            problems.append(f"wrote {escaped}")
            escaped.unlink()
        if event != "complete":
            problems.append(f"not served: {event} {str(data)[:100]}")
        else:
            midi = next((d for d in data if isinstance(d, dict) and str(d.get("path", "")).endswith(".mid")),
                        {"path": "", "url": ""})
            served = Path(midi["path"])
            if not midi["url"] or ".." in served.name or server.tmp.resolve() not in served.resolve().parents:
                problems.append(f"no result inside the temp folder: {midi['path']!r}")
            result = workdir / "escape-result.mid"
            result.write_bytes(http.get(midi["url"]).content)
            row["notes"], problem = _check_midi(result)
            problems += [problem] if problem else []
            row["outcome"] = f"{data[0]} as {Path(midi['path']).name}"
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["problem"] = "; ".join(problems)
    rows.append(row)
    return rows


# ------------------------------------------------------------------------------ the run


def run_load(checkpoint: Path, workdir: Path, *, clients: int = 8, seconds: float = 4.0, max_age: float = 30.0,
             source: Path | None = None) -> tuple[list[dict], dict]:
    """Serve the app, load it, attack it, and measure it; returns (rows, summary). Every request has
    a timeout, so a run ends in bounded time whatever the server does."""
    source = source or PROMPTS[-1]
    uploads = workdir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    downloads = workdir / "downloads"
    rows: list[dict] = []
    with serve(checkpoint, workdir / "app.log", tmp=workdir / "server-tmp",
               env={"COMAGEN_OUT_MAX_AGE": str(max_age)}) as server:
        rss_start = server.memory_kib()["VmRSS"]
        monitor = Monitor(server)
        started = time.perf_counter()
        try:
            rows.append(good_request(server.url, downloads, PROMPTS[0], seconds, 0, "warm-up"))
            rss_warm = server.memory_kib()["VmRSS"]
            rows[-1]["rss_mib"] = mib(rss_warm)
            with ThreadPoolExecutor(clients) as pool:
                futures = [pool.submit(good_request, server.url, downloads, PROMPTS[i % len(PROMPTS)], seconds,
                                       i + 1, f"client {i + 1}") for i in range(clients)]
                rows += [f.result() for f in futures]  # each bounded by REQUEST_TIMEOUT
            rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
            rows.append(leaving_client(server))
            attacker = Client(server.url, verbose=False, download_files=str(downloads))  # one user, many files
            try:
                for bad in HOSTILE:
                    upload = uploads / bad.name
                    upload.write_bytes(bad.data(source))
                    rows.append(hostile_request(attacker, upload, bad, seconds))
                    rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
            finally:
                attacker.close()
            rows += path_attacks(server, workdir, seconds)
            rows.append(good_request(server.url, downloads, PROMPTS[1], seconds, 99, "final"))
            rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
            alive = server.alive()
            rss_end = server.memory_kib()["VmRSS"]
            rss_peak = server.memory_kib()["VmHWM"]
            load_s = time.perf_counter() - started
            expired, leftovers = _wait_for_expiry(server, max_age)
            rss_rest = server.memory_kib()["VmRSS"]
        finally:
            monitor.stop()
        alive = alive and server.alive()
    good = [r for r in rows if r["kind"] == "good"]
    latencies = [r["seconds"] for r in good if not r["problem"]]
    failures = [f"{r['request']}: {r['problem']}" for r in rows if r["problem"]]
    if not alive:
        failures.append("the server is not answering after the run")
    if not expired:
        failures.append(f"temp files outlived {max_age:.0f} s: {leftovers[:3]}")
    if monitor.oldest_file_s > max_age + AGE_SLACK:
        failures.append(f"a temp file reached {monitor.oldest_file_s:.1f} s (limit {max_age:.0f} s)")
    if rss_rest > rss_warm + RSS_SLACK_MIB * 1024:
        failures.append(f"RSS at rest {mib(rss_rest)} MiB, over {mib(rss_warm)} MiB after one request "
                        f"+ {RSS_SLACK_MIB} MiB")
    summary = {
        "clients": clients, "music_s_per_request": seconds, "max_age_s": max_age,
        "requests_served": sum(1 for r in rows if r["kind"] != "disconnect" and r["outcome"] not in ("", "timeout")),
        "failures": len(failures), "failure_list": failures,
        "p50_latency_s": round(percentile(latencies, 50), 2), "p95_latency_s": round(percentile(latencies, 95), 2),
        "load_wall_s": round(load_s, 1),
        "rss_start_mib": mib(rss_start), "rss_warm_mib": mib(rss_warm), "rss_peak_mib": mib(rss_peak),
        "rss_end_mib": mib(rss_end), "rss_rest_mib": mib(rss_rest),
        "oldest_temp_file_s": round(monitor.oldest_file_s, 1), "temp_files_expired": expired,
        "server_alive_after": alive,
    }
    return rows, summary


def _wait_for_expiry(server: AppServer, max_age: float) -> tuple[bool, list[str]]:
    """Wait (at most until every temp file the run left is max_age old, plus AGE_SLACK) for them
    all to go; then none may remain, nor any file older than max_age."""
    files = temp_files(server.out_root)
    deadline = max((ctime for _, ctime in files), default=time.time()) + max_age + AGE_SLACK
    while any(p.exists() for p, _ in files) and time.time() < deadline:
        time.sleep(0.25)
    left = [str(p.relative_to(server.tmp)) for p, _ in files if p.exists()]
    too_old = [str(p.relative_to(server.tmp)) for p, ctime in temp_files(server.out_root)
               if time.time() - ctime > max_age + AGE_SLACK]
    return not left and not too_old, left + too_old


def default_source() -> Path:
    """A real performance to cut and pad: the shortest MAESTRO validation file when there is one."""
    maestro = Path(os.environ.get("COMAGEN_MAESTRO_DIR", ROOT.parent / "shared" / "data" / "maestro"))
    index = maestro / "maestro-v3.0.0.csv"
    if index.is_file():
        import csv

        with index.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "validation"]
        if rows:
            return maestro / min(rows, key=lambda r: float(r["duration"]))["midi_filename"]
    return PROMPTS[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path,
                        default=Path(os.environ.get("COMAGEN_CHECKPOINT", studio.CHECKPOINTS_DIR / "default")))
    parser.add_argument("--clients", type=int, default=8, help="good clients at once")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of music each asks for")
    parser.add_argument("--max-age", type=float, default=30.0, help="COMAGEN_OUT_MAX_AGE for the server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comagen-load-") as tmp:
        rows, summary = run_load(args.checkpoint, Path(tmp), clients=args.clients, seconds=args.seconds,
                                 max_age=args.max_age, source=default_source())
    title = f"app under load: {args.clients} clients x {args.seconds:.0f} s of music, hostile uploads, one leaver"
    emit(title, rows, summary, as_json=args.json)
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
