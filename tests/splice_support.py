"""Checks that a result is the user's own file with only the regenerated notes replaced: every kept
note, pedal, controller, tempo and time signature compared to the original's, to the tick."""

from __future__ import annotations

import numpy as np
import symusic

from comagen.music.midi import grid_scale, grid_ticks
from comagen.music.splice import PEDAL_CCS, TRACK
from comagen.music.tokenizer import TokenSettings

POSITIONS = TokenSettings().positions_per_beat  # the token grid a bar line is rounded on
HALF_STEP = 0.5 / POSITIONS / 2  # seconds: how far the grid moves an onset at most
KINDS = {"notes": symusic.Note, "pedals": symusic.Pedal, "controls": symusic.ControlChange}


def rows(events: object) -> np.ndarray:
    """A symusic event list (notes, pedals, controls, tempos ...) as rows of its numpy columns, sorted."""
    cols = events.numpy()
    table = np.stack([cols[k].astype(np.int64) for k in sorted(cols)], 1)
    return table[np.lexsort(table.T[::-1])]


def replaced(times: np.ndarray, start: float, end: float | None) -> np.ndarray:
    """Which of these onsets (seconds) a splice replaces: inside [start, end) on the token grid. Away
    from the edges (more than half a grid step) that is plainly inside in seconds, as checked here."""
    grid, scale = grid_ticks(times, POSITIONS), grid_scale(POSITIONS)
    inside = (grid >= round(start * scale)) & ((grid < round(end * scale)) if end is not None else True)
    edges = [start] if end is None else [start, end]
    far = np.min([np.abs(times - e) for e in edges], 0) > HALF_STEP + 1e-3
    plain = (times >= start) & ((times < end) if end is not None else True)
    assert np.array_equal(inside[far], plain[far])
    return inside


def split(score: symusic.Score, track: int, kind: str, start: float, end: float | None) -> tuple[np.ndarray, ...]:
    """Rows of a track's notes, pedals or controls outside and inside [start, end) (by their onsets)."""
    cols = getattr(score.tracks[track], kind).numpy()
    inside = replaced(getattr(score.to("second").tracks[track], kind).numpy()["time"], start, end)
    return tuple(rows(KINDS[kind].from_numpy(**{k: v[mask] for k, v in cols.items()})) if mask.any()
                 else np.zeros((0, len(cols)), np.int64) for mask in (~inside, inside))


def assert_time_base(original: symusic.Score, result: symusic.Score) -> None:
    assert result.ticks_per_quarter == original.ticks_per_quarter
    assert np.array_equal(rows(result.tempos), rows(original.tempos))
    assert np.array_equal(rows(result.time_signatures), rows(original.time_signatures))


def new_notes(result: symusic.Score) -> np.ndarray:
    """The notes of the result's TRACK (its last), checked to be there."""
    names = [t.name for t in result.tracks]
    assert names.count(TRACK) == 1 and names[-1] == TRACK and len(result.tracks[-1].notes) > 0
    return rows(result.tracks[-1].notes)


def assert_infilled(original: symusic.Score, result: symusic.Score, start: float, end: float) -> np.ndarray:
    """`result` (a written file, read back) is `original` with only [start, end) replaced: every other
    note, and every pedal and controller, the original's to the tick. Returns the new notes in the span."""
    assert_time_base(original, result)
    for i, theirs in enumerate(original.tracks):
        kept, gone = split(original, i, "notes", start, end)
        assert np.array_equal(split(result, i, "notes", start, end)[0], kept)
        if i == 0:
            assert len(gone) > 0 and len(theirs.pedals) > 0  # the user's notes to replace, the user's pedalling
        assert np.array_equal(rows(result.tracks[i].pedals), rows(theirs.pedals))
        assert np.array_equal(rows(result.tracks[i].controls), rows(theirs.controls))
    new_notes(result)
    inside = split(result, len(result.tracks) - 1, "notes", start, end)[1]
    assert len(inside) > 0
    return inside


def assert_continued(original: symusic.Score, result: symusic.Score, cut: float) -> np.ndarray:
    """`result` is `original`'s one track of music before `cut` as it was (a pedal held at the cut kept
    up to its release) and new notes after it (some may share the prompt's last bar). Returns the new notes."""
    assert_time_base(original, result)
    kept, gone = split(original, 0, "notes", cut, None)
    assert len(gone) > 0 and np.array_equal(rows(result.tracks[0].notes), kept)
    pedals = split(original, 0, "pedals", cut, None)[0]
    assert len(pedals) > 0 and np.array_equal(rows(result.tracks[0].pedals), pedals)
    mine, later = split(result, 0, "controls", cut, None)
    assert np.array_equal(mine, split(original, 0, "controls", cut, None)[0])
    assert {tuple(r) for r in later} <= {tuple(r) for r in rows(original.tracks[0].controls)}  # its own,
    assert np.isin(later[:, 0], PEDAL_CCS).all()  # after the cut only a held pedal on its way up (column
    # 0: the controller number, `rows` orders columns by name)
    return new_notes(result)
