"""Batch-1 streaming decode speed: CoMA conformer (cached windows) against full-attention baselines.

    python bench/decode.py [--json] [--tokens 1000,4000,16000] [--threads 2] [--checkpoint DIR]
                           [--sections models,engine,runtime] [--runtime-checkpoints DIR,DIR]
    python bench/decode.py --sections quality --split test --files 10 --tokens 4096 --threads 1 --json
    python bench/decode.py --sections leans --threads 1   # what the sampling leans cost the engine
    python bench/decode.py --sections step --tokens 4096 --step-quality-files 10   # step levers vs a GPT peer
    python bench/decode.py --sections cli --before ../old-checkout   # real time through the CLI, old vs new
    python bench/decode.py --sections step,cli,quality --threads 1 --narrow flagship=64,256,512   # and narrower
    python bench/decode.py --sections prefill --before ../old-checkout   # a prompt's first pass, old vs new
    python bench/decode.py --sections overhead --threads 1 --cli-rounds 5   # the compiled engine vs numpy

Random weights at the shipped configs (training/configs/*.json, roughly equal parameter
counts). Tokens/s at each mark is measured over the stretch of tokens just before it, so a
slowdown with length shows up; state memory is DecodeState.nbytes() at the end.
With a checkpoint (default: assets/checkpoints/default when present), it also measures the
real-time factor of the whole generation engine (grammar, sampling, guidance): seconds of music
produced per second of wall time for 20 s of music from a shipped prompt, with and without
classifier-free guidance.
The runtime section compares the decode runtimes on trained bundles (default: the shipped default
and flagship): the bare batch-1 step of torch / ONNX fp32 / ONNX int8 at 1 and 2 threads, the
whole engine at batch 1 (grammar and sampling included; the three runtimes take turns every 64
tokens, so load from other processes hits all alike) with tokens/s just before each mark and the
real-time factor so far, and the runtimes teacher-forced on a validation file. A bundle without a
current export is exported into a temporary copy first. The quality section (not run by default)
teacher-forces --files pieces of --split, max(--tokens) tokens each, through every runtime's
one-token step (training/runtime_quality.py): bits per note of each, int8 minus fp32, and KL, top-1 agreement
and the largest logit difference against torch.
The step section (not run by default) sets --step-checkpoint's exported step beside a plain GPT
decoder step of matched size (comagen/runtime/peer.py: 10 M parameters, 8 layers, width 320, 5 heads,
a 1,024-slot KV ring, rotary; random weights, timing only) exported and prepared the same way:
fp32 and int8 at 1 and 2 threads, each export lever added in turn (runtime/export.py `Recipe`), the
weights in 8- and 4-bit blocks instead of per-channel int8 as trial rows (`Recipe.block_bits`),
the engine's time outside the step, its grammar mask and draw timed right after the step and again at
once (what the step's pass over the weights costs the Python side in cache misses), ONNX Runtime op
profiles, and (--step-quality-files) test bits
per note of every lever's int8 file. `--narrow flagship=64,256,512` also measures a checkpoint at
narrower windows on the same exported file (the step, quality and cli sections); a checkpoint whose
sampling.json streams at narrower windows is measured at them too without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from comagen.errors import ConfigError
from comagen.model import ModelConfig, build_model
from comagen.report import format_table

ROOT = Path(__file__).resolve().parents[1]
PROMPT = sorted((ROOT / "assets" / "prompts").glob("*.mid"))[0]  # every engine measure starts from it
PROMPT_SECONDS = 8.0


def bench_prompt(tokenizer):  # noqa: ANN001, ANN201 - a PianoTokenizer -> a Prompt, imported lazily
    """The first shipped prompt's first PROMPT_SECONDS, as every in-process engine measure uses it."""
    from comagen.generation.prompt import load_prompt

    return load_prompt(tokenizer, PROMPT, PROMPT_SECONDS)
CONFIGS = ROOT / "training" / "configs"


def load(name: str) -> torch.nn.Module:
    cfg = ModelConfig.from_dict(json.loads((CONFIGS / f"{name}.json").read_text())["model"])
    return build_model(cfg).eval()


