"""Batch-1 streaming decode speed: CoMA conformer (cached windows) against full-attention baselines.

    python bench/decode.py [--json] [--tokens 1000,4000,16000] [--threads 2] [--checkpoint DIR]

Random weights at the shipped configs (training/configs/*.json, roughly equal parameter
counts). Tokens/s at each mark is measured over the stretch of tokens just before it, so a
slowdown with length shows up; state memory is DecodeState.nbytes() at the end.
With a checkpoint (default: assets/checkpoints/default when present), it also measures the
real-time factor of the whole generation engine (grammar, sampling, guidance): seconds of music
produced per second of wall time for 20 s of music from a shipped prompt, with and without
classifier-free guidance.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import json
import time

import torch

from comagen.model import ModelConfig, build_model
from comagen.report import format_table

ROOT = Path(__file__).resolve().parents[1]
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
    from comagen.checkpoint import load_bundle
    from comagen.generate import Request, generate, load_prompt

    bundle = load_bundle(checkpoint)
    prompt = load_prompt(bundle.tokenizer, sorted((ROOT / "assets" / "prompts").glob("*.mid"))[0], 8.0)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, like a free Space)")
    p.add_argument("--tokens", default="1000,4000,16000", help="comma-separated marks (generated tokens)")
    p.add_argument("--models", default="default,gpt2,llama", help="configs from training/configs")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "checkpoints" / "default",
                   help="trained bundle for the real-time factor (skipped when absent)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    marks = [int(t) for t in args.tokens.split(",")]
    rows, result = [], {"threads": args.threads, "marks": marks, "models": {}}
    for name in args.models.split(","):
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
    if args.checkpoint.is_dir():
        engine = realtime_factor(args.checkpoint)
        name = args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint
        result["engine"] = {"checkpoint": str(name), "rows": engine}
        print(f"\ngeneration engine on {result['engine']['checkpoint']} (20 s of music from a shipped prompt)")
        print(format_table(engine))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
