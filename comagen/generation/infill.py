"""Infilling: regenerate a span of bars so that it leads into the music that follows.

The model only reads left to right, so the span is chosen rather than conditioned: K candidates
are sampled from the left context (one batch, the engine's grammar and `sample_next`), and each
row, once its candidate reaches the bar line that starts the end bar, is fed the real following
bars through the same streaming state, scoring them. The candidate under which the model finds
what follows most likely (fewest bits per note) is kept.

A span is sampled under the same `Request` a generation gets (from `Settings.request`): its whole
`Sampling` (the leans and per-decision temperatures of `comagen.generation.leans` too), the
composer, classifier-free guidance (unconditional twins in the batch, `comagen.generation.guidance`)
and the attention windows. The following bars are scored under the composer-conditioned model,
guided or not: the model's own probabilities, not the sharpened ones guidance samples from. The
request's length, variations, form and runtime do not apply to a span.

Start and end snap to bar lines of the 120 bpm token grid, so the tokens before and after the span
stay exactly as they were. `InfillResult.into` writes the new span into the user's own file
(`comagen.music.splice`), so that every note, pedal and controller outside it is the file's own.
The left context is the last `context_tokens` before the span, cut at a bar line (the model's
trained length by default: the `default` bundle's 3 layers of 128-token windows see about
430 tokens back, so a 512-token context changes nothing there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import symusic
import torch
import torch.nn.functional as F

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError, ConfigError
from comagen.generation.guidance import mix, row_composers
from comagen.generation.leans import Leans
from comagen.generation.request import MAX_TOKENS_CAP, Request
from comagen.generation.sampling import sample_next
from comagen.music.grammar import AFTER_BAR, AFTER_DURATION, GrammarState, RemiGrammar, track
from comagen.music.midi import SECONDS_PER_BAR
from comagen.music.splice import splice_ids

LN2 = math.log(2.0)
SUFFIX_BARS = 8  # bars after the span that judge a candidate
TOKENS_PER_BAR_CAP = 512  # a candidate stops at this many tokens a bar (dense piano makes ~230)
MAX_CANDIDATES = 16
PAD = -1  # a finished row's feed, read as the tokenizer's padding
NOT_FOR_INFILL = ("seconds", "variations", "form", "section_bars")  # the `Settings` a span has no use for


class InfillError(ComagenError):
    """A span that cannot be infilled (outside the piece, too short, nothing after it)."""


@dataclass
class Candidate:
    """One sampled span and how well the model predicts the following bars after it."""

    ids: list[int]
    suffix_bits: float  # total bits of the scored suffix tokens
    suffix_notes: int

    @property
    def bits_per_note(self) -> float:
        return self.suffix_bits / max(self.suffix_notes, 1)


@dataclass
class Span:
    """A piece cut at bar lines: what comes before the span (ending on the span's first Bar token),
    the span's own tokens, what follows (starting on the end bar's Bar token)."""

    before: list[int]
    inside: list[int]
    after: list[int]
    start_bar: int
    end_bar: int

    @property
    def start_s(self) -> float:
        return self.start_bar * SECONDS_PER_BAR

    @property
    def end_s(self) -> float:
        return self.end_bar * SECONDS_PER_BAR


@dataclass
class InfillResult:
    """The new piece (`ids`, the span replaced by the best candidate) and every candidate's score."""

    ids: list[int]
    span: Span
    candidates: list[Candidate]
    chosen: int
    bundle: Bundle

    @property
    def score(self) -> symusic.Score:
        """The new piece as its tokens decode (on the 120 bpm grid)."""
        return self.bundle.tokenizer.decode_ids(self.ids)

    def into(self, original: symusic.Score) -> symusic.Score:
        """The chosen span written into `original`, the user's own score the piece's tokens were made
        of: outside the span everything is the original's to the tick (see `comagen.music.splice`)."""
        return splice_ids(self.bundle.tokenizer, original, self.span.before, self.candidates[self.chosen].ids,
                          self.span.start_s, self.span.end_s)

    @property
    def seconds(self) -> tuple[float, float]:
        return self.span.start_s, self.span.end_s

    def summary(self) -> dict:
        """The figures the CLI prints and the app shows."""
        return {"start_s": self.span.start_s, "end_s": self.span.end_s, "bars": self.span.end_bar - self.span.start_bar,
                "chosen": self.chosen, "candidates": len(self.candidates),
                "bits_per_note": [round(c.bits_per_note, 4) for c in self.candidates],
                "span_notes": self.bundle.tokenizer.vocab.notes(self.candidates[self.chosen].ids),
                "suffix_notes": self.candidates[self.chosen].suffix_notes, "tokens": len(self.ids)}


