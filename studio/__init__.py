"""What the Gradio app does, without Gradio: checkpoints, the prompt gallery, generation jobs that
stream snapshots, Continue/Undo history, result rendering, upload checks and limits.

`app.py` only lays out components and forwards events here, so every behaviour a user sees can be
tested without a browser. A generation runs on its own thread (`Job`): torch's inference mode is
per thread, and Gradio resumes a streaming generator on whichever worker thread is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import symusic
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from comagen.bundle.checkpoint import FILES, Bundle, load_bundle
from comagen.errors import CheckpointError, ComagenError, ConfigError, MidiError, MidiTooLongError, NotMidiError
from comagen.generation.generate import (
    Progress,
    Prompt,
    Request,
    Session,
    capture_attention,
    load_prompt,
    prompt_from_ids,
)
from comagen.generation.settings import Settings
from comagen.music.midi import midi_bytes
from comagen.render.attention_figure import attention_figure
from comagen.render.audio import render_wav
from comagen.render.pianoroll import BLACK_KEYS, CONTINUATION_COLOUR, PROMPT_COLOUR, piano_roll_figure
from comagen.training.data import load_index

log = logging.getLogger("comagen.studio")
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = ROOT / "assets" / "checkpoints"
PROMPTS_DIR = ROOT / "assets" / "prompts"
OUT_ROOT = Path(tempfile.gettempdir()) / "comagen-app"  # audio/MIDI files the page links to

NOTHING = "(start from nothing)"
UPLOAD_MAX_BYTES = 2 * 1024 * 1024  # MAESTRO performances are all well under 1 MB
PROMPT_MAX_SECONDS = 60.0
MAX_SECONDS = 300  # longest continuation one request may ask for (the CLI allows 600)
TOKEN_CAP = 30000  # per variation and request: ~300 s of dense piano
CONTEXT_CAP = 60000  # prompt + continuations a Continue may build on
PROMPT_MAX_TOKENS = 12000  # an upload's kept seconds denser than this (thousands of notes a second) are refused
MAX_VARIATIONS = 4
MAX_SCALES = 4  # window sliders the page has room for
TEXT_INTERVAL = 0.25  # token text refresh (s)
ROLL_MIN_INTERVAL = 0.5  # live piano roll: at most 2 redraws a second ...
ROLL_COST_FACTOR = 4.0  # ... and drawing may take at most a quarter of the wall time
TEXT_TAIL = 500  # tokens of text shown live (the page stays light on long pieces)
LIVE_ROLL_TOKENS = 3000  # past this much new music the live roll shows a recent window of about as many tokens
OUT_MAX_AGE = 3600.0  # result and upload files older than this are removed (COMAGEN_OUT_MAX_AGE overrides)
OUT_MIN_AGE = 2.0  # the smallest COMAGEN_OUT_MAX_AGE (a file must outlive its own download)
NAME_MAX = 80  # characters of an upload's name kept in result file names (a file name has 255 bytes)
LIVE_WIDTH = 1000  # pixels across the live piano roll
PROMPT_RGB = np.array(to_rgb(PROMPT_COLOUR)) * 255
CONTINUATION_RGB = np.array(to_rgb(CONTINUATION_COLOUR)) * 255


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
    """A folder holding every file a bundle needs (whether they load is checked when it is picked)."""
    return all((folder / f).is_file() for f in FILES)


def _bundles_in(folder: Path) -> list[Path]:
    """The complete bundles directly inside `folder`, sorted; hidden ones (a run's temp folder) skipped."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and is_bundle(p)]


def env_checkpoint_folders() -> list[Path]:
    """COMAGEN_CHECKPOINTS: folders (separated like PATH) that hold bundles, or are bundles."""
    return [Path(p) for p in os.environ.get("COMAGEN_CHECKPOINTS", "").split(os.pathsep) if p]


class Checkpoints:
    """Loaded bundles by name, each loaded once on first use (the default at start-up)."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self._loaded: dict[str, Bundle] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.folders)

    def get(self, name: str) -> Bundle:
        if name not in self.folders:
            raise CheckpointError(f"unknown checkpoint {name!r}; choose one of {', '.join(self.folders) or 'none'}")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_bundle(self.folders[name])
            return self._loaded[name]


def scales_of(bundle: Bundle) -> list[int]:
    """The trained window of each attention scale (none for a model without multi-scale attention)."""
    return list(bundle.config.windows) if bundle.config.arch == "conformer" else []


def window_sliders(bundle: Bundle) -> list[dict]:
    """Settings of the MAX_SCALES window sliders for a checkpoint (hidden beyond its scales)."""
    cfg = bundle.config
    windows = scales_of(bundle)
    out = []
    for i in range(MAX_SCALES):
        if i < len(windows):
            out.append({"visible": True, "value": windows[i], "maximum": cfg.window_cap,
                        "label": f"window, scale {i + 1} (trained {windows[i]} tokens)"})
        else:
            out.append({"visible": False})
    return out


def describe_checkpoint(bundle: Bundle) -> str:
    """One line about the loaded model, for the page header."""
    cfg, summary = bundle.config, bundle.summary
    size = sum(p.numel() for p in bundle.model.parameters()) / 1e6
    scales = f", windows {'/'.join(map(str, cfg.windows))}" if cfg.arch == "conformer" else ""
    score = summary.get("best_val_bits_per_note")
    measured = f", {score:.2f} bits/note on validation" if isinstance(score, float) else ""
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


# ------------------------------------------------------------------------------ prompts


def read_upload(path: str | Path) -> bytes:
    """The bytes of an uploaded file, refusing oversized and non-MIDI names before parsing."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:  # removed by the cache cleaner while the request waited in the queue
        raise MidiError(f"{path.name}: the uploaded file is no longer on the server; upload it again") from None
    if size > UPLOAD_MAX_BYTES:
        raise MidiTooLongError(f"{path.name}: {size / 1e6:.1f} MB is over the "
                               f"{UPLOAD_MAX_BYTES / 1e6:.0f} MB upload limit")
    if path.suffix.lower() not in (".mid", ".midi"):
        raise NotMidiError(f"{path.name}: not a .mid or .midi file")
    return path.read_bytes()


def resolve_prompt(bundle: Bundle, upload: str | Path | None, gallery: dict[str, GalleryItem], choice: str | None,
                   keep_seconds: float) -> tuple[Prompt, str]:
    """The prompt (an upload wins over the gallery) and a short name for it; MidiError if unusable."""
    keep = float(keep_seconds)
    if not math.isfinite(keep) or keep <= 0:
        raise ComagenError(f"keep_seconds must be between 1 and {PROMPT_MAX_SECONDS:.0f}")
    keep = min(keep, PROMPT_MAX_SECONDS)
    if upload:
        name = Path(upload).name  # only the last part: a client's file name never becomes a path here
        try:
            prompt = load_prompt(bundle.tokenizer, read_upload(upload), keep)
        except ComagenError as exc:
            message = str(exc)
            raise type(exc)(message.replace("upload:", f"{name}:", 1) if message.startswith("upload:")
                            else message) from None
        if len(prompt.ids) > PROMPT_MAX_TOKENS:
            raise MidiTooLongError(f"{name}: its first {prompt.seconds:.0f} s make {len(prompt.ids)} tokens, over the "
                                   f"app's {PROMPT_MAX_TOKENS}-token prompt limit (too many notes at once); keep "
                                   "fewer seconds or upload a sparser piece")
        return prompt, Path(name).stem
    item = gallery.get(choice or NOTHING)
    if item is None:
        raise ComagenError(f"unknown gallery prompt {choice!r}")
    if item.path is None:
        return Prompt.empty(), "nothing"
    return load_prompt(bundle.tokenizer, item.path, keep), item.path.stem


def prompt_after(bundle: Bundle, ids: list[int]) -> Prompt:
    """A prompt of `ids` (EOS dropped) whose continuation starts on the bar after its last onset."""
    return prompt_from_ids(bundle.tokenizer, ids)


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class AppLimits:
    """The app's own caps on top of `Settings`' ranges: what one request of a shared server may cost."""

    max_seconds: int = MAX_SECONDS
    max_variations: int = MAX_VARIATIONS
    token_cap: int = TOKEN_CAP
    max_scales: int = MAX_SCALES


LIMITS = AppLimits()


def app_request(bundle: Bundle, settings: Settings, random_seed: bool = True, limits: AppLimits = LIMITS) -> Request:
    """A request within the app's limits; the seed is drawn here when random is on, and only the
    checkpoint's scales are read from the page's window sliders (the model checks their values)."""
    if not 1 <= settings.seconds <= limits.max_seconds:
        raise ComagenError(f"length must be between 1 and {limits.max_seconds} seconds")
    if not 1 <= int(settings.variations) <= limits.max_variations:
        raise ComagenError(f"variations must be between 1 and {limits.max_variations}")
    seed = random.randrange(2**31) if random_seed else int(settings.seed)
    trained = scales_of(bundle)
    settings = replace(settings, windows=tuple(settings.windows[:len(trained)]))
    return settings.request(bundle.composers, trained, max_tokens=limits.token_cap, seed=seed)


# ------------------------------------------------------------------------------ jobs


class Job:
    """A `Session` sampling on its own thread; read `generated()` any time, `stop()` keeps what exists."""

    def __init__(self, bundle: Bundle, prompt: Prompt, request: Request) -> None:
        self.session = Session(bundle, prompt, request)
        self.error: str | None = None
        self.first_token_at: float | None = None
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name="comagen-job")
        self._thread.start()

    def _run(self) -> None:
        try:
            for _ in self.session:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter() - self.started
        except ComagenError as exc:
            log.info("generation refused: %s", exc)
            self.error = str(exc)
        except Exception as exc:  # a bug must end the job with a message, not hang the page
            log.exception("generation failed")  # the traceback goes to the server log
            self.error = f"generation failed: {type(exc).__name__}: {exc}"

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done

    def stop(self) -> None:
        self.session.stop()

    def snapshot(self, tail: int | None = None) -> Progress:
        return self.session.snapshot(tail)

    def generated(self) -> list[list[int]]:
        return [list(r) for r in self.session.snapshot().rows]


