"""What the page offers to choose from: the checkpoints (each loaded once, on first use) and the
prompt gallery (the shipped prompts, then MAESTRO when configured).

The folders default to the app's own (`studio.assets`); the environment adds more.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comagen.bundle.checkpoint import FILES, Bundle, load_bundle
from comagen.bundle.pianoroll import FrameBundle, frame_bundle, is_pianoroll_bundle
from comagen.errors import CheckpointError, ComagenError
from comagen.generation.settings import TUNED, bundle_settings
from comagen.training.data import load_index
from studio.assets import CHECKPOINTS_DIR, PROMPTS_DIR
from studio.limits import MAX_SCALES, scales_of

NOTHING = "(start from nothing)"
CLOSENESS_WARNING = 0.5  # a mean closeness to the pianist below this is said in the model menu
CLOSENESS_KEY = "continuation_closeness"  # config.json summary: test-split mean of bench/continuation.py
ROLE_KEY = "menu_role"  # config.json summary: what the checkpoint is for, in a few words


# ------------------------------------------------------------------------------ checkpoints


def find_checkpoints(root: Path = CHECKPOINTS_DIR, extra: str | None = None,
                     more: Sequence[Path] = ()) -> dict[str, Path]:
    """Name -> folder of every complete bundle under `root`, plus `extra` (COMAGEN_CHECKPOINT) and the
    bundles inside (or at) each folder of `more` (COMAGEN_CHECKPOINTS, the fine-tuned runs folder);
    a name already taken is shown as the bundle's path, so no two bundles share one."""
    found: dict[str, Path] = {}
    if extra:
        path = Path(extra)
        found[path.name if path.parent.resolve() == root.resolve() else str(path)] = path
    for folder in _bundles_in(root):
        found.setdefault(folder.name, folder)
    seen = {p.resolve() for p in found.values()}
    for where in more:
        for folder in [where] if is_bundle(where) else _bundles_in(where):
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                found[str(folder) if folder.name in found else folder.name] = folder
    return found


def is_bundle(folder: Path) -> bool:
    """A folder holding every file a bundle needs, or a piano-roll bundle (whether they load is
    checked when it is picked)."""
    return all((folder / f).is_file() for f in FILES) or (
        (folder / "model.safetensors").is_file() and is_pianoroll_bundle(folder))


def _bundles_in(folder: Path) -> list[Path]:
    """The complete bundles directly inside `folder`, sorted; hidden ones (a run's temp folder) skipped."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and is_bundle(p)]


def env_checkpoint_folders() -> list[Path]:
    """COMAGEN_CHECKPOINTS: folders (separated like PATH) that hold bundles, or are bundles."""
    return [Path(p) for p in os.environ.get("COMAGEN_CHECKPOINTS", "").split(os.pathsep) if p]


def env_settings() -> tuple[str | None, str | None]:
    """COMAGEN_CHECKPOINT and COMAGEN_MAESTRO_DIR, as the app reads them."""
    return os.environ.get("COMAGEN_CHECKPOINT"), os.environ.get("COMAGEN_MAESTRO_DIR")


class Checkpoints:
    """Loaded bundles by name, each loaded once on first use (the default at start-up)."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self._loaded: dict[str, Bundle] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.folders)

    @property
    def choices(self) -> list[tuple[str, str]]:
        """The model menu: (label, name) per checkpoint, a label saying so when the model plays far from the pianist."""
        return [(menu_label(name, folder), name) for name, folder in self.folders.items()]

    def get(self, name: str) -> Bundle:
        if name not in self.folders:
            raise CheckpointError(f"unknown checkpoint {name!r}; choose one of {', '.join(self.folders) or 'none'}")
        with self._lock:
            if name not in self._loaded:
                folder = self.folders[name]
                self._loaded[name] = frame_bundle(folder) if is_pianoroll_bundle(folder) else load_bundle(folder)
            return self._loaded[name]


FRAME_READS = ("temperature", "top_k", "top_p")  # the tuned settings a piano-roll model reads (`FrameSession`)


def hidden_settings(bundle: Bundle) -> frozenset[str]:
    """The tuned sampling settings whose controls mean nothing for `bundle` and are hidden for it: for
    the piano-roll model min-p and the leans (keep to the prompt), which act on tokens."""
    if isinstance(bundle, FrameBundle):
        return frozenset(TUNED) - set(FRAME_READS)
    return frozenset()


