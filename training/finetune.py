"""Fine-tune a bundle on a folder of your own MIDI files, on the CPU, in minutes.

    python training/finetune.py --from assets/checkpoints/default --data MY_MIDI --out runs/finetuned/mine
        [--minutes 10] [--steps N] [--composer NAME] [--json]

Files are found in all subfolders (*.mid, *.midi); a file that cannot be used is named in one line
and skipped. A tenth of the files (1 to 8, the same ones every time) is held out to pick the best
step and to report validation bits per note before and after. The result is an ordinary bundle:
the app lists everything under runs/finetuned/ (and in COMAGEN_CHECKPOINTS).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)
FINETUNED = ROOT / "runs" / "finetuned"  # app.py always lists the bundles in here

from comagen.cli import run_for_user
from comagen.training.finetune import finetune


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="base", type=Path, required=True, help="the bundle to start from")
    parser.add_argument("--data", type=Path, required=True, help="a folder of your MIDI files")
    parser.add_argument("--out", type=Path, required=True, help="where the fine-tuned bundle goes")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time budget (default 10)")
    parser.add_argument("--steps", type=int, default=10_000, help="step cap (default: the clock decides)")
    parser.add_argument("--composer", default="", help="tag the files with one of the base's composers")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=None, help="crop length (default: the base's)")
    parser.add_argument("--eval-every", type=int, default=20, help="steps between validations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    args = parser.parse_args()

    def work() -> dict:
        result = finetune(args.base, args.data, args.out, minutes=args.minutes, steps=args.steps,
                          composer=args.composer, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
                          eval_every=args.eval_every, seed=args.seed, threads=args.threads, progress=not args.json)
        kept = "" if result.improved else " (no step beat the base: the bundle keeps its weights)"
        print(f"validation bits per note: before {result.before:.3f}, after {result.after:.3f}{kept}")
        print(f"wrote {result.out} ({result.steps} steps, {result.minutes:.1f} min)")
        listed = result.out.parent.resolve() == FINETUNED.resolve()
        print("open it in the app: python app.py (it lists runs/finetuned/)" if listed
              else f"open it in the app: COMAGEN_CHECKPOINTS={result.out.parent} python app.py")
        return result.to_dict()

    return run_for_user(work, as_json=args.json, interrupted="interrupted: nothing was written to --out")


if __name__ == "__main__":
    sys.exit(main())
