"""The README's table of sampling defaults is the code's: the global `Settings` and each shipped
checkpoint's tuned `sampling.json`, read through the same function the CLI and the app use."""

from __future__ import annotations

from pathlib import Path

import pytest

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.settings import TUNABLE, Settings, bundle_settings

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"temperature": "temperature", "top-k": "top_k", "top-p": "top_p", "min-p": "min_p", "key": "key_strength",
           "register": "register_strength", "dynamics": "dynamics_strength", "pace": "density_strength",
           "pitch T": "pitch_temperature", "velocity T": "velocity_temperature",
           "duration T": "duration_temperature", "timing T": "timing_temperature"}
GLOBAL = "global (a bundle without sampling.json)"


def readme_table() -> dict[str, dict[str, float]]:
    """The rows of the README's defaults table (between its two marker comments), by first cell."""
    text = (ROOT / "README.md").read_text()
    body = text.split("<!-- sampling-defaults -->")[1].split("<!-- /sampling-defaults -->")[0]
    lines = [line.strip().strip("|").split("|") for line in body.strip().splitlines()]
    header = [c.strip() for c in lines[0]]
    return {cells[0].strip().strip("`"): {h: c.strip() if h == "windows" else float(c)
                                          for h, c in zip(header[1:], cells[1:], strict=True)}
            for cells in lines[2:]}


def test_the_readme_table_covers_every_sampling_setting() -> None:
    assert sorted([*COLUMNS.values(), "windows"]) == sorted(TUNABLE)


@pytest.mark.parametrize("name", [GLOBAL, *sorted(p.name for p in (ROOT / "assets" / "checkpoints").iterdir()
                                                    if (p / "tokenizer.json").exists())])  # token bundles
def test_the_readme_states_each_checkpoints_tuned_defaults(name: str) -> None:
    table = readme_table()
    assert name in table, f"README's sampling defaults table has no row for {name}"
    settings = Settings() if name == GLOBAL else bundle_settings(load_bundle(ROOT / "assets" / "checkpoints" / name))
    windows = "/".join(map(str, settings.windows)) or "as trained"
    assert table[name] == {**{column: pytest.approx(float(getattr(settings, field)))
                              for column, field in COLUMNS.items()}, "windows": windows}
