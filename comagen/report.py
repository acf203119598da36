"""How benchmarks and evaluations print: an aligned table for people, one JSON object for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence


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