@torch.inference_mode()
def decode_speed(model: torch.nn.Module, n_tokens: int, marks: list[int] | None = None, batch: int = 1,
                 prompt: int = 16, windows: list[int] | None = None) -> dict:
    """Greedy-decode n_tokens after a short random prompt; tokens/s just before each mark."""
    marks = sorted(m for m in (marks or [n_tokens]) if m <= n_tokens)
    vocab = model.cfg.vocab_size
    composer = torch.ones(batch, dtype=torch.long)
    state = model.new_state(batch, windows=windows)
    logits, state = model.prefill(torch.randint(0, vocab, (batch, prompt)), composer, state)
    times = [time.perf_counter()]
    for _ in range(n_tokens):
        logits, state = model.step(logits.argmax(-1), composer, state)
        times.append(time.perf_counter())
    rates = {}
    for m in marks:
        span = min(512, m // 2)
        rates[m] = round(span / (times[m] - times[m - span]), 1)
    return {"tokens_per_s": rates, "state_bytes": state.nbytes(), "total_s": round(times[-1] - times[0], 2)}


@torch.inference_mode()
def recompute_speed(model: torch.nn.Module, context: int, steps: int = 8) -> float:
    """What the published coma-gen does: a full forward over the whole context for every token."""
    vocab = model.cfg.vocab_size
    tokens = torch.randint(0, vocab, (1, context))
    composer = torch.ones(1, dtype=torch.long)
    model(tokens[:, -context:], composer)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        nxt = model(tokens[:, -context:], composer)[:, -1].argmax(-1)
        tokens = torch.cat((tokens, nxt[:, None]), dim=1)
    return round(steps / (time.perf_counter() - start), 1)


def realtime_factor(checkpoint: Path, seconds: float = 20.0) -> list[dict]:
    """The generation engine on a trained checkpoint: 20 s of music, plain and with guidance."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.request import Request
    from comagen.generation.session import generate

    bundle = load_bundle(checkpoint)
    prompt = bench_prompt(bundle.tokenizer)
    chopin = bundle.composers.find("Chopin")
    rows = []
    for label, composer, guidance, variations in (("plain", 0, 1.0, 1), ("guidance 3 (Chopin)", chopin, 3.0, 1),
                                                  ("4 variations", 0, 1.0, 4)):
        stats = generate(bundle, prompt, Request(max_tokens=4096, seconds=seconds, seed=0, composer=composer,
                                                 guidance=guidance, variations=variations)).stats
        rows.append({"engine": label, "tokens": stats["tokens"], "tokens_per_s": stats["tokens_per_s"],
                     "music_s": stats["music_seconds"], "wall_s": stats["seconds_elapsed"],
                     "realtime_factor": stats["realtime_factor"]})
    return rows


class _TimedLeans:
    """A session's leans whose calls are timed in CPU time of the calling thread (their share of the
    engine's CPU time in the same run: steady on a busy machine, where wall time is shared out)."""

    def __init__(self, leans) -> None:  # noqa: ANN001
        self.leans, self.seconds = leans, 0.0

    def __getattr__(self, name: str):  # noqa: ANN204
        method = getattr(self.leans, name)

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t0 = time.thread_time()
            out = method(*args, **kwargs)
            self.seconds += time.thread_time() - t0
            return out
        return timed


def leans_run(bundle, prompt, request) -> tuple[float, float]:  # noqa: ANN001
    """tokens/s of one generation, and the share of its CPU time spent in the leans (0 when none; the
    engine runs on this thread: torch and ONNX Runtime at 1 thread)."""
    from comagen.generation.session import Session

    session = Session(bundle, prompt, request)
    timed = session.leans = _TimedLeans(session.leans) if session.leans else None
    t0 = time.thread_time()
    for _ in session:
        pass
    cpu = time.thread_time() - t0
    return session.stats["tokens_per_s"], (timed.seconds / cpu if timed else 0.0)


def leans_section(checkpoints: list[Path], rounds: int = 5, tokens: int = 1000) -> dict:
    """What the sampling leans cost the engine: each checkpoint's tuned settings (its leans and
    temperatures) against the same settings with every lean off, taking turns, same prompt and seed;
    and, timed inside the runs with them on, the share of the engine's CPU time the leans' calls take
    (steadier than the ratio of two runs on a busy machine)."""
    from dataclasses import replace

    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.request import Request
    from comagen.generation.sampling import Sampling
    from comagen.generation.settings import bundle_settings

    rows = []
    for checkpoint in checkpoints:
        bundle = load_bundle(checkpoint)
        prompt = bench_prompt(bundle.tokenizer)
        settings = bundle_settings(bundle)
        tuned, windows = settings.sampling(), list(settings.windows) or None  # its streaming windows, both runs
        plain = replace(tuned, **{k: v for k, v in vars(Sampling()).items() if k.endswith(("strength", "temperature"))
                                  and k != "temperature"})
        speeds: dict[str, list[float]] = {"off": [], "on": []}
        shares = []
        for _ in range(rounds):
            for label, sampling in (("off", plain), ("on", tuned)):
                request = Request(max_tokens=tokens, seconds=600.0, seed=0, sampling=sampling, windows=windows)
                speed, share = leans_run(bundle, prompt, request)
                speeds[label].append(speed)
                shares += [share] if label == "on" else []
        off, on = (float(np.median(speeds[k])) for k in ("off", "on"))
        rows.append({"checkpoint": bundle.name, "leans": ", ".join(f"{k}={v:g}" for k, v in vars(tuned).items()
                                                                   if v != vars(plain)[k]) or "none",
                     "tokens_per_s_off": off, "tokens_per_s_on": on, "cost": 1.0 - on / off,
                     "leans_share": float(np.median(shares))})
    print(f"\nwhat the leans cost (medians of {rounds}, taking turns, {tokens} tokens each; leans_share: the "
          "CPU time inside the leans' calls over the run's, with them on)")
    print(format_table(rows))
    return {"rounds": rounds, "rows": rows}


RUNTIME_NAMES = ("torch", "onnx-fp32", "onnx-int8")
MAESTRO = ROOT.parent / "shared" / "data" / "maestro"


def exported(checkpoint: Path, scratch: Path) -> tuple[Path, str]:
    """The bundle if its export is current, else a scratch copy exported now (and a note saying so)."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.errors import ConfigError
    from comagen.runtime import choose_runtime
    from comagen.runtime.export import export_bundle

    bundle = load_bundle(checkpoint)
    try:
        if all(choose_runtime(bundle, name).note is None for name in RUNTIME_NAMES[1:]):
            return checkpoint, "its own export"
    except ConfigError:  # no export at all
        pass
    copy = scratch / checkpoint.name
    shutil.copytree(checkpoint, copy, ignore=shutil.ignore_patterns("runtime"))
    t0 = time.perf_counter()
    export_bundle(load_bundle(copy), int8=True, measure_steps=0)
    return copy, f"exported for this run in {time.perf_counter() - t0:.0f} s"


def step_table(path: Path, threads: list[int], steps: int = 48) -> dict[int, dict[str, float]]:
    """Bare batch-1 step time (ms, median, window full) of each runtime at each thread count."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.runtime.export import FILES, measure
    from comagen.runtime.step import StepFunction

    step = StepFunction(load_bundle(path).model)
    files = {p: path / "runtime" / name for p, name in FILES.items()}
    return {n: measure(step, files, n, steps) for n in threads}


def engine_runs(path: Path, marks: list[int], budget: float, chunk: int = 64) -> tuple[list[dict], int]:
    """The generation engine at batch 1 on each runtime from a shipped prompt, taking turns every
    `chunk` tokens until the largest mark or the time budget; returns rows and the tokens reached."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.request import Request
    from comagen.generation.session import Session

    bundle = load_bundle(path)
    prompt = bench_prompt(bundle.tokenizer)
    sessions = {name: Session(bundle, prompt, Request(max_tokens=max(marks), seconds=1e6, seed=0, runtime=name))
                for name in RUNTIME_NAMES}
    assert all(s.runtime.name == name for name, s in sessions.items()), "a runtime fell back to torch"
    steps = {name: iter(s) for name, s in sessions.items()}
    clock = {name: [0.0] for name in RUNTIME_NAMES}  # own wall time after each token
    music = {name: [0.0] for name in RUNTIME_NAMES}
    start = time.perf_counter()
    while len(clock["torch"]) <= max(marks) and time.perf_counter() - start < budget:
        for name in RUNTIME_NAMES:
            for _ in range(chunk):
                t0 = time.perf_counter()
                if next(steps[name], None) is None:
                    break
                clock[name].append(clock[name][-1] + time.perf_counter() - t0)
                music[name].append(sessions[name].snapshot().row_seconds[0])  # outside the timed span
    reached = min(len(c) for c in clock.values()) - 1
    rows = []
    for name in RUNTIME_NAMES:
        row = {"runtime": name, "threads": getattr(sessions[name].runtime, "threads", torch.get_num_threads())}
        for m in marks:
            if m > reached:
                row[f"tok/s@{m}"], row[f"rtf@{m}"] = "-", "-"
                continue
            span = min(512, m // 2)
            row[f"tok/s@{m}"] = round(span / (clock[name][m] - clock[name][m - span]), 1)
            row[f"rtf@{m}"] = round(music[name][m] / clock[name][m], 2)
        rows.append(row)
    return rows, reached


def onnx_files(checkpoint: Path, scratch: Path) -> tuple[dict[str, Path], str]:
    """The bundle's current ONNX files; a precision it lacks is exported into `scratch`, never into it."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.runtime.export import FILES, export_bundle
    from comagen.runtime.manifest import RUNTIME_DIR, WEIGHTS, ExportRecord, StaleExport

    bundle, folder, files = load_bundle(checkpoint), checkpoint / RUNTIME_DIR, {}
    try:
        record = ExportRecord.load(folder)
        for precision in record.files:
            files[precision] = record.check(folder, checkpoint / WEIGHTS, list(bundle.config.windows), precision)
    except StaleExport:
        files = {}
    missing = [p for p in ("fp32", "int8") if p not in files]
    if not missing:
        return files, "its own export"
    t0, made = time.perf_counter(), scratch / f"{checkpoint.name}-runtime"
    export_bundle(bundle, out=made, int8="int8" in missing, measure_steps=0)
    files.update({p: made / FILES[p] for p in missing})
    return files, (f"{' and '.join(missing)} exported for this run in {time.perf_counter() - t0:.0f} s"
                   + "".join(f"; {p} shipped" for p in files if p not in missing))


def parse_narrow(items: list[str]) -> dict[str, list[int]]:
    """--narrow flagship=64,256,512 -> {"flagship": [64, 256, 512]}; one clear line for anything else."""
    from comagen.generation.settings import parse_windows

    out = {}
    for item in items:
        name, sep, windows = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--narrow takes NAME=W,W,.. like flagship=64,256,512, not {item!r}")
        out[name] = list(parse_windows(windows))
    return out


def narrower(bundle, narrow: dict[str, list[int]] | None) -> list[int]:  # noqa: ANN001 - a Bundle
    """The narrower windows a bundle is also measured at: --narrow's for its name, else its streaming
    windows (sampling.json), else none; ones the exported step serves."""
    from comagen.generation.settings import bundle_settings
    from comagen.runtime.ring import MIN_WINDOW, export_serves

    windows = (narrow or {}).get(bundle.name) or list(bundle_settings(bundle).windows)
    if windows and not export_serves(bundle.model.check_windows(windows), bundle.config.windows):
        raise ConfigError(f"--narrow {bundle.name}: the exported step serves windows from {MIN_WINDOW} up to the "
                          f"trained {bundle.config.windows}, not {windows}")
    return windows


def slashed(windows: list[int]) -> str:
    """64/256/512: how a table labels a row's windows."""
    return "/".join(map(str, windows))


def runtime_quality(path: Path, onnx: dict[str, Path], data: Path, split: str, files: int, tokens: int,
                    threads: int | None, narrow: dict[str, list[int]] | None = None) -> dict:
    """Bits per note of torch and the `onnx` files on the first `files` pieces of `split` (by key, as
    `evaluate --max-files` picks them), `tokens` tokens each, teacher-forced through the one-token step,
    at the trained windows and at its narrower ones (`narrower`) if any; int8 minus fp32, and
    each runtime against torch at the trained windows (KL, top-1 agreement, largest logit difference)."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.runtime import TorchRuntime
    from comagen.runtime.onnx_stream import OnnxRuntime, default_threads
    from comagen.training.data import load_index, load_tokenized, select_split
    from comagen.training.runtime_quality import runtime_bits

    bundle = load_bundle(path)
    pieces = sorted(select_split(load_index(data), split), key=lambda p: p.key)[:files]
    threads = threads or default_threads()
    runtimes = {"torch": TorchRuntime(bundle.model), **{f"onnx-{p}": OnnxRuntime(bundle.model, f, p, threads)
                                                        for p, f in sorted(onnx.items())}}
    streaming = narrower(bundle, narrow)
    if streaming:  # torch and the exported steps at the narrower windows too
        at = "@" + slashed(streaming)
        runtimes |= {f"torch {at}": TorchRuntime(bundle.model, streaming),
                     **{f"onnx-{p} {at}": OnnxRuntime(bundle.model, f, p, threads, windows=streaming)
                        for p, f in sorted(onnx.items())}}
    result = runtime_bits(bundle, runtimes, load_tokenized(pieces, bundle.tokenizer, ROOT / "cache", progress=False),
                          tokens)
    bits = result["bits_per_note"]
    return {"split": split, "int8_minus_fp32": round(bits["onnx-int8"] - bits["onnx-fp32"], 4), **result}


def print_quality(q: dict) -> None:
    """One row per runtime: bits per note, its distance from torch, the teacher-forced step time."""
    print(f"teacher-forced on {len(q['files'])} {q['split']} file(s) x {q['tokens_per_file']} tokens "
          f"({q['targets']} targets, {q['notes']} notes); int8 - fp32 = {q['int8_minus_fp32']:+.4f} bits per note")
    print(format_table([{"runtime": k, "bits/note": f"{v:.4f}", "KL vs torch": f"{q['kl_vs_torch'][k]:.2e}",
                         "top-1 = torch": q["top1_vs_torch"][k],
                         "max |dlogit|": f"{q['max_logit_diff_vs_torch'][k]:.2e}",
                         f"step ms (batch {len(q['files'])})": q["batch_step_ms"][k]}
                        for k, v in q["bits_per_note"].items()]))


def runtime_section(checkpoints: list[Path], marks: list[int], budget: float, data: Path,
                    quality_tokens: int) -> dict:
    """Steps, engine and int8 quality per checkpoint, printed as tables; returns the JSON part."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="comagen-bench-") as scratch:
        for checkpoint in checkpoints:
            name = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
            path, origin = exported(checkpoint, Path(scratch))
            steps = step_table(path, [1, 2])
            engine, reached = engine_runs(path, marks, budget)
            quality = (runtime_quality(path, onnx_files(path, Path(scratch))[0], data, "validation", 1,
                                       quality_tokens, None) if data.is_dir() else None)
            out[str(name)] = {"export": origin, "step_ms": steps, "engine": engine, "engine_tokens": reached,
                              "quality": quality}
            print(f"\nruntimes on {name} ({origin}): bare batch-1 step, ms (window full)")
            print(format_table([{"threads": n, **{k: v for k, v in t.items()}} for n, t in steps.items()]))
            print(f"whole engine, batch 1, {reached} tokens reached (budget {budget:.0f} s; "
                  "tok/s over the 512 tokens before each mark, real-time factor so far)")
            print(format_table(engine))
            if quality:
                print_quality(quality)
            shutil.rmtree(Path(scratch) / checkpoint.name, ignore_errors=True)
    return out


def quality_section(checkpoints: list[Path], data: Path, split: str, files: int, tokens: int, threads: int,
                    narrow: dict[str, list[int]]) -> dict:
    """Each bundle's runtimes teacher-forced on `files` pieces of `split` (the shipped ONNX files, and
    those a bundle lacks exported into a scratch folder)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="comagen-bench-") as scratch:
        for checkpoint in checkpoints:
            name = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
            onnx, origin = onnx_files(checkpoint, Path(scratch))
            t0 = time.perf_counter()
            out[str(name)] = {"export": origin, **runtime_quality(checkpoint, onnx, data, split, files, tokens,
                                                                  threads, narrow)}
            out[str(name)]["wall_s"] = round(time.perf_counter() - t0, 1)
            print(f"\nquality of the runtimes on {name} ({origin}), {threads} thread(s)")
            print_quality(out[str(name)])
    return out


LEVERS = ("plain export", "+ thin mixers fp32", "+ constants folded (head int8)", "+ saved ORT-optimised")
BLOCK_BITS = (8, 4)  # weight-only blocks (Recipe.block_bits), rows beside the shipped recipe


def block_label(bits: int) -> str:
    return f"{bits}-bit weight blocks"


def lever_recipes() -> dict:
    """Each step lever of issue #26 added to the ones before it (comagen.runtime.export.Recipe)."""
    from comagen.runtime.export import Recipe

    flags = [(False, False, False), (False, True, False), (True, True, False), (True, True, True)]
    return {label: Recipe(*f) for label, f in zip(LEVERS, flags, strict=True)}


def step_files(checkpoint: Path, scratch: Path, narrow: dict[str, list[int]]) -> dict[str, tuple[Path, dict]]:
    """Label -> (ONNX file, batch-1 feeds with the windows full): the peer plain and with every lever,
    the bundle's shipped int8 file (and at its narrower windows, `narrower`), the bundle's step at
    each lever (fp32 plain and last), and both with the weights in 8- and 4-bit blocks (trial rows)."""

    from dataclasses import replace

    from comagen.bundle.checkpoint import load_bundle
    from comagen.runtime.export import FILES, example_inputs, prepare, trace_step
    from comagen.runtime.peer import PeerStep, export_peer
    from comagen.runtime.step import StepFunction

    recipes = lever_recipes()
    blocks = {block_label(bits): replace(recipes[LEVERS[-1]], block_bits=bits) for bits in BLOCK_BITS}
    peer = export_peer(scratch, {"plain": recipes[LEVERS[0]], "levers": recipes[LEVERS[-1]], **blocks})
    peer_feeds = [t.numpy() for t in PeerStep().example_inputs(1, 10_000)]
    files = {f"peer {k}": (f, peer_feeds) for k, f in peer.items()}
    bundle = load_bundle(checkpoint)
    step = StepFunction(bundle.model).eval()
    feeds = [t.numpy() for t in example_inputs(step, 1, seen=10_000)]
    shipped = checkpoint / "runtime" / FILES["int8"]
    if shipped.is_file():
        files[f"{bundle.name} int8 shipped"] = (shipped, feeds)
        streaming = narrower(bundle, narrow)
        if streaming:  # the same file at narrower windows
            narrow_feeds = [t.numpy() for t in example_inputs(step, 1, seen=10_000, windows=streaming)]
            files[f"{bundle.name} int8 shipped, windows {slashed(streaming)}"] = (shipped, narrow_feeds)
    traced = scratch / "traced.onnx"
    trace_step(step, traced)
    for i, (label, recipe) in enumerate(recipes.items()):
        for precision in ("fp32", "int8") if i in (0, len(recipes) - 1) else ("int8",):
            path = scratch / f"{precision}.{i}.onnx"
            prepare(traced, path, precision, recipe)
            files[f"{bundle.name} {precision} {label}"] = (path, feeds)
    for label, recipe in blocks.items():  # trial rows beside the shipped recipe, not added to it
        path = scratch / f"int8.{label.replace(' ', '_')}.onnx"
        prepare(traced, path, "int8", recipe)
        files[f"{bundle.name} int8 + {label}"] = (path, feeds)
    return files


def interleaved_steps(files: dict[str, tuple[Path, list]], threads: int, rounds: int = 12,
                      steps: int = 16) -> dict[str, float]:
    """Median step ms of each file, the files taking turns every `steps` calls for `rounds` rounds."""
    import onnxruntime as ort

    from comagen.runtime.onnx_stream import session_options

    runs = {}
    for label, (path, feeds) in files.items():
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        named = {i.name: f for i, f in zip(session.get_inputs(), feeds, strict=True)}
        runs[label] = lambda s=session, f=named: s.run(None, f)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            run()  # the first call after another session's turn refills the caches: not counted
            for _ in range(steps):
                t0 = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - t0)
    return {label: round(float(np.median(t)) * 1e3, 3) for label, t in times.items()}


