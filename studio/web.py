"""The files the page's live sound needs, served by the app itself (nothing comes from another host):
our own scripts (`studio/browser/static`), the synth library the set-up script installs from the
lock file (`studio/browser/node_modules`, js-synthesizer: FluidSynth compiled to WebAssembly, chosen
by bench/browser_synth.py) and a small General MIDI soundfont for the page (pretty_midi's
TimGM6mb.sf2, 6 MB, always there with a pip install; the server renders with its own, larger one).

COMAGEN_WEB_DIR points at another such folder (the tests point it at an empty one: no live sound,
said once, and everything else works); COMAGEN_LIVE_SOUND=off leaves the scripts out of the page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from comagen.render.soundfont import pretty_midi_soundfont

PREFIX = "/comagen/web"
DEFAULT_DIR = Path(__file__).resolve().parent / "browser"
ENGINES = ("fluid", "spessa")  # js-synthesizer, spessasynth_lib: the app plays through the first
# What each engine loads in the page's main thread (more is fetched by its worklet), under lib/.
ENGINE_SCRIPTS = {"fluid": ["js-synthesizer/dist/js-synthesizer.min.js"], "spessa": []}
SPESSA_IMPORTS = {"spessasynth_core": "spessasynth_core/dist/index.js", "stb-vorbis": "stb-vorbis/dist/index.js"}


def web_dir() -> Path:
    """The folder with static/ and node_modules/ (COMAGEN_WEB_DIR, else the one beside this file)."""
    return Path(os.environ.get("COMAGEN_WEB_DIR") or DEFAULT_DIR).expanduser()


def live_sound_enabled() -> bool:
    """COMAGEN_LIVE_SOUND: "on" (the default) or "off" (no synth scripts in the page)."""
    return os.environ.get("COMAGEN_LIVE_SOUND", "on").strip().lower() != "off"


def _soundfont(_request: object) -> Response:
    path = pretty_midi_soundfont()
    if path is None:
        return PlainTextResponse("no soundfont for the page: pip install pretty_midi", status_code=404)
    return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": "max-age=86400"})


def _files(folder: Path) -> StaticFiles | Response:
    """The folder's files, or (absent) a 404 that says what is missing."""
    if folder.is_dir():
        return StaticFiles(directory=folder)
    return PlainTextResponse(f"live sound's {folder.name} is not installed (scripts/setup.sh installs it with npm)",
                             status_code=404)


def web_routes(folder: Path | None = None) -> list[BaseRoute]:
    """Static mounts for our scripts and the installed libraries, and the page's soundfont. A missing
    folder serves 404s (the page then says why it has no live sound), never a start-up error."""
    folder = web_dir() if folder is None else folder
    return [Mount(f"{PREFIX}/static", _files(folder / "static")),
            Mount(f"{PREFIX}/lib", _files(folder / "node_modules")),
            Route(f"{PREFIX}/soundfont.sf2", _soundfont)]


def head_html(engine: str = ENGINES[0]) -> str:
    """What gr.Blocks(head=...) gets: the synth's settings and script (empty when live sound is off)."""
    if not live_sound_enabled():
        return ""
    config = {"base": f"{PREFIX}/lib/", "soundfont": f"{PREFIX}/soundfont.sf2", "engine": engine,
              "scripts": ENGINE_SCRIPTS[engine]}
    imports = {name: f"{PREFIX}/lib/{path}" for name, path in SPESSA_IMPORTS.items()}
    import_map = (f'<script type="importmap">{json.dumps({"imports": imports})}</script>'
                  if engine == "spessa" else "")
    return (f"{import_map}<script>window.COMAGEN_WEB = {json.dumps(config)};</script>"
            f'<script src="{PREFIX}/static/synth.js"></script><script src="{PREFIX}/static/live.js"></script>')
