"""Train the conformer, the three baselines and an outside peer (lucidrains' x-transformers) on the
same tokens in the same order, same budget.

    python training/compare.py --data DIR [--steps 150] [--out runs/compare] [--archs default,gpt2] [--json]

Each run uses its config in training/configs/ with the default config's training keys (same
crops: batch k is a pure function of the seed and k, whatever the architecture), then reports
validation bits per note on the same validation pieces and the measured training tokens/s.
Prints a table (and with --json one JSON object); `docs/results.md` quotes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json

from comagen.render.curves import curves_figure
from comagen.report import emit
from comagen.training.config import load_run_config
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("default", "gpt2", "music_transformer", "llama", "xtransformers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "compare_curves.png")
    parser.add_argument("--archs", default=",".join(ARCHS), help="configs to train, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shared = json.loads((ROOT / "training/configs/default.json").read_text())["train"]
    shared.update(max_steps=args.steps, max_minutes=None, warmup_steps=max(args.steps // 5, 1),
                  eval_every=args.steps, save_every=0, threads=args.threads, data=args.data, cache=args.cache,
                  progress=False, log_every=5)
    rows, logs = [], {}
    for name in args.archs.split(","):
        overrides = [f"train.{k}={json.dumps(v)}" for k, v in shared.items()]
        overrides += [f"train.out={json.dumps(str(args.out / name))}", "model.dropout=0.0"]
        model_cfg, cfg = load_run_config(ROOT / "training/configs" / f"{name}.json", overrides)
        result = train(model_cfg, cfg, resume=False)
        logs[model_cfg.arch] = args.out / name / "tensorboard"
        summary = json.loads((args.out / name / "last" / "config.json").read_text())["summary"]
        rows.append({"model": model_cfg.arch, "params_M": round(summary["parameters"] / 1e6, 2),
                     "train_tokens": result.tokens, "val_bits_per_note": round(result.best_bits_per_note, 3),
                     "final_loss": round(result.losses[-1][1], 3),
                     "train_tokens_per_s": round(result.tokens / result.seconds)})
        print(json.dumps(rows[-1]), flush=True)
    tokens_per_step = {r["model"]: shared["batch_size"] * shared["seq_len"] for r in rows}
    fig = curves_figure(logs, x="tokens", tokens_per_step=tokens_per_step)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    best = min(rows, key=lambda r: r["val_bits_per_note"])
    emit("same tokens, same order, same budget (CPU)", rows,
         {"steps": args.steps, "winner": best["model"], "figure": str(args.figure)}, as_json=args.json)


if __name__ == "__main__":
    main()
