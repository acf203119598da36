"""How benchmarks and evaluations print: an aligned table for people, one JSON object for scripts."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a plain aligned text table (floats to 3 significant decimals)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    table = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(t, widths, strict=True)) for t in table]
    return "\n".join(lines)


def emit(title: str, rows: Sequence[dict], summary: dict, *, as_json: bool) -> None:
    """Print the table (and summary) for people; with `as_json`, end with exactly one JSON line."""
    print(f"# {title}")
    print(format_table(rows))
    for key, value in summary.items():
        print(f"{key}: {value}")
    if as_json:
        print(json.dumps({"title": title, "rows": list(rows), **summary}))


def add_data_options(parser: argparse.ArgumentParser, root: Path) -> None:
    """--data (MAESTRO: $COMAGEN_MAESTRO_DIR, else ../shared/data/maestro beside the repo `root`) and
    --cache (the token cache), as every bench that reads MAESTRO takes them."""
    default = os.environ.get("COMAGEN_MAESTRO_DIR", root.parent / "shared" / "data" / "maestro")
    parser.add_argument("--data", type=Path, default=Path(default), help="MAESTRO folder")
    parser.add_argument("--cache", type=Path, default=root / "cache", help="token cache folder")