def step_profile(path: Path, feeds: list, out: Path, steps: int = 100, top: int = 12) -> list[dict]:
    """ONNX Runtime's profile of `steps` batch-1 steps at 1 thread (written to `out`): the top ops by
    kernel time (the profiler's own cost inflates small ops, so shares, not times, are the point)."""
    import onnxruntime as ort

    from comagen.runtime.onnx_stream import session_options

    options = session_options(1)
    options.enable_profiling = True
    options.profile_file_prefix = str(out.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    named = {i.name: f for i, f in zip(session.get_inputs(), feeds, strict=True)}
    for _ in range(steps):
        session.run(None, named)
    shutil.move(session.end_profiling(), out)
    kernel: dict[str, float] = {}
    nodes: dict[str, int] = {}
    for event in json.loads(out.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            kernel[op] = kernel.get(op, 0.0) + event["dur"]
            nodes[op] = nodes.get(op, 0) + 1
    total = sum(kernel.values())
    ranked = sorted(kernel, key=kernel.get, reverse=True)[:top]
    return [{"op": op, "nodes": nodes[op] // steps, "us/step": round(kernel[op] / steps, 1),
             "share": f"{kernel[op] / total:.0%}"} for op in ranked]


class _TimedSession:
    """An InferenceSession whose steps are timed (the engine's step time, apart from the rest)."""

    def __init__(self, session) -> None:  # noqa: ANN001
        self.session, self.seconds = session, 0.0

    def run_with_iobinding(self, binding) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str):  # noqa: ANN204 - io_binding, get_outputs: the session's own
        return getattr(self.session, name)


def engine_overhead(checkpoint: Path, path: Path, tokens: int = 600) -> dict:
    """The whole engine at batch 1, 1 thread, on the int8 file `path` with the bundle's tuned settings
    (its leans and streaming windows): ms per token, of which the step, and the share outside it."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.request import Request
    from comagen.generation.session import Session
    from comagen.generation.settings import bundle_settings
    from comagen.runtime.onnx_stream import OnnxRuntime

    bundle = load_bundle(checkpoint)
    settings = bundle_settings(bundle)
    windows = list(settings.windows) or None
    prompt = bench_prompt(bundle.tokenizer)
    session = Session(bundle, prompt, Request(max_tokens=tokens + 1, seconds=1e6, seed=0, windows=windows,
                                              sampling=settings.sampling()))
    session.runtime = OnnxRuntime(bundle.model, path, "int8", 1, windows=windows)
    timed = session.runtime.session = _TimedSession(session.runtime.session)
    steps = iter(session)
    next(steps)  # the prompt's prefill is not a token's time
    timed.seconds, t0 = 0.0, time.perf_counter()
    count = sum(1 for _ in steps)
    wall = time.perf_counter() - t0
    return {"ms/token": round(wall / count * 1e3, 3), "step ms": round(timed.seconds / count * 1e3, 3),
            "outside step": f"{1 - timed.seconds / wall:.0%}", "tokens": count}


def overhead_section(checkpoints: list[Path], rounds: int = 5, tokens: int = 1500) -> list[dict]:
    """The engine's time outside the step, compiled (comagen.native) against its numpy path, on each
    bundle's shipped int8 file with its tuned settings: the paths and bundles take turns `rounds` times,
    medians per token."""
    from comagen import native

    compiled, runs = native.LIB, {}
    for _, checkpoint, path in itertools.product(range(rounds), checkpoints, ("compiled", "numpy")):
        native.LIB = compiled if path == "compiled" else None
        try:
            run = engine_overhead(checkpoint, checkpoint / "runtime" / "step.int8.onnx", tokens)
        finally:
            native.LIB = compiled
        runs.setdefault((load_name(checkpoint), path), []).append((run["ms/token"], run["step ms"]))
    rows = []
    for (name, path), times in runs.items():
        token, step = (float(np.median([t[i] for t in times])) for i in range(2))
        outside = float(np.median([t[0] - t[1] for t in times]))
        rows.append({"bundle": name, "engine": path, "ms/token": round(token, 3), "step ms": round(step, 3),
                     "outside, us": round(outside * 1e3, 1), "outside share": f"{outside / token:.1%}",
                     "tokens/s": round(1e3 / token, 1)})
    print(f"\nthe engine outside the step, compiled vs numpy (1 thread, {tokens} tokens, {rounds} rounds "
          "taking turns, medians)")
    print(format_table(rows))
    return rows


def sampler_after_step(checkpoint: Path, path: Path, tokens: int = 600) -> dict:
    """Why the engine's time outside the step resists trimming: its grammar mask and draw (plain
    sampling, no leans) timed right after each int8 step, then again at once on the same inputs.
    The step's pass over the weights evicts the Python side's code and data from the core's caches,
    so the first pass costs a multiple of the second, and an op taken out moves that cost to the next."""
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.sampling import Sampling, sample_rows
    from comagen.music.grammar import RemiGrammar, track
    from comagen.runtime.onnx_stream import OnnxRuntime

    bundle = load_bundle(checkpoint)
    grammar, sampling, uniforms = RemiGrammar(bundle.tokenizer), Sampling(), np.random.default_rng(0).random(tokens)
    prompt = bench_prompt(bundle.tokenizer)
    stream = OnnxRuntime(bundle.model, path, "int8", 1).open(torch.tensor([0]))
    logits, state = stream.prefill(np.array([[bundle.tokenizer.bos_id, *prompt.ids]])), track(grammar, prompt.ids)
    passes = []
    for u in uniforms:
        times = [time.perf_counter()]
        for _ in range(2):
            allowed = state.allowed_row(grammar)
            allowed[grammar.eos_id] = False  # the stream goes on
            token = int(sample_rows(logits, allowed[None], sampling, u[None])[0])
            times.append(time.perf_counter())
        passes.append(np.diff(times))
        state = state.advance(grammar, token)
        logits = stream.step(np.array([token]))
    cold, warm = (float(t) for t in np.median(passes, 0) * 1e6)
    return {"after the step, us": round(cold, 1), "again at once, us": round(warm, 1), "ratio": round(cold / warm, 1)}


def step_section(checkpoint: Path, threads: list[int], profile_dir: Path, data: Path, files: int,
                 tokens: int, narrow: dict[str, list[int]]) -> dict:
    """Issue #26's table: the plain GPT peer beside the bundle's step at each lever, fp32 and int8,
    at each thread count (all files taking turns in one run); the engine's overhead on the shipped
    and the last file, and its sampler after the step against repeated; op profiles of both int8
    steps; and with --data, test bits per note per lever."""
    with tempfile.TemporaryDirectory(prefix="comagen-bench-") as scratch:
        made = step_files(checkpoint, Path(scratch), narrow)
        times = {n: interleaved_steps(made, n) for n in threads}
        peer = {n: t["peer int8 levers"] for n, t in times.items()}
        rows = [{"step": label, **{f"ms@{n}": times[n][label] for n in threads},
                 **{f"x peer int8@{n}": round(times[n][label] / peer[n], 2) for n in threads}} for label in made]
        print("\nbare batch-1 step (window full), ms, medians, all files taking turns; peer: plain GPT, "
              "random weights, timing only")
        print(format_table(rows))
        last = f"{load_name(checkpoint)} int8 {LEVERS[-1]}"
        engine = [{"file": label, **engine_overhead(checkpoint, made[label][0])}
                  for label in (f"{load_name(checkpoint)} int8 shipped", last) if label in made]
        print("\nwhole engine at 1 thread (grammar, leans, sampling, ring writes, Python) around the int8 step")
        print(format_table(engine))
        caches = sampler_after_step(checkpoint, made[last][0])
        print("\nthe grammar mask and draw (medians per token), right after the step and repeated at once")
        print(format_table([caches]))
        profile_dir.mkdir(parents=True, exist_ok=True)
        profiles = {}
        for label in (last, "peer int8 levers"):
            out = profile_dir / f"profile-{label.replace(' ', '_')}.json"
            profiles[label] = step_profile(made[label][0], made[label][1], out)
            print(f"\nONNX Runtime profile of '{label}' (1 thread; raw events in {out})")
            print(format_table(profiles[label]))
        quality = None
        if data.is_dir() and files:
            onnx = {"fp32": made[f"{load_name(checkpoint)} fp32 {LEVERS[-1]}"][0], "int8": made[last][0],
                    **{f"int8 {label}": made[f"{load_name(checkpoint)} int8 {label}"][0] for label in LEVERS[:-1]},
                    **{f"int8 + {block_label(b)}": made[f"{load_name(checkpoint)} int8 + {block_label(b)}"][0]
                       for b in BLOCK_BITS}}
            quality = runtime_quality(checkpoint, onnx, data, "test", files, tokens, 1)
            print_quality(quality)
    return {"steps": rows, "engine": engine, "caches": caches, "profiles": profiles, "quality": quality}


def cli_realtime(roots: dict[str, Path], checkpoints: list[str], seconds: float, rounds: int,
                 narrow: dict[str, list[int]]) -> list[dict]:
    """Black box: `python -m comagen generate` for `seconds` of music from the first shipped prompt at
    1 thread, in each checkout of `roots` (label -> repo root) taking turns `rounds` times, and again
    with `--windows` where `narrow` names the checkpoint; medians of the process's wall time, the
    engine's own time and their real-time factors."""
    import subprocess

    env = {**os.environ, "COMAGEN_ONNX_THREADS": "1", "OMP_NUM_THREADS": "1"}
    prompt = PROMPT
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="comagen-cli-") as scratch:
        for _ in range(rounds):
            for checkpoint in checkpoints:
                windows = narrow.get(Path(checkpoint).name)
                for (label, root), extra in itertools.product(roots.items(), [[], *([windows] if windows else [])]):
                    args = ["--windows", ",".join(map(str, extra))] if extra else []
                    t0 = time.perf_counter()
                    out = subprocess.run([sys.executable, "-m", "comagen", "generate", "--checkpoint", checkpoint,
                                          "--prompt", str(prompt), "--seconds", str(seconds), "--seed", "0", *args,
                                          "--out", str(Path(scratch) / "take.mid"), "--json"], cwd=root, env=env,
                                         capture_output=True, text=True, check=True)
                    stats = json.loads(out.stdout.strip().splitlines()[-1])
                    key = (checkpoint, label + (f" @{slashed(extra)}" if extra else ""))
                    runs.setdefault(key, []).append({**stats, "wall": time.perf_counter() - t0})
    rows = []
    for (checkpoint, label), got in runs.items():
        med = {k: float(np.median([g[k] for g in got])) for k in ("wall", "seconds_elapsed", "music_seconds",
                                                                    "tokens_per_s")}
        rows.append({"checkpoint": Path(checkpoint).name, "code": label, "runtime": got[0]["runtime"],
                     "music_s": round(med["music_seconds"], 1), "process_s": round(med["wall"], 2),
                     "engine_s": round(med["seconds_elapsed"], 2), "tokens/s": med["tokens_per_s"],
                     "x real time (engine)": round(med["music_seconds"] / med["seconds_elapsed"], 1),
                     "x real time (process)": round(med["music_seconds"] / med["wall"], 1)})
    print(f"\nthrough the CLI, 1 thread, {seconds:g} s of music, medians of {rounds} (checkouts taking turns)")
    print(format_table(rows))
    return rows


