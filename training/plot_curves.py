"""Plot learning curves of one or more runs from their TensorBoard logs.

    python training/plot_curves.py --run default=runs/default --run gpt2=runs/gpt2 --out curves.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from comagen.render.curves import curves_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (its tensorboard/ is read)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = {}
    for item in args.run:
        name, _, folder = item.partition("=")
        log = Path(folder) / "tensorboard"
        runs[name] = log if log.is_dir() else Path(folder)
    fig = curves_figure(runs, x="step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
