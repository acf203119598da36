"""Training cost against sequence length: forward+backward tokens/s and peak memory per architecture.

    python bench/train_step.py [--json] [--lengths 1024,2048,4096,8192,16384] [--threads 2]

Each (architecture, length) runs in its own subprocess at batch 1 with the shipped configs
(training/configs/*.json, random weights, AdamW not included). Memory is the growth of the
process's peak RSS (resource.getrusage ru_maxrss) from after building the model to after the
steps: it covers activations, gradients and allocator slack, not a torch-level allocation count.
A full-attention config is skipped once the previous length took longer than --budget seconds
(its cost grows ~4x per doubling), and said so in the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import torch

from comagen.model import ModelConfig, build_model
from comagen.report import format_table

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
MODELS = {"conformer": "default", "gpt2": "gpt2", "music_transformer": "music_transformer", "llama": "llama"}


def one(name: str, length: int, threads: int) -> dict:
    """Time forward+backward at one length in this process; returns the measurements."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())["model"]
    model = build_model(ModelConfig.from_dict({**cfg, "max_seq_len": max(cfg["max_seq_len"], length)})).train()
    x = torch.randint(0, model.cfg.vocab_size, (1, length + 1))
    composer = torch.ones(1, dtype=torch.long)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps = 1 if length >= 4096 else 3

    def step() -> None:
        logits = model(x[:, :-1], composer)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        model.zero_grad(set_to_none=True)

    if length < 4096:  # warm-up; at long lengths one-off costs are negligible next to a multi-second step
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"tokens_per_s": round(length / seconds, 1), "step_s": round(seconds, 3),
            "peak_rss_delta_mib": round((rss - rss0) / 1024, 1), "params": model.num_parameters()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, like a free Space)")
    p.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--budget", type=float, default=12.0, help="skip longer lengths once a step took this long (s)")
    p.add_argument("--one", nargs=2, metavar=("CONFIG", "LENGTH"), help=argparse_hidden())
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.threads)))
        return
    lengths = [int(n) for n in args.lengths.split(",")]
    rows, result = [], {"threads": args.threads, "batch": 1, "memory": "peak RSS growth (ru_maxrss)", "models": {}}
    for arch in args.models.split(","):
        result["models"][arch] = {}
        skip = False
        for length in lengths:
            if skip:
                r = {"skipped": f"previous length exceeded the {args.budget:.0f}s budget"}
            else:
                proc = subprocess.run([sys.executable, __file__, "--one", MODELS[arch], str(length),
                                       "--threads", str(args.threads)], capture_output=True, text=True)
                if proc.returncode:
                    r = {"skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1][:80]}
                else:
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    skip = r["step_s"] > args.budget
            result["models"][arch][length] = r
            rows.append({"model": arch, "length": length, "tok/s": r.get("tokens_per_s", "-"),
                         "step s": r.get("step_s", "-"), "peak RSS +MiB": r.get("peak_rss_delta_mib", "-"),
                         "note": r.get("skipped", "")})
    print(format_table(rows, ["model", "length", "tok/s", "step s", "peak RSS +MiB", "note"]))
    print("batch 1, forward+backward, fp32 CPU; memory = growth of peak RSS after model build (not exact tensors)")
    if args.json:
        print(json.dumps(result))


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