PREFILL_TIMER = """
import json, sys, time
import torch
from comagen.bundle.checkpoint import load_bundle
torch.set_num_threads(1)
bundle = load_bundle(sys.argv[1])
ids, rounds, times = json.loads(open(sys.argv[2]).read()), int(sys.argv[3]), []
with torch.inference_mode():
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        bundle.model.prefill(torch.tensor([ids]), torch.tensor([0]), bundle.model.new_state(1, torch.device("cpu")))
        times.append(time.perf_counter() - t0)
print(json.dumps(sorted(times[1:])[rounds // 2]))
"""


def prefill_times(roots: dict[str, Path], checkpoints: list[str], data: Path, lengths: list[int],
                  rounds: int) -> list[dict]:
    """The first pass of every take (torch, on either runtime: the ONNX stream hands its state over
    after it): median ms of a prompt's prefill at 1 thread, the first validation piece's first `lengths`
    tokens (fewer when the piece is shorter), in each checkout of `roots` (its own code, run as a
    subprocess there) taking turns."""
    import subprocess

    from comagen.bundle.checkpoint import load_bundle
    from comagen.training.data import load_index, load_tokenized, select_split

    piece = sorted(select_split(load_index(data), "validation"), key=lambda p: p.key)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="comagen-prefill-") as scratch:
        for checkpoint in checkpoints:
            bundle = load_bundle(ROOT / checkpoint)
            ids = [bundle.tokenizer.bos_id, *map(int, load_tokenized([piece], bundle.tokenizer, ROOT / "cache",
                                                                     progress=False)[0].ids)]
            times: dict[tuple[int, str], list[float]] = {}
            files = {length: Path(scratch) / f"{bundle.name}-{length}.json" for length in lengths}
            for length, tokens in files.items():
                tokens.write_text(json.dumps(ids[:length]))
            for _ in range(rounds):
                for length, tokens in files.items():
                    for label, root in roots.items():
                        out = subprocess.run([sys.executable, "-c", PREFILL_TIMER, str((ROOT / checkpoint).resolve()),
                                              str(tokens), "5"], cwd=root, capture_output=True, text=True, check=True,
                                             env={**os.environ, "OMP_NUM_THREADS": "1"})
                        times.setdefault((length, label), []).append(float(out.stdout.strip().splitlines()[-1]))
            for (length, label), got in times.items():
                rows.append({"checkpoint": bundle.name, "prompt tokens": min(length, len(ids)), "code": label,
                             "prefill ms": round(float(np.median(got)) * 1e3, 1)})
    print(f"\nprompt prefill at 1 thread (torch; medians of {rounds} rounds of 5, checkouts taking turns)")
    print(format_table(rows))
    return rows


