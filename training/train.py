"""Train a comagen model.

    python training/train.py --config training/configs/default.json [--data DIR] [--out DIR]
        [--max-steps N] [--max-minutes M] [--fresh] [key=value ...]

`key=value` overrides any config key (`model.dim=128`, `train.lr=3e-4`, or a bare key when it
is unambiguous). `init_from=BUNDLE` starts from a bundle's weights, model config, tokenizer and
composers (`training/finetune.py` does that for a folder of your own files). Resumes from
`<out>/last` unless --fresh. Multi-GPU/CPU: `torchrun
--nproc_per_node N training/train.py ...` (gloo on CPU). TensorBoard logs: `<out>/tensorboard`; the
run's own log, with the traceback when it fails (the terminal shows one line): `<out>/train.log`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from comagen.cli import run_for_user
from comagen.training.config import load_run_config
from comagen.training.trainer import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=str, default=None)
    parser.add_argument("--out", type=str, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args()

    def work() -> dict:
        overrides = list(args.overrides)
        for key in ("data", "out", "max_steps", "max_minutes"):
            value = getattr(args, key)
            if value is not None:
                overrides.append(f"train.{key}={json.dumps(value)}")
        if args.out is None:  # first, so an explicit `out=...` override still wins
            overrides.insert(0, f"train.out={json.dumps(str(Path('runs') / args.config.stem))}")
        model_cfg, train_cfg = load_run_config(args.config, overrides)
        result = train(model_cfg, train_cfg, resume=not args.fresh)
        summary = {"out": str(result.out), "step": result.step, "tokens": result.tokens,
                   "seconds": round(result.seconds, 1), "best_val_bits_per_note": result.best_bits_per_note,
                   "stopped": result.stopped, "final_loss": result.losses[-1][1] if result.losses else None}
        if result.best_nats_per_frame is not None:
            summary["best_val_nats_per_frame"] = result.best_nats_per_frame
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
        return summary

    return run_for_user(work, as_json=args.json, interrupted="interrupted: the last periodic checkpoint is intact")


if __name__ == "__main__":
    sys.exit(main())
