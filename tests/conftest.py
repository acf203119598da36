"""Shared fixtures: the real MAESTRO folder beside the project, and small real files from it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAESTRO = Path(os.environ.get("COMAGEN_MAESTRO_DIR", ROOT.parent / "shared" / "data" / "maestro"))


def maestro_rows(split: str) -> list[dict]:
    with (MAESTRO / "maestro-v3.0.0.csv").open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


@pytest.fixture(scope="session")
def maestro_dir() -> Path:
    if not (MAESTRO / "maestro-v3.0.0.csv").is_file():
        pytest.fail(f"MAESTRO not found at {MAESTRO}; set COMAGEN_MAESTRO_DIR")
    return MAESTRO


@pytest.fixture(scope="session")
def validation_files(maestro_dir: Path) -> list[Path]:
    """A few short validation performances (shortest first keeps the suite fast)."""
    rows = sorted(maestro_rows("validation"), key=lambda r: float(r["duration"]))
    return [maestro_dir / r["midi_filename"] for r in rows[:6]]


@pytest.fixture(scope="session")
def train_file(maestro_dir: Path) -> Path:
    rows = sorted(maestro_rows("train"), key=lambda r: float(r["duration"]))
    return maestro_dir / rows[len(rows) // 4]["midi_filename"]
