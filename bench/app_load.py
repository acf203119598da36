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
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import studio
from bench.load_requests import PROMPTS, good_request, hostile_uploads, leaving_client, path_attacks
from bench.load_watch import AGE_SLACK, Monitor, mib, percentile, wait_for_expiry
from comagen.report import emit
from studio.appserver import AppServer, serve

ROOT = Path(__file__).resolve().parents[1]
RSS_SLACK_MIB = 160  # how far above its size after one request the server may rest after the load


def run_load(checkpoint: Path, workdir: Path, *, clients: int = 8, seconds: float = 4.0, max_age: float = 30.0,
             source: Path | None = None) -> tuple[list[dict], dict]:
    """Serve the app, load it, attack it, and measure it; returns (rows, summary). Every request has
    a timeout, so a run ends in bounded time whatever the server does."""
    with serve(checkpoint, workdir / "app.log", tmp=workdir / "server-tmp",
               env={"COMAGEN_OUT_MAX_AGE": str(max_age)}) as server:
        rss_start = server.memory_kib()["VmRSS"]
        monitor = Monitor(server)
        try:
            rows, measured = _load(server, workdir, clients, seconds, source or PROMPTS[-1])
            measured["expired"], measured["leftovers"] = wait_for_expiry(server, max_age)
            measured["rss_rest"] = server.memory_kib()["VmRSS"]
        finally:
            monitor.stop()
        measured.update(alive=measured["alive"] and server.alive(), rss_start=rss_start,
                        oldest_file_s=monitor.oldest_file_s)
    return rows, _summary(rows, measured, clients=clients, seconds=seconds, max_age=max_age)


def _load(server: AppServer, workdir: Path, clients: int, seconds: float, source: Path) -> tuple[list[dict], dict]:
    """The requests, in order: a warm-up, `clients` at once, one that leaves, the hostile uploads and
    paths, a final good one; the rows, and the server's memory and liveness right after."""
    uploads, downloads = workdir / "uploads", workdir / "downloads"
    uploads.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = [good_request(server.url, downloads, PROMPTS[0], seconds, 0, "warm-up")]
    rss_warm = server.memory_kib()["VmRSS"]
    rows[-1]["rss_mib"] = mib(rss_warm)
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(good_request, server.url, downloads, PROMPTS[i % len(PROMPTS)], seconds,
                               i + 1, f"client {i + 1}") for i in range(clients)]
        rows += [f.result() for f in futures]  # each bounded by REQUEST_TIMEOUT
    rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
    rows.append(leaving_client(server))
    rows += hostile_uploads(server, uploads, downloads, source, seconds)
    rows += path_attacks(server, workdir, seconds)
    rows.append(good_request(server.url, downloads, PROMPTS[1], seconds, 99, "final"))
    rows[-1]["rss_mib"] = mib(server.memory_kib()["VmRSS"])
    memory = server.memory_kib()
    return rows, {"alive": server.alive(), "rss_warm": rss_warm, "rss_end": memory["VmRSS"],
                  "rss_peak": memory["VmHWM"], "load_s": time.perf_counter() - started}


def _failures(rows: list[dict], m: dict, max_age: float) -> list[str]:
    """One line per thing that went wrong: a row's problem, a dead server, a file kept too long, memory kept."""
    failures = [f"{r['request']}: {r['problem']}" for r in rows if r["problem"]]
    if not m["alive"]:
        failures.append("the server is not answering after the run")
    if not m["expired"]:
        failures.append(f"temp files outlived {max_age:.0f} s: {m['leftovers'][:3]}")
    if m["oldest_file_s"] > max_age + AGE_SLACK:
        failures.append(f"a temp file reached {m['oldest_file_s']:.1f} s (limit {max_age:.0f} s)")
    if m["rss_rest"] > m["rss_warm"] + RSS_SLACK_MIB * 1024:
        failures.append(f"RSS at rest {mib(m['rss_rest'])} MiB, over {mib(m['rss_warm'])} MiB after one request "
                        f"+ {RSS_SLACK_MIB} MiB")
    return failures


def _summary(rows: list[dict], m: dict, *, clients: int, seconds: float, max_age: float) -> dict:
    latencies = [r["seconds"] for r in rows if r["kind"] == "good" and not r["problem"]]
    failures = _failures(rows, m, max_age)
    return {
        "clients": clients, "music_s_per_request": seconds, "max_age_s": max_age,
        "requests_served": sum(1 for r in rows if r["kind"] != "disconnect" and r["outcome"] not in ("", "timeout")),
        "failures": len(failures), "failure_list": failures,
        "p50_latency_s": round(percentile(latencies, 50), 2), "p95_latency_s": round(percentile(latencies, 95), 2),
        "load_wall_s": round(m["load_s"], 1),
        **{f"{k}_mib": mib(m[k]) for k in ("rss_start", "rss_warm", "rss_peak", "rss_end", "rss_rest")},
        "oldest_temp_file_s": round(m["oldest_file_s"], 1), "temp_files_expired": m["expired"],
        "server_alive_after": m["alive"],
    }


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