def piece_ids(bundle: Bundle, score_or_ids: symusic.Score | list[int]) -> list[int]:
    """Plain REMI ids of a piece (a loaded score is put on the token grid first); specials dropped."""
    tok = bundle.tokenizer
    if tok.is_bpe:
        raise ConfigError("infilling needs a plain REMI tokenizer, not BPE")
    ids = tok.encode_score(score_or_ids) if isinstance(score_or_ids, symusic.Score) else list(score_or_ids)
    return [int(t) for t in ids if int(t) not in (tok.pad_id, tok.bos_id, tok.eos_id)]


def cut_span(grammar: RemiGrammar, ids: list[int], start_s: float, end_s: float) -> Span:
    """The piece cut at the bar lines nearest `start_s` and `end_s`; InfillError for a bad span."""
    bars = [i for i, t in enumerate(ids) if t == grammar.bar_id]
    length = len(bars) * SECONDS_PER_BAR
    if not all(map(math.isfinite, (start_s, end_s))):
        raise InfillError("the span's start and end must be numbers of seconds")
    if end_s <= start_s:
        raise InfillError(f"the span must end after it starts (start {start_s:g} s, end {end_s:g} s)")
    if start_s < 0 or end_s > length + SECONDS_PER_BAR / 2:
        raise InfillError(f"the span {start_s:g}-{end_s:g} s is outside the piece (0-{length:g} s)")
    start_bar, end_bar = round(start_s / SECONDS_PER_BAR), round(end_s / SECONDS_PER_BAR)
    if end_bar - start_bar < 1:
        raise InfillError(f"the span {start_s:g}-{end_s:g} s is shorter than a bar once snapped to bar lines "
                          f"({SECONDS_PER_BAR:g} s each)")
    after = ids[bars[end_bar]:] if end_bar < len(bars) else []
    if not any(grammar.kind[t] == "Pitch" for t in after):
        raise InfillError(f"nothing follows the span (it ends at {end_bar * SECONDS_PER_BAR:g} s, the last bar with "
                          f"music starts at {(len(bars) - 1) * SECONDS_PER_BAR:g} s): infilling needs music after it")
    first = bars[start_bar] + 1
    return Span(ids[:first], ids[first:bars[end_bar]], after, start_bar, end_bar)


def scored_suffix(grammar: RemiGrammar, after: list[int], bars: int = SUFFIX_BARS) -> list[int]:
    """The first `bars` bars of what follows (more, up to its first note, if those are silent)."""
    starts = [i for i, t in enumerate(after) if t == grammar.bar_id] + [len(after)]
    end = starts[min(bars, len(starts) - 1)]
    while not any(grammar.kind[t] == "Pitch" for t in after[:end]):
        end = next(s for s in starts if s > end)
    return after[:end]


def left_context(grammar: RemiGrammar, bos: int, before: list[int], context_tokens: int) -> list[int]:
    """The last `context_tokens` (about) of `before`, cut at a bar line; BOS only at the piece's start."""
    bars = [i for i, t in enumerate(before) if t == grammar.bar_id]
    cut = next(i for i in bars if len(before) - i <= context_tokens or i == bars[-1])
    return ([bos] if cut == 0 else []) + before[cut:]


@dataclass
class _Row:
    """One candidate in the batch: sampling its span, then fed the suffix and scoring it."""

    grammar: GrammarState
    ids: list[int]
    scored: int = 0  # suffix tokens fed so far (0 while sampling the span)
    bits: float = 0.0
    filling: bool = False  # over its token cap: the remaining bars are closed empty


def infill(bundle: Bundle, score_or_ids: symusic.Score | list[int], start_s: float, end_s: float,
           request: Request | None = None, *, candidates: int = 8, suffix_bars: int = SUFFIX_BARS,
           context_tokens: int | None = None) -> InfillResult:
    """Regenerate the bars between `start_s` and `end_s` (snapped to bar lines): sample `candidates`
    spans under `request` (sampling, seed, composer, guidance, windows) and keep the one after which
    the next `suffix_bars` bars score the fewest bits per note."""
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise ConfigError(f"candidates must be between 1 and {MAX_CANDIDATES}")
    if suffix_bars < 1:
        raise ConfigError("suffix_bars must be at least 1")
    ids = piece_ids(bundle, score_or_ids)
    grammar = RemiGrammar(bundle.tokenizer)
    span = cut_span(grammar, ids, start_s, end_s)
    suffix = scored_suffix(grammar, span.after, suffix_bars)
    context = left_context(grammar, bundle.tokenizer.bos_id, span.before,
                           context_tokens or bundle.config.max_seq_len)
    rows = _sample_and_score(bundle, grammar, context, span.end_bar - span.start_bar, suffix, candidates,
                             request or Request())
    notes = sum(grammar.kind[t] == "Pitch" for t in suffix)
    found = [Candidate(r.ids, r.bits, notes) for r in rows]
    chosen = min(range(len(found)), key=lambda i: found[i].suffix_bits)
    return InfillResult(span.before + found[chosen].ids + span.after, span, found, chosen, bundle)