def load_name(checkpoint: Path) -> str:
    from comagen.bundle.checkpoint import load_bundle

    return load_bundle(checkpoint).name


def models_section(models: list[str], marks: list[int]) -> dict:
    """Random-weight decode speed of each config, plus the recompute baseline (printed as a table)."""
    rows, result = [], {"models": {}}
    for name in models:
        model = load(name)
        label = "conformer (streaming)" if name == "default" else f"{name} (KV cache)"
        r = decode_speed(model, max(marks), marks)
        r["params"] = model.num_parameters()
        result["models"][label] = r
        rows.append({"model": label, "params": f"{r['params'] / 1e6:.2f}M",
                     **{f"tok/s@{m}": r["tokens_per_s"][m] for m in marks},
                     "state": f"{r['state_bytes'] / 2**20:.2f} MiB"})
        if name == "default":
            ctx = min(marks)
            rate = recompute_speed(model, ctx)
            result["models"]["conformer (recompute whole context)"] = {"tokens_per_s": {ctx: rate},
                                                                      "params": r["params"]}
            rows.append({"model": "conformer (recompute whole context)", "params": f"{r['params'] / 1e6:.2f}M",
                         f"tok/s@{ctx}": rate, "state": "-"})
    print(format_table(rows, ["model", "params", *[f"tok/s@{m}" for m in marks], "state"]))
    conf = result["models"]["conformer (streaming)"]["tokens_per_s"]
    result["conformer_flatness"] = round(conf[max(marks)] / conf[min(marks)], 3)
    print(f"conformer tok/s at {max(marks)} / at {min(marks)}: {result['conformer_flatness']}; "
          f"recompute measured with a {min(marks)}-token context, 8 tokens")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, like a free Space)")
    p.add_argument("--tokens", default="1000,4000,16000", help="comma-separated marks (generated tokens)")
    p.add_argument("--models", default="default,gpt2,llama", help="configs from training/configs")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "default",
                   help="trained bundle for the real-time factor (skipped when absent)")
    p.add_argument("--sections", default="models,engine,runtime",
                   help="models (random-weight decode), engine (real-time factor), runtime (torch vs ONNX), "
                        "quality (each runtime's bits per note on --files files of --split, teacher-forced), "
                        "step (issue #26: the bundle's step per lever beside a plain GPT peer, engine overhead, "
                        "op profile), cli (real-time factor through python -m comagen generate; --before), "
                        "prefill (a prompt's first pass at --prefill-lengths tokens; --before), overhead (the "
                        "engine outside the step, compiled against numpy; --cli-rounds)")
    p.add_argument("--runtime-checkpoints", default="assets/checkpoints/default,assets/checkpoints/flagship",
                   help="bundles for the runtime section (relative to the repo root or absolute)")
    p.add_argument("--runtime-budget", type=float, default=150.0,
                   help="seconds per bundle for the runtime section's engine runs (marks past it are skipped)")
    p.add_argument("--quality-tokens", type=int, default=1024,
                   help="validation tokens for the runtime section's teacher-forced check (one file)")
    p.add_argument("--split", default="test", help="quality section: the split scored")
    p.add_argument("--files", type=int, default=10, help="quality section: files scored (max(--tokens) tokens each)")
    p.add_argument("--step-checkpoint", default="assets/checkpoints/flagship",
                   help="step section: the bundle set beside the plain GPT peer")
    p.add_argument("--profile-dir", type=Path, default=Path(tempfile.gettempdir()) / "comagen-step-profiles",
                   help="step section: where ONNX Runtime's raw profiles are written")
    p.add_argument("--step-quality-files", type=int, default=0,
                   help="step section: test files (max(--tokens) tokens each) scored per lever (0: none)")
    p.add_argument("--before", type=Path, help="cli, prefill sections: another checkout (repo root) to take turns with")
    p.add_argument("--cli-seconds", type=float, default=32.0, help="cli section: seconds of music per take")
    p.add_argument("--cli-rounds", type=int, default=3, help="cli and prefill sections: rounds per checkout and bundle")
    p.add_argument("--prefill-lengths", default="330,1024,2048", help="prefill section: prompt lengths in tokens")
    p.add_argument("--data", type=Path, default=MAESTRO, help="MAESTRO folder for int8 vs fp32 (skipped if absent)")
    p.add_argument("--narrow", action="append", default=[], metavar="NAME=W,W,..",
                   help="step, quality, cli sections: also measure checkpoint NAME at these narrower windows "
                        "(step and quality default to a checkpoint's sampling.json windows, which the CLI "
                        "already streams at)")
    args = p.parse_args()
    try:
        narrow = parse_narrow(args.narrow)
    except ConfigError as exc:
        p.error(str(exc))
    sections = set(args.sections.split(","))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    marks = [int(t) for t in args.tokens.split(",")]
    result = {"threads": args.threads, "marks": marks}
    if "models" in sections:
        result.update(models_section(args.models.split(","), marks))
    if "engine" in sections and args.checkpoint.is_dir():
        engine = realtime_factor(args.checkpoint)
        name = args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint
        result["engine"] = {"checkpoint": str(name), "rows": engine}
        print(f"\ngeneration engine on {result['engine']['checkpoint']} (20 s of music from a shipped prompt)")
        print(format_table(engine))
    checkpoints = [ROOT / c for c in args.runtime_checkpoints.split(",") if (ROOT / c).is_dir()]
    if "runtime" in sections:
        result["runtime"] = runtime_section(checkpoints, marks, args.runtime_budget, args.data, args.quality_tokens)
    if "leans" in sections:
        result["leans"] = leans_section(checkpoints)
    if "overhead" in sections:
        result["overhead"] = overhead_section(checkpoints, args.cli_rounds)
    if "step" in sections:
        result["step"] = step_section(ROOT / args.step_checkpoint, [1, 2], args.profile_dir, args.data,
                                      args.step_quality_files, max(marks), narrow)
    roots = {"this checkout": ROOT, **({"--before": args.before} if args.before else {})}
    if "cli" in sections:
        result["cli"] = cli_realtime(roots, args.runtime_checkpoints.split(","), args.cli_seconds, args.cli_rounds,
                                     narrow)
    if "prefill" in sections:
        result["prefill"] = prefill_times(roots, args.runtime_checkpoints.split(","), args.data,
                                          [int(n) for n in args.prefill_lengths.split(",")], args.cli_rounds)
    if "quality" in sections:
        result["quality"] = quality_section(checkpoints, args.data, args.split, args.files, max(marks), args.threads,
                                            narrow)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