class Registry:
    """The running job of each browser session, so a Stop click reaches the right one."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def put(self, key: str, job: Job) -> None:
        with self._lock:
            self._jobs[key] = job

    def drop(self, key: str, job: Job) -> None:
        with self._lock:
            if self._jobs.get(key) is job:
                del self._jobs[key]

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def stop(self, key: str) -> bool:
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job.stop()
        return job is not None


# ------------------------------------------------------------------------------ results


@dataclass
class Take:
    """One generation kept in the history: its prompt, each variation's new ids, and how it was made."""

    prompt: Prompt
    rows: list[list[int]]
    seed: int
    composer: int
    windows: list[int] | None
    name: str
    stats: dict = field(default_factory=dict)
    span: tuple[float, float] | None = None  # an infilled stretch (seconds), drawn in its own colour


@dataclass
class Rendered:
    """What the page shows for one variation."""

    roll: np.ndarray
    attention: np.ndarray | None
    wav: Path | None
    midi: Path
    note: str = ""


@dataclass
class Frame:
    """One streamed update: token text per variation, live rolls when redrawn, and the end state."""

    texts: list[str]
    status: str
    rolls: list[np.ndarray] | None = None
    take: Take | None = None
    results: list[Rendered] | None = None
    stats: str = ""
    first_token_s: float | None = None


