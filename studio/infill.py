"""The app's Infill: regenerate a span of the shown result, keep it in the history like any take.

The work is `comagen.generation.infill`; here a result (a `Take` and the variation on show) becomes the piece
to infill, and the new piece becomes a take whose span the piano roll draws in its own colour.
"""

from __future__ import annotations

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError
from comagen.generation.infill import MAX_CANDIDATES, infill
from comagen.generation.prompt import Prompt
from comagen.generation.settings import Settings
from comagen.music.midi import SECONDS_PER_BAR
from studio.catalog import needs_tokens
from studio.limits import LIMITS, AppLimits, app_request
from studio.present import Rendered, render_take
from studio.take import Take, shown_ids, shown_score

DEFAULT_CANDIDATES = 4  # the app's default K: a quarter of the CLI's largest, on a shared 2-core server


def piece_seconds(bundle: Bundle, history: list[Take], variation: int) -> float:
    """How long the shown result is, in whole bars (the range of the span sliders); 0 with none."""
    if not history:
        return 0.0
    ids = shown_ids(history, variation)
    bars = sum(t == bundle.tokenizer.bar_id for t in ids)
    return bars * SECONDS_PER_BAR


def infill_take(bundle: Bundle, history: list[Take], variation: int, start: float, end: float, candidates: int,
                settings: Settings, random_seed: bool = True,
                limits: AppLimits = LIMITS) -> tuple[Take, list[Rendered], str]:
    """Infill the shown result between `start` and `end` seconds with the page's settings (all that
    `Settings.request` makes of them): the new take (prompt and continuation split where they were,
    the span spliced into the user's file when the piece is one), its rendering and a summary line."""
    needs_tokens(bundle, "Infill")
    if not history:
        raise ComagenError("nothing to infill yet: generate first")
    if not 1 <= int(candidates) <= MAX_CANDIDATES:
        raise ComagenError(f"candidates must be between 1 and {MAX_CANDIDATES}")
    if float(end) - float(start) > limits.max_seconds:  # what one request of a shared server may write
        raise ComagenError(f"the span may be at most {limits.max_seconds} seconds long")
    request = app_request(bundle, settings, random_seed)  # the seed drawn, windows cut to the model's scales
    seed = request.seed
    last = history[-1]
    base = shown_score(bundle.tokenizer, history, variation)  # the user's file the piece is, if any
    result = infill(bundle, shown_ids(history, variation), float(start), float(end), request,
                    candidates=int(candidates))
    cut = min(len(last.prompt.ids), len(result.span.before))  # untouched, so the old prompt's tokens up to here
    take = Take(Prompt(result.ids[:cut], last.prompt.seconds), [result.ids[cut:]], seed, request.composer,
                request.windows, f"{last.name}_infill", span=result.seconds,
                scores=None if base is None else [result.into(base)])
    s = result.summary()
    bits = ", ".join(f"**{b:.2f}**" if i == s["chosen"] else f"{b:.2f}" for i, b in enumerate(s["bits_per_note"]))
    note = (f"Infilled {s['start_s']:g}-{s['end_s']:g} s ({s['bars']} bars, {s['span_notes']} new notes, seed "
            f"{seed}): candidate {s['chosen'] + 1} of {s['candidates']} kept, the one after which the next "
            f"{s['suffix_notes']} notes score the fewest bits per note ({bits}).")
    return take, render_take(bundle, take), note
