"""What the page shows of a piece: token text, the live piano roll while it streams, and each
variation's finished results (piano roll, audio, MIDI, attention figure) and numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
from matplotlib.figure import Figure

from comagen.bundle.checkpoint import Bundle
from comagen.bundle.pianoroll import FrameBundle
from comagen.errors import ComagenError
from comagen.generation.attention import capture_attention, capture_frame_attention
from comagen.generation.prompt import Prompt, prompt_from_ids
from comagen.music.midi import midi_bytes
from comagen.music.preview import preview
from comagen.render.attention_figure import attention_figure, head_figure
from comagen.render.audio import PLAYER_SUFFIX, render_files
from comagen.render.pianoroll import piano_roll_figure, piano_roll_image
from studio.outfiles import new_out_dir
from studio.take import Take, take_score

TEXT_TAIL = 500  # tokens of text shown live (the page stays light on long pieces)
LIVE_ROLL_TOKENS = 3000  # past this much new music the live roll shows a recent window of about as many tokens
LIVE_WIDTH = 1000  # pixels across the live piano roll
LIVE_ROW_PX = 4  # pixels a key on the live piano roll
NAME_MAX = 80  # characters of an upload's name kept in result file names (a file name has 255 bytes)


@dataclass
class Rendered:
    """What the page shows for one variation."""

    roll: np.ndarray
    attention: np.ndarray | None
    wav: Path | None  # the download
    player: Path | None  # the same audio, compressed, for the page's player (a tenth of the WAV)
    midi: Path
    note: str = ""


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


def live_roll(score: symusic.Score, split_seconds: float | None) -> np.ndarray:
    """The streaming piano roll: the figure's layout as a raster, LIVE_WIDTH pixels across."""
    return piano_roll_image(score, split_seconds, width=LIVE_WIDTH, row_px=LIVE_ROW_PX)


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
    split = prompt_from_ids(bundle.tokenizer, old).seconds if old else 0.0
    return live_roll(bundle.tokenizer.decode_ids(window[cut:]), split)


def render_take(bundle: Bundle, take: Take, out_dir: Path | None = None) -> list[Rendered]:
    """Piano roll, audio, MIDI and attention figure of every variation of a take. The MIDI is the
    user's file as spliced, whole; the roll and audio stop where the piece's music ends (`preview`)."""
    out_dir = out_dir or new_out_dir()
    safe_name = re.sub(r"[^A-Za-z0-9_-]+", "_", take.name)[:NAME_MAX]  # from a client's file name: no path
    results = []
    for i, ids in enumerate(take.rows):
        score = take_score(bundle.tokenizer, take, i)  # the user's file spliced, when the piece has one
        stem = f"comagen_{safe_name}_seed{take.seed}_v{i + 1}"
        midi = out_dir / f"{stem}.mid"
        midi.write_bytes(midi_bytes(score))
        shown = preview(bundle.tokenizer, score, take.prompt.ids + ids)  # heard and drawn until the music ends
        wav, player, note = _audio(shown, out_dir / f"{stem}.wav")
        attention, why = _attention(bundle, take, ids)
        roll = figure_array(piano_roll_figure(shown, take.prompt.seconds if take.prompt.ids else None,
                                              f"variation {i + 1}: {shown.note_num()} notes", span=take.span))
        results.append(Rendered(roll, attention, wav, player, midi, " ".join(n for n in (note, why) if n)))
    return results


def _audio(score: symusic.Score, wav: Path) -> tuple[Path | None, Path | None, str]:
    """The WAV download and the player's compressed file of one synthesis, or a note saying why there
    are none (the rest of the page still works)."""
    if not score.note_num():
        return None, None, "No notes, so no audio."
    player = wav.with_suffix(PLAYER_SUFFIX)
    try:
        render_files(score, [wav, player])
    except ComagenError as exc:  # AudioUnavailableError, SoundfontNotFoundError
        wav.unlink(missing_ok=True)
        player.unlink(missing_ok=True)
        return None, None, f"Audio preview unavailable: {exc}"
    return wav, player, ""


def _attention(bundle: Bundle, take: Take, ids: list[int]) -> tuple[np.ndarray | None, str]:
    """The attention figure over the last tokens of a variation (conformer checkpoints), or over
    the last frames, head by head (the piano-roll model)."""
    sequence = take.prompt.ids + ids
    if isinstance(bundle, FrameBundle):
        return (figure_array(head_figure(capture_frame_attention(bundle, sequence))), "") if sequence else (None, "")
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
