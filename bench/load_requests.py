"""The requests bench/app_load.py makes of a running app, each returning one report row: a good
client after a shipped prompt, a hostile upload, a client that leaves mid-stream, and uploads whose
names or paths try to leave the upload folder. Each checks what it got back and names the problem."""

from __future__ import annotations

import json
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import httpx
import symusic
from gradio_client import Client, handle_file

import studio
from bench.load_inputs import HOSTILE, Hostile
from bench.load_watch import IDLE_TIMEOUT, mib, wait_idle
from studio.appserver import AppServer

PROMPTS = sorted(studio.PROMPTS_DIR.glob("*.mid"))
MIDI_OUT = 3 + 3 * studio.MAX_VARIATIONS  # index of the first variation's MIDI in /generate's outputs
REQUEST_TIMEOUT = 240.0  # one request, queue wait included, on a busy 2-core machine
UNCLEAR = ("Traceback", "upstream Gradio app has raised an exception", "Error raised.")


def _one_line_clear(message: str, fragment: str, name: str) -> str | None:
    """Why `message` is not a clear refusal (one line, saying why, starting with the file's `name`),
    or None when it is."""
    if not message or "\n" in message.strip() or any(u in message for u in UNCLEAR):
        return f"unclear message {message[:200]!r}"
    if not message.startswith(f"{name}: ") or fragment not in message:
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
        row["problem"] = ("served nothing" if message is None else _one_line_clear(text, message, upload.name)) or ""
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


def hostile_uploads(server: AppServer, uploads: Path, downloads: Path, source: Path, seconds: float) -> list[dict]:
    """Every HOSTILE upload, one after another from one user (one client), `source` cut or padded."""
    rows = []
    attacker = Client(server.url, verbose=False, download_files=str(downloads))
    try:
        for bad in HOSTILE:
            upload = uploads / bad.name
            upload.write_bytes(bad.data(source))
            rows.append(hostile_request(attacker, upload, bad, seconds))
            rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
    finally:
        attacker.close()
    return rows
