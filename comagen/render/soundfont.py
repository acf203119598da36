"""Where the General MIDI soundfont for audio previews comes from.

Soundfont set-up is the most common reason piano-model demos fail to make sound, so the lookup
tries, in order: the ``COMAGEN_SOUNDFONT`` variable, any ``*.sf2`` in the project's soundfonts folder
(``COMAGEN_SOUNDFONT_DIR``, else ``soundfonts/`` in the working directory; app.py sets it to its own),
the usual system General MIDI soundfonts, and finally ``TimGM6mb.sf2`` that ships inside the
``pretty_midi`` wheel (so a pip install alone always finds one).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from comagen.errors import ComagenError

ENV_VAR = "COMAGEN_SOUNDFONT"
DIR_VAR = "COMAGEN_SOUNDFONT_DIR"
# Debian/Ubuntu fluid-soundfont-gm and timgm6mb-soundfont, then Fedora/Arch packaging.
SYSTEM_SOUNDFONTS: tuple[Path, ...] = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)


class SoundfontNotFoundError(ComagenError):
    """No usable soundfont: audio previews cannot be rendered (MIDI still can be)."""


def pretty_midi_soundfont() -> Path | None:
    """The TimGM6mb.sf2 bundled with pretty_midi, found without importing pretty_midi itself."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "TimGM6mb.sf2"
        if candidate.is_file():
            return candidate
    return None


def project_soundfont_dir() -> Path:
    """The project's soundfonts folder: passed in by the environment, not found from this file's place."""
    return Path(os.environ.get(DIR_VAR) or "soundfonts").expanduser()


def find_soundfont(folder: Path | None = None) -> Path:
    """Return the soundfont to render with, following the documented lookup order.

    A ``COMAGEN_SOUNDFONT`` that points nowhere is an error rather than silently skipped,
    because the user asked for that exact file.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise SoundfontNotFoundError(f"{ENV_VAR} points to {path}, which is not a file.")
        return path
    folder = project_soundfont_dir() if folder is None else folder
    shipped = sorted(folder.glob("*.sf2")) if folder.is_dir() else []
    if shipped:
        return shipped[0]
    for path in SYSTEM_SOUNDFONTS:
        if path.is_file():
            return path
    bundled = pretty_midi_soundfont()
    if bundled is not None:
        return bundled
    raise SoundfontNotFoundError(
        "No soundfont found: set COMAGEN_SOUNDFONT to a .sf2 file, put one in soundfonts/, "
        "install a General MIDI soundfont (apt-get install fluid-soundfont-gm) or pip install "
        "pretty_midi, which ships TimGM6mb.sf2."
    )