def figure_array(fig: Figure) -> np.ndarray:
    """RGB pixels of a figure (drawn here, so the caller can time the whole cost)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def token_text(bundle: Bundle, ids: list[int], total: int | None = None) -> str:
    """Token names, one bar per line, of the last TEXT_TAIL tokens (`ids` may be the last of `total`)."""
    shown = ids[max(len(ids) - TEXT_TAIL, 0):]
    skipped = (len(ids) if total is None else total) - len(shown)
    words = [bundle.tokenizer.token_text(t) for t in shown]
    text = " ".join(words).replace(" Bar_None", "\nBar_None")
    return (f"... ({skipped} earlier tokens)\n" if skipped else "") + text


def live_roll(score: symusic.Score, split_seconds: float | None, width: int = LIVE_WIDTH,
              row_px: int = 4) -> np.ndarray:
    """A quick raster piano roll for streaming (milliseconds, where a matplotlib figure takes a
    large share of a second on a busy CPU): prompt blue, continuation orange, paler = softer."""
    columns = [t.notes.numpy() for t in score.to("second").tracks if len(t.notes)]
    notes = {k: np.concatenate([c[k] for c in columns]) for k in columns[0]} if columns else None
    low, high = (int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 2) if notes else (48, 72)
    end = max(float((notes["time"] + notes["duration"]).max()) if notes else 0.0, split_seconds or 0.0, 1.0)
    rows = high - low + 1
    image = np.full((rows, width, 3), 255, np.uint8)
    image[[(p - low) for p in range(low, high + 1) if p % 12 in BLACK_KEYS]] = 236
    scale = (width - 1) / (end * 1.02)
    if split_seconds is not None:
        image[:, int(split_seconds * scale)] = 40
    if notes:
        for t, d, p, v in zip(notes["time"], notes["duration"], notes["pitch"], notes["velocity"], strict=True):
            colour = PROMPT_RGB if split_seconds is None or t < split_seconds else CONTINUATION_RGB
            shade = 0.3 + 0.7 * min(int(v), 127) / 127
            x0 = int(t * scale)
            image[high - p, x0:max(int((t + d) * scale), x0 + 1)] = 255 - shade * (255 - colour)
    return np.repeat(image, row_px, axis=0)


def live_piece_roll(bundle: Bundle, prompt: Prompt, ids: list[int], total: int | None = None) -> np.ndarray:
    """The live roll of a running piece: all of it while prompt and new music (`total` tokens, of
    which `ids` are the last) are under LIVE_ROLL_TOKENS, then only the bars in the last
    LIVE_ROLL_TOKENS tokens, so a redraw costs the same at any length (a Continue's long prompt too)."""
    total = len(ids) if total is None else total
    if len(prompt.ids) + total <= LIVE_ROLL_TOKENS:
        return live_roll(bundle.tokenizer.decode_ids(prompt.ids + ids), prompt.seconds if prompt.ids else None)
    new = ids[-LIVE_ROLL_TOKENS:]
    window = prompt.ids[len(prompt.ids) - min(LIVE_ROLL_TOKENS - len(new), len(prompt.ids)):] + new
    bar = bundle.tokenizer.bar_id  # a bar line, where decoding can start afresh
    cut = window.index(bar) if bar in window else 0
    old = window[cut:len(window) - len(new)]  # what is left of the prompt in the window
    split = prompt_after(bundle, old).seconds if old else 0.0
    return live_roll(bundle.tokenizer.decode_ids(window[cut:]), split)


def out_max_age_from_env() -> float:
    """COMAGEN_OUT_MAX_AGE (seconds a result or upload file lives), OUT_MAX_AGE when unset."""
    raw = os.environ.get("COMAGEN_OUT_MAX_AGE", "").strip()
    if not raw:
        return OUT_MAX_AGE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < OUT_MIN_AGE:
        raise ConfigError(f"COMAGEN_OUT_MAX_AGE={raw!r}: must be a number of seconds, at least {OUT_MIN_AGE:.0f}")
    return value


def clean_interval(max_age: float) -> float:
    """Longest sleep of the cleaner between sweeps: a twentieth of the age, 1 to 60 s."""
    return min(max(max_age / 20, 1.0), 60.0)


def clean_out_dir(max_age: float | None = None, roots: list[Path] | None = None) -> float | None:
    """Remove every file under `roots` (default OUT_ROOT) once it is `max_age` old, and folders left
    empty as long; return when (epoch seconds) the next file expires, None when none is left.

    A file's age counts from its ctime, when it appeared in this folder: gradio copies results
    with their original mtime, and a copy must not expire before its first download."""
    max_age = OUT_MAX_AGE if max_age is None else max_age
    next_expiry = None
    for root in roots if roots is not None else [OUT_ROOT]:
        if not root.is_dir():
            continue
        for folder, _, files in os.walk(root, topdown=False):
            for name in files:
                path = Path(folder) / name
                try:
                    expiry = path.lstat().st_ctime + max_age
                    if expiry <= time.time():
                        path.unlink()
                        continue
                except FileNotFoundError:  # removed meanwhile (a download finished, another sweep)
                    continue
                next_expiry = expiry if next_expiry is None else min(next_expiry, expiry)
            here = Path(folder)
            try:
                if here != root and here.lstat().st_ctime + max_age <= time.time() and not any(here.iterdir()):
                    here.rmdir()
            except OSError:  # filled or removed meanwhile
                continue
    return next_expiry


def start_cleaner(max_age: float | None = None, roots: list[Path] | None = None,
                  stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread that removes each upload and result file as soon as it is `max_age` old.

    `new_out_dir` alone only cleans when a new result is made, so an idle server would keep the
    last results (and gradio's copies of them) forever; this wakes when the next file expires, and
    at least every `clean_interval` to see new ones. Each sweep also returns freed heap to the OS,
    so a server at rest goes back near its resting RSS after a busy spell. Set `stop` to end it.
    """
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.is_set():
            age = OUT_MAX_AGE if max_age is None else max_age
            try:
                expiry = clean_out_dir(age, roots)
            except OSError:  # a sweep that fails (permissions, a vanished mount) tries again later
                expiry = None
            release_memory()
            wait = clean_interval(age) if expiry is None else expiry - time.time()
            stop.wait(min(max(wait, 0.05), clean_interval(age)))

    thread = threading.Thread(target=loop, daemon=True, name="comagen-cleaner")
    thread.start()
    return thread


def new_out_dir() -> Path:
    """A fresh folder for one result's files; files older than OUT_MAX_AGE are removed."""
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    clean_out_dir()
    return Path(tempfile.mkdtemp(prefix="take-", dir=OUT_ROOT))


def render_take(bundle: Bundle, take: Take, out_dir: Path | None = None) -> list[Rendered]:
    """Piano roll, audio, MIDI and attention figure of every variation of a take."""
    out_dir = out_dir or new_out_dir()
    safe_name = re.sub(r"[^A-Za-z0-9_-]+", "_", take.name)[:NAME_MAX]  # from a client's file name: no path
    results = []
    for i, ids in enumerate(take.rows):
        score = bundle.tokenizer.decode_ids(take.prompt.ids + ids)
        stem = f"comagen_{safe_name}_seed{take.seed}_v{i + 1}"
        midi = out_dir / f"{stem}.mid"
        midi.write_bytes(midi_bytes(score))
        wav, note = _audio(score, out_dir / f"{stem}.wav")
        attention, why = _attention(bundle, take, ids)
        roll = figure_array(piano_roll_figure(score, take.prompt.seconds if take.prompt.ids else None,
                                              f"variation {i + 1}: {score.note_num()} notes", span=take.span))
        results.append(Rendered(roll, attention, wav, midi, " ".join(n for n in (note, why) if n)))
    return results


def _audio(score: symusic.Score, path: Path) -> tuple[Path | None, str]:
    """A WAV preview, or a note saying why there is none (the rest of the page still works)."""
    if not score.note_num():
        return None, "No notes, so no audio."
    try:
        return render_wav(score, path), ""
    except ComagenError as exc:  # AudioUnavailableError, SoundfontNotFoundError
        path.unlink(missing_ok=True)
        return None, f"Audio preview unavailable: {exc}"


def _attention(bundle: Bundle, take: Take, ids: list[int]) -> tuple[np.ndarray | None, str]:
    """The attention figure over the last tokens of a variation (conformer checkpoints only)."""
    sequence = take.prompt.ids + ids
    if bundle.config.arch != "conformer":
        return None, f"The attention view needs a conformer checkpoint (this one is {bundle.config.arch})."
    if len(sequence) < 2:
        return None, ""
    capture = capture_attention(bundle, sequence, take.composer, take.windows, last=24)
    labels = [bundle.tokenizer.token_text(t) for t in sequence[-capture.probs[0][0].shape[-2]:]] \
        if capture.probs else None
    return figure_array(attention_figure(capture, labels)), ""


def stats_markdown(take: Take, stopped: bool) -> str:
    """The numbers under the results: speed, music made, real-time factor, the seed to replay."""
    s = take.stats
    rows = "\n".join(f"| {i + 1} | {n} | {sec:.1f} | {len(ids)} |"
                     for i, (ids, n, sec) in enumerate(zip(take.rows, s.get("row_notes", []),
                                                           s.get("row_seconds", []), strict=False)))
    return (f"**{s.get('tokens_per_s', 0):.1f} tokens/s**, {s.get('music_seconds', 0):.1f} s of music in "
            f"{s.get('seconds_elapsed', 0):.1f} s (real-time factor **{s.get('realtime_factor', 0):.2f}**), "
            f"{s.get('notes', 0)} new notes, seed {take.seed}, runtime {s.get('runtime', 'torch')}"
            f"{' (stopped early)' if stopped else ''}.\n\n"
            f"| variation | notes | seconds of music | tokens |\n|---|---|---|---|\n{rows}")


def _take_stats(progress: Progress) -> dict:
    """The final figures, with each variation's notes and seconds for the results table."""
    return {**progress.stats, "row_notes": list(progress.row_notes), "row_seconds": list(progress.row_seconds)}


def stream(bundle: Bundle, prompt: Prompt, request: Request, name: str, *, registry: Registry | None = None,
           key: str = "", live_rolls: bool = True) -> Iterator[Frame]:
    """Run one generation, yielding a text frame every TEXT_INTERVAL s (with piano rolls at most
    every ROLL_MIN_INTERVAL s, slower when drawing is slow) and a final frame with the results."""
    if len(prompt.ids) + request.max_tokens > CONTEXT_CAP + TOKEN_CAP:
        raise ComagenError(f"the piece has reached {len(prompt.ids)} tokens, the app's limit for Continue; "
                           "press Undo or start a new piece")
    job = Job(bundle, prompt, request)
    if registry is not None:
        registry.put(key, job)
    try:  # a consumer that leaves (the browser closed, gradio closes this generator) stops the job
        last_roll, roll_interval = 0.0, ROLL_MIN_INTERVAL
        while not job.wait(TEXT_INTERVAL):
            progress = job.snapshot(tail=max(TEXT_TAIL, LIVE_ROLL_TOKENS))
            rows, stats, totals = [list(r) for r in progress.rows], progress.stats, progress.lengths
            frame = Frame([token_text(bundle, ids, n) for ids, n in zip(rows, totals, strict=True)],
                          f"Generating: {stats['tokens']} tokens, {stats['music_seconds']:.1f} of "
                          f"{request.seconds:.0f} s of music, {stats['tokens_per_s']:.0f} tokens/s",
                          first_token_s=job.first_token_at)
            if live_rolls and time.perf_counter() - last_roll >= roll_interval and any(rows):
                t0 = time.perf_counter()
                frame.rolls = [live_piece_roll(bundle, prompt, ids, n) for ids, n in zip(rows, totals, strict=True)]
                last_roll = time.perf_counter()
                roll_interval = max(ROLL_MIN_INTERVAL, ROLL_COST_FACTOR * (last_roll - t0))
            yield frame
    finally:
        if not job.done:  # closed mid-stream: no one will read the rest, so stop sampling now
            job.stop()
        if registry is not None:
            registry.drop(key, job)
    if job.error:
        raise ComagenError(job.error)
    progress = job.snapshot()
    rows = [list(r) for r in progress.rows]
    take = Take(prompt, rows, request.seed, request.composer, request.windows, name, _take_stats(progress))
    stopped = progress.stopped
    yield Frame([token_text(bundle, ids) for ids in rows], "Rendering audio and figures ...",
                first_token_s=job.first_token_at)
    results = render_take(bundle, take)
    release_memory()
    yield Frame([token_text(bundle, ids) for ids in rows], "Stopped; kept what was generated." if stopped
                else "Done.", [r.roll for r in results], take, results, stats_markdown(take, stopped),
                job.first_token_at)


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """Give freed heap pages back to the OS. glibc keeps what a thread freed in that thread's
    arena, and every generation runs on a new thread, so without this a server's RSS climbs
    towards the sum of its arenas' peaks instead of returning to its resting size."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def continue_prompt(bundle: Bundle, history: list[Take], variation: int) -> tuple[Prompt, str]:
    """The prompt for Continue: the last take's prompt plus the chosen variation's new tokens."""
    if not history:
        raise ComagenError("nothing to continue yet: generate first")
    last = history[-1]
    variation = min(max(int(variation), 0), len(last.rows) - 1)
    return prompt_after(bundle, last.prompt.ids + last.rows[variation]), last.name


def env_settings() -> tuple[str | None, str | None]:
    """COMAGEN_CHECKPOINT and COMAGEN_MAESTRO_DIR, as the app reads them."""
    return os.environ.get("COMAGEN_CHECKPOINT"), os.environ.get("COMAGEN_MAESTRO_DIR")