def needs_tokens(bundle: Bundle, what: str) -> None:
    """One line refusing `what` (the infill, the duet) for the piano-roll model, which writes frames."""
    if isinstance(bundle, FrameBundle):
        raise ComagenError(f"{what} needs a token model; {bundle.name} is the piano-roll model: "
                           "pick another checkpoint for it")


def menu_label(name: str, folder: Path) -> str:
    """A checkpoint's menu entry: its name, its role and its measured closeness to the pianist when its
    config.json summary has them (read without loading the model), said plainly below CLOSENESS_WARNING."""
    try:
        summary = json.loads((folder / "config.json").read_text()).get("summary", {})
        role, closeness = summary.get(ROLE_KEY), float(summary[CLOSENESS_KEY])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return name
    label = f"{name}: {role}" if isinstance(role, str) and role else name
    if closeness < CLOSENESS_WARNING:
        return f"{label} (plays less like the pianist: closeness {closeness:.2f})"
    return f"{label} (closeness to the pianist {closeness:.2f})"


def window_sliders(bundle: Bundle) -> list[dict]:
    """Settings of the MAX_SCALES window sliders for a checkpoint (hidden beyond its scales), each at the
    checkpoint's streaming window (its sampling.json's, else the trained one)."""
    cfg = bundle.config
    windows = scales_of(bundle)
    start = (list(bundle_settings(bundle).windows) if windows else []) or windows
    out = []
    for i in range(MAX_SCALES):
        if i < len(windows):
            out.append({"visible": True, "value": start[i], "maximum": cfg.window_cap,
                        "label": f"window, scale {i + 1} (trained {windows[i]} tokens)"})
        else:
            out.append({"visible": False})
    return out


def describe_checkpoint(bundle: Bundle) -> str:
    """One line about the loaded model, for the page header."""
    cfg, summary = bundle.config, bundle.summary
    size = sum(p.numel() for p in bundle.model.parameters()) / 1e6
    scales = f", windows {'/'.join(map(str, cfg.windows))}" if cfg.arch == "conformer" else ""
    score, frames = summary.get("best_val_bits_per_note"), summary.get("best_val_nats_per_frame")
    measured = f", {score:.2f} bits/note on validation" if isinstance(score, float) else \
        f", {frames:.2f} nats/frame on validation" if isinstance(frames, float) else ""
    return f"**{bundle.name}**: {cfg.arch}, {size:.1f}M parameters{scales}, " \
           f"{len(bundle.composers) - 1} composers{measured}"


# ------------------------------------------------------------------------------ gallery


@dataclass(frozen=True)
class GalleryItem:
    label: str
    path: Path | None


def shipped_prompts(folder: Path = PROMPTS_DIR) -> list[GalleryItem]:
    """The project's prompts, named from the table in their README (file stem otherwise)."""
    names: dict[str, str] = {}
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith(".mid`"):
                names[cells[0].strip("`")] = f"{cells[2]}: {cells[1]}"
    return [GalleryItem(names.get(p.name, p.stem.replace("_", " ").capitalize()), p)
            for p in sorted(folder.glob("*.mid"))]


def maestro_prompts(folder: str | Path) -> list[GalleryItem]:
    """MAESTRO pieces by composer and title, test split first (the pieces no model trained on)."""
    order = {"test": 0, "validation": 1, "train": 2}
    pieces = sorted(load_index(folder), key=lambda p: (order.get(p.split, 3), p.composer, p.title, p.path.name))
    items, seen = [], set()
    for p in pieces:
        base = f"MAESTRO {p.split}: {p.composer + ', ' if p.composer else ''}{p.title} ({p.path.parent.name})"
        label, n = base, 1
        while label in seen:
            n += 1
            label = f"{base} #{n}"
        seen.add(label)
        items.append(GalleryItem(label, p.path))
    return items


def build_gallery(prompts_dir: Path = PROMPTS_DIR, maestro_dir: str | None = None) -> dict[str, GalleryItem]:
    """Label -> item: start from nothing, the shipped prompts, then MAESTRO when configured."""
    items = [GalleryItem(NOTHING, None), *shipped_prompts(prompts_dir)]
    if maestro_dir:
        items += maestro_prompts(maestro_dir)
    return {item.label: item for item in items}
