"""Training speed on one GPU against the hardware's limit: tokens/s and model FLOPs utilisation.

    python bench/train_gpu.py [--json] [--steps 10] [--compile] [--peak-tflops 989]

For the flagship conformer and a gpt2 baseline of equal size at 2k and 8k tokens, and a 50 M
parameter conformer at 8k (batch 2 x 8192, the reference setting of a GPT-2 style music model
reported at ~74k tokens/s). bf16 autocast, fused AdamW, random tokens. FLOPs count what is
actually computed: 6 x non-embedding parameters per token, plus attention over the windows
actually attended (12 x W x dim per local scale and layer; 6 x L x dim for causal full attention).
MFU is against the dense bf16 peak given by --peak-tflops (H100/H200 SXM spec: 989).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import time

import torch
import torch.nn.functional as F

from comagen.model import ModelConfig, build_model
from comagen.report import emit

ROOT = Path(__file__).resolve().parents[1]


def flops_per_token(model: torch.nn.Module, cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: dense layers plus the attention actually computed."""
    dense = sum(p.numel() for n, p in model.named_parameters() if "emb" not in n)
    if cfg.arch == "conformer":
        attention = sum(12 * min(w, seq_len) * cfg.dim for w in cfg.windows) * cfg.depth
        attention += 6 * seq_len * cfg.dim * len(cfg.global_layers)
    else:
        attention = 6 * seq_len * cfg.dim * cfg.depth
    return 6 * dense + attention


def matched_gpt2(target: int, dim: int, heads: int, seq_len: int) -> ModelConfig:
    """A gpt2 config of about `target` parameters at width `dim`."""
    best = None
    for depth in range(1, 64):
        cfg = ModelConfig(arch="gpt2", dim=dim, heads=heads, depth=depth, max_seq_len=seq_len, vocab_size=374,
                          dropout=0.0)
        n = build_model(cfg).num_parameters()
        if best is None or abs(n - target) < abs(best[0] - target):
            best = (n, cfg)
        if n > target:
            break
    return best[1]


def measure(cfg: ModelConfig, batch: int, seq_len: int, steps: int, compile_model: bool, peak: float) -> dict:
    """One row of the table; an out-of-memory configuration is reported, not fatal."""
    try:
        row = _measure(cfg, batch, seq_len, steps, compile_model, peak)
    except torch.OutOfMemoryError:
        row = {"model": cfg.arch, "seq_len": seq_len, "batch": batch, "tokens_per_s": "OOM"}
    torch.cuda.empty_cache()
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _measure(cfg: ModelConfig, batch: int, seq_len: int, steps: int, compile_model: bool, peak: float) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    net = torch.compile(model) if compile_model else model
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device="cuda")
    composer = torch.zeros(batch, dtype=torch.long, device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(tokens[:, :-1], composer)
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    rate = batch * seq_len / seconds
    fpt = flops_per_token(model, cfg, seq_len)
    return {"model": cfg.arch, "params_M": round(model.num_parameters() / 1e6, 2), "seq_len": seq_len,
            "batch": batch, "tokens_per_s": round(rate), "step_ms": round(seconds * 1000, 1),
            "tflops": round(rate * fpt / 1e12, 1), "mfu_pct": round(100 * rate * fpt / (peak * 1e12), 1),
            "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = True
    flagship = ModelConfig.from_dict(json.loads((ROOT / "training/configs/flagship.json").read_text())["model"])
    flagship.vocab_size, flagship.dropout = 374, 0.0
    big = ModelConfig(arch="conformer", dim=512, depth=7, heads=8, windows=[64, 256, 1024], ff_mult=4,
                      conv_kernel=15, max_seq_len=8192, vocab_size=374, dropout=0.0, hyper_streams=1)
    rows = []
    for seq_len, batch in ((2048, 16), (8192, 4)):
        flagship.max_seq_len = seq_len
        conformer = measure(flagship, batch, seq_len, args.steps, args.compile, args.peak_tflops)
        rows.append({"name": "flagship conformer", **conformer})
        gpt2 = matched_gpt2(int(conformer.get("params_M", 11) * 1e6), flagship.dim, flagship.heads, seq_len)
        rows.append({"name": "gpt2 (same size)", **measure(gpt2, batch, seq_len, args.steps, args.compile,
                                                            args.peak_tflops)})
    for batch in (2, 8):
        rows.append({"name": "50M conformer", **measure(big, batch, 8192, args.steps, args.compile,
                                                        args.peak_tflops)})
    reference = 74_000
    emit("training speed on one GPU", rows, {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "compile": args.compile,
        "peak_tflops": args.peak_tflops,
        "50M_conformer_8k_vs_reference_74k": [round(r["tokens_per_s"] / reference, 2) for r in rows[-2:]
                                              if isinstance(r["tokens_per_s"], int)],
    }, as_json=args.json)


if __name__ == "__main__":
    main()
