"""A scaling plan from CPU runs: validation bits per note against parameters and training tokens.

    python training/scaling.py --data DIR [--steps 200] [--out runs/scaling] [--json]

Trains conformers of rising size (default config's training keys, same crops in the same order)
for the same number of steps, evaluating on the same validation pieces four times per run, so
every run gives a short token sweep too. Fits L(N, D) = E + A / N^alpha + B / D^beta (N
non-embedding parameters, D training tokens), checks the fit against the shipped checkpoints
(evaluated on the same pieces), and predicts a GPU run's result for a size and token budget.
Writes the points and the fit to `<out>/scaling.json` and a figure to docs/figures/scaling.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.optimize import curve_fit

from comagen.bundle.checkpoint import load_bundle
from comagen.render.curves import read_scalars
from comagen.report import emit
from comagen.training.config import load_run_config
from comagen.training.data import load_index, load_tokenized, select_split
from comagen.training.evaluate import evaluate_pieces
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(96, 2, 2), (160, 2, 4), (224, 3, 4), (288, 4, 4)]  # (dim, depth, heads)
EVAL = {"eval_files": 8, "eval_max_tokens": 2048}


def law(x: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
    n, d = x
    return e + a / (n / 1e6) ** alpha + b / (d / 1e6) ** beta


def non_embedding(summary_params: int, dim: int, vocab: int, composers: int) -> int:
    return summary_params - dim * (vocab + composers)


def run_size(dim: int, depth: int, heads: int, args: argparse.Namespace) -> list[dict]:
    """Train one size; its (parameters, tokens, validation bits per note) points."""
    shared = json.loads((ROOT / "training/configs/default.json").read_text())["train"]
    shared.update(max_steps=args.steps, max_minutes=None, warmup_steps=max(args.steps // 10, 1),
                  eval_every=args.steps // 4, save_every=0, threads=args.threads, data=str(args.data),
                  cache=args.cache, progress=False, log_every=10, **EVAL)
    out = args.out / f"d{dim}x{depth}"
    overrides = [f"train.{k}={json.dumps(v)}" for k, v in shared.items()]
    overrides += [f"train.out={json.dumps(str(out))}", f"model.dim={dim}", f"model.depth={depth}",
                  f"model.heads={heads}", "model.dropout=0.0"]
    model_cfg, cfg = load_run_config(ROOT / "training/configs/default.json", overrides)
    if not (out / "last" / "config.json").is_file():
        train(model_cfg, cfg, resume=False)
    saved = json.loads((out / "last" / "config.json").read_text())  # the sized config: train() leaves ours be
    summary, sized = saved["summary"], saved["model"]
    n = non_embedding(summary["parameters"], dim, sized["vocab_size"], sized["n_composers"])
    tokens_per_step = cfg.batch_size * cfg.seq_len
    return [{"dim": dim, "depth": depth, "params": n, "tokens": step * tokens_per_step, "val_bits_per_note": v}
            for step, v in read_scalars(out / "tensorboard", "val/bits_per_note")]


def shipped_points(args: argparse.Namespace) -> list[dict]:
    """The shipped checkpoints on the same validation pieces as the runs."""
    points = []
    for name in ("default", "flagship"):
        bundle = load_bundle(ROOT / "assets" / "checkpoints" / name)
        bundle.model.float()
        pieces = select_split(load_index(args.data), "validation")
        chosen = [pieces[i] for i in np.linspace(0, len(pieces) - 1, EVAL["eval_files"]).astype(int)]
        data = load_tokenized(chosen, bundle.tokenizer, args.cache, progress=False)
        seq_len = int(bundle.summary.get("seq_len", 512))
        bpn = evaluate_pieces(bundle.model, data, bundle.tokenizer, bundle.composers, seq_len=seq_len,
                              max_tokens=EVAL["eval_max_tokens"])["bits_per_note"]
        cfg = bundle.config
        n = non_embedding(bundle.summary["parameters"], cfg.dim, cfg.vocab_size, cfg.n_composers)
        points.append({"name": name, "params": n, "tokens": bundle.summary["tokens_seen"], "val_bits_per_note": bpn})
    return points


def figure(points: list[dict], fit: np.ndarray, shipped: list[dict]) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_tokens, by_params = fig.subplots(1, 2)
    for dim in sorted({p["dim"] for p in points}):
        run = [p for p in points if p["dim"] == dim]
        tokens = np.array([p["tokens"] for p in run])
        by_tokens.plot(tokens, [p["val_bits_per_note"] for p in run], "o", label=f"{run[0]['params'] / 1e6:.2f}M")
        grid = np.linspace(tokens.min(), tokens.max(), 50)
        by_tokens.plot(grid, law((np.full_like(grid, run[0]["params"]), grid), *fit), "-", alpha=0.5)
    last = max(p["tokens"] for p in points)
    final = [p for p in points if p["tokens"] == last]
    by_params.plot([p["params"] for p in final], [p["val_bits_per_note"] for p in final], "o", label="runs (end)")
    grid = np.geomspace(min(p["params"] for p in final), 4e7, 50)
    by_params.plot(grid, law((grid, np.full_like(grid, last)), *fit), "-", label=f"fit at {last / 1e6:.1f}M tokens")
    for s in shipped:
        by_params.plot(s["params"], s["val_bits_per_note"], "*", markersize=12,
                       label=f"{s['name']} ({s['tokens'] / 1e6:.1f}M tokens): fit {s['predicted']:.2f}")
    by_tokens.set(title="validation bits per note vs training tokens", xlabel="tokens", xscale="log")
    by_params.set(title="vs non-embedding parameters", xlabel="parameters", xscale="log")
    for ax in (by_tokens, by_params):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def fit_law(points: list[dict]) -> np.ndarray:
    x = np.array([[p["params"] for p in points], [p["tokens"] for p in points]], dtype=float)
    y = np.array([p["val_bits_per_note"] for p in points])
    fit, _ = curve_fit(law, x, y, p0=[8.0, 5.0, 0.3, 5.0, 0.3], bounds=([0, 0, 0, 0, 0], [30, 100, 2, 100, 2]),
                       maxfev=20000)
    return fit


def predict(fit: np.ndarray, params: float, tokens: float) -> float:
    return float(law(np.array([[params], [tokens]], dtype=float), *fit)[0])


def checks(points: list[dict], shipped: list[dict]) -> list[dict]:
    """Each shipped checkpoint predicted by the runs alone, and by the runs plus the other checkpoint
    (one long run anchors the token axis that 200-step runs cannot reach)."""
    alone = fit_law(points)
    rows = []
    for s in shipped:
        anchored = fit_law(points + [o for o in shipped if o is not s])
        rows.append({"checkpoint": s["name"], "params_M": s["params"] / 1e6, "tokens_M": s["tokens"] / 1e6,
                     "measured": s["val_bits_per_note"], "fit_runs": predict(alone, s["params"], s["tokens"]),
                     "fit_runs_plus_other": predict(anchored, s["params"], s["tokens"])})
        rows[-1]["error_runs_plus_other"] = rows[-1]["fit_runs_plus_other"] - s["val_bits_per_note"]
    return rows


def plan(fit: np.ndarray, rate: float, ref_params: float, seconds: float) -> list[dict]:
    """Predicted bits per note of a `seconds` GPU run per size, if tokens/s falls as 1/parameters from
    `rate` at `ref_params` (compute-bound)."""
    rows = []
    for params in (4e6, 8e6, 11e6, 16e6, 22e6, 30e6):
        tokens = rate * ref_params / params * seconds
        rows.append({"params_M": params / 1e6, "tokens_M": tokens / 1e6, "tokens_per_param": tokens / params,
                     "predicted": predict(fit, params, tokens)})
    return rows


def gather(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """The runs' points and the shipped checkpoints' (read back from scaling.json with --refit)."""
    saved = args.out / "scaling.json"
    if args.refit and saved.is_file():
        data = json.loads(saved.read_text())
        return data["points"], data["shipped"]
    torch.manual_seed(0)
    points = [p for dim, depth, heads in SIZES for p in run_size(dim, depth, heads, args)]
    return points, shipped_points(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/scaling"))
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--refit", action="store_true", help="fit the points of an earlier run again")
    parser.add_argument("--gpu-rate", type=float, default=339e3,
                        help="training tokens/s of the 11M flagship on the GPU (339k: compiled, H200)")
    parser.add_argument("--gpu-seconds", type=float, default=540.0, help="training time of the planned run")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "scaling.png")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    points, shipped = gather(args)
    fit = fit_law(points)
    for s in shipped:
        s["predicted"] = predict(fit, s["params"], s["tokens"])
    anchored = fit_law(points + shipped)
    rows = checks(points, shipped)
    budget = plan(anchored, args.gpu_rate, 11e6, args.gpu_seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    names = ("E", "A", "alpha", "B", "beta")
    result = {"fit": dict(zip(names, map(float, fit), strict=True)),
              "fit_with_shipped": dict(zip(names, map(float, anchored), strict=True)), "points": points,
              "shipped": shipped, "checks": rows, "plan": budget}
    (args.out / "scaling.json").write_text(json.dumps(result, indent=1))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure(points, fit, shipped).savefig(args.figure, dpi=110)
    if not args.json:
        emit(f"GPU plan: {args.gpu_seconds:.0f} s at {args.gpu_rate / 1e3:.0f}k tokens/s for 11M parameters "
             "(fit with both checkpoints)", budget, {}, as_json=False)
    emit("scaling fit: validation bits per note = E + A/N^alpha + B/D^beta", rows,
         {"fit_runs": result["fit"], "fit_with_shipped": result["fit_with_shipped"], "plan": budget,
          "figure": str(args.figure)}, as_json=args.json)


if __name__ == "__main__":
    main()
