"""Where the app's own files are: the checkpoints and prompts it ships, the soundfonts it downloads and
the fine-tuned runs it lists. `studio` is the app's package, beside `app.py` in a source checkout, so
these are found from here; the library (`comagen`) is told its folders and never looks them up itself."""

from __future__ import annotations

from pathlib import Path

APP_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = APP_ROOT / "assets" / "checkpoints"
PROMPTS_DIR = APP_ROOT / "assets" / "prompts"
SOUNDFONTS_DIR = APP_ROOT / "soundfonts"
FINETUNED_DIR = APP_ROOT / "runs" / "finetuned"  # where training/finetune.py suggests its bundles go