def _sample_and_score(bundle: Bundle, grammar: RemiGrammar, context: list[int], bars: int, suffix: list[int],
                      k: int, request: Request) -> list[_Row]:
    """All candidates in one batch: prefill the context once per composer row kind, copy its state to
    k rows (and k unconditional twins when guided), sample each row's span under the grammar, then
    feed that row the suffix and add up its bits."""
    model = bundle.model
    device = next(model.parameters()).device
    start = track(grammar, context)
    end_count = start.bars + bars  # grammar.bars once the end bar's Bar token is read
    cap = min(MAX_TOKENS_CAP, bars * TOKENS_PER_BAR_CAP)
    rows = [_Row(start, []) for _ in range(k)]
    composers = torch.tensor(row_composers(request, k), device=device)
    kinds = len(composers) // k  # 2 with guidance: the conditioned rows, then their twins
    generator = torch.Generator().manual_seed(request.seed)
    leans = Leans.maybe(grammar, context, k, request.sampling)  # key, dynamics, pace, per-decision temperatures
    with torch.inference_mode():
        state = model.new_state(kinds, device, windows=request.windows)
        logits, state = model.prefill(torch.tensor([context] * kinds, device=device), composers[::k], state)
        copies = torch.arange(kinds, device=device).repeat_interleave(k)
        state, logits = state.select(copies), logits[copies]
        while any(r.scored < len(suffix) for r in rows):
            logits = logits.float().cpu()
            drawn = mix(logits, k, request.guidance) if kinds == 2 else logits
            allowed = torch.stack([_allowed(grammar, r) for r in rows])
            states, written = [r.grammar for r in rows], [len(r.ids) for r in rows]
            factors = leans.temperature_factors(states) if leans else None
            drawn = leans.apply(drawn, allowed, states) if leans else drawn
            sampled = sample_next(drawn, allowed, request.sampling, generator, factors).tolist()
            log_probs = F.log_softmax(logits[:k], dim=-1)  # the model's own probabilities score the suffix
            feed = [_next_token(grammar, r, sampled[i], log_probs[i], suffix, end_count, cap)
                    for i, r in enumerate(rows)]
            for i, r in enumerate(rows if leans else []):
                if len(r.ids) > written[i]:  # a span token (not the suffix): the leans follow it, as in the engine
                    leans.played(i, feed[i], states[i])
            feed = [bundle.tokenizer.pad_id if t == PAD else t for t in feed]
            logits, state = model.step(torch.tensor(feed * kinds, device=device), composers, state)
    return rows


def _allowed(grammar: RemiGrammar, row: _Row) -> torch.Tensor:
    """What a row may sample: the grammar without EOS while it writes its span; anything (ignored) after."""
    if row.scored or row.filling:
        return torch.ones(grammar.size, dtype=torch.bool)
    mask = row.grammar.allowed(grammar)
    mask[grammar.eos_id] = False
    return mask


def _next_token(grammar: RemiGrammar, row: _Row, sampled: int, log_probs: torch.Tensor, suffix: list[int],
                end_count: int, cap: int) -> int:
    """The token a row reads next: its sampled span token, an empty bar closing a span over its cap,
    or the next suffix token (scored under `log_probs`); padding once the suffix is all read."""
    if row.scored >= len(suffix):
        return PAD
    if not row.scored:
        if len(row.ids) >= cap and row.grammar.state in (AFTER_DURATION, AFTER_BAR):
            row.filling = True
        token = grammar.bar_id if row.filling else sampled
        if token != grammar.bar_id or row.grammar.bars + 1 < end_count:
            row.ids.append(token)
            row.grammar = row.grammar.advance(grammar, token)
            return token
    token = suffix[row.scored]
    row.bits -= float(log_probs[token]) / LN2
    row.scored += 1
    return token


def suffix_bits(bundle: Bundle, context: list[int], span: list[int], suffix: list[int], composer: int = 0,
                windows: list[int] | None = None) -> float:
    """Bits of `suffix` after `context + span` in one full forward pass (the reference the streamed
    scores are checked against, and how the real span is scored)."""
    model = bundle.model
    device = next(model.parameters()).device
    tokens = torch.tensor([context + span + suffix], device=device)
    with torch.inference_mode():
        logits = model(tokens, torch.tensor([composer], device=device), windows=windows)
    first = len(context) + len(span)
    log_probs = F.log_softmax(logits[0, first - 1:-1].float(), dim=-1)
    return float(-log_probs.gather(1, tokens[0, first:, None]).sum()) / LN2
