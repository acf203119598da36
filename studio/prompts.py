"""Where a generation starts: an upload (checked before it is parsed), a gallery prompt, or the
last take of the history (Continue)."""

from __future__ import annotations

import math
from pathlib import Path

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError, MidiError, MidiTooLongError, NotMidiError
from comagen.generation.prompt import Prompt, load_prompt, prompt_from_ids
from studio.catalog import NOTHING, GalleryItem
from studio.limits import PROMPT_MAX_SECONDS, PROMPT_MAX_TOKENS, UPLOAD_MAX_BYTES
from studio.take import Take, shown_ids, shown_score


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
        return _uploaded_prompt(bundle, upload, keep)
    item = gallery.get(choice or NOTHING)
    if item is None:
        raise ComagenError(f"unknown gallery prompt {choice!r}")
    if item.path is None:
        return Prompt.empty(), "nothing"
    return load_prompt(bundle.tokenizer, item.path, keep), item.path.stem


def _uploaded_prompt(bundle: Bundle, upload: str | Path, keep: float) -> tuple[Prompt, str]:
    """An upload's first `keep` seconds, its errors naming the file; refused when too dense."""
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


def continue_prompt(bundle: Bundle, history: list[Take], variation: int) -> tuple[Prompt, str]:
    """The prompt for Continue: the last take's prompt plus the chosen variation's new tokens (and the
    score on show, so the new notes are spliced into it)."""
    if not history:
        raise ComagenError("nothing to continue yet: generate first")
    tokenizer = bundle.tokenizer
    prompt = prompt_from_ids(tokenizer, shown_ids(history, variation), shown_score(tokenizer, history, variation))
    return prompt, history[-1].name
