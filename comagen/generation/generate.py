"""Streamed generation: prefill a prompt, then sample token by token, always decodable.

One `Session` runs a batch of variations (plus, with classifier-free guidance, their
unconditional twins in the same batch) through the model's constant-memory streaming state,
yielding each step's index; `snapshot()` reports progress to other threads. Each row carries a REMI
grammar tracker, so only tokens that keep a legal succession can be drawn, and a plan that
implements musical forms:

Forms (e.g. "AABA", section length N bars): sections start on bar lines. A new letter is sampled
freely for N bars and remembered. A repeated letter replays the remembered section's notes
through the model state (so what follows hears it) with variation: every velocity is re-sampled
by the model, so the repeat keeps its notes but is played anew.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import symusic
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError, ConfigError
from comagen.generation.keyprior import KeyPrior
from comagen.model import AttentionCapture
from comagen.music.grammar import AFTER_DURATION, ENDED, GrammarState, RemiGrammar, track
from comagen.music.midi import SECONDS_PER_BAR, load_score
from comagen.music.tokenizer import PianoTokenizer
from comagen.runtime import check_runtime, choose_runtime

FORMS = {"AABA", "ABAB", "ABAC", "AABB", "ABA", "verse-chorus-bridge"}
TOKENS_PER_SECOND_CAP = 150  # the densest music a length request budgets for (MAESTRO averages ~37)
MAX_TOKENS_CAP = 100_000  # per variation: ten minutes at that density, and a 256-token margin


@dataclass
class Sampling:
    """Temperature 0 means greedy; top_k 0, top_p 1 and min_p 0 switch those filters off;
    key_strength > 0 leans pitches toward the prompt's key (comagen.generation.keyprior), 0 leaves them be."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    key_strength: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1 or self.top_k < 0 \
                or not 0 <= self.key_strength <= 8:
            raise ConfigError("sampling needs temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1, top_k >= 0, "
                              "0 <= key_strength <= 8")


def sample_next(logits: torch.Tensor, allowed: torch.Tensor, sampling: Sampling,
                generator: torch.Generator) -> torch.Tensor:
    """One token per row from logits [B, V], restricted to `allowed` [B, V]."""
    logits = logits.float().masked_fill(~allowed, -math.inf)
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if sampling.min_p:
        probs = probs.masked_fill(probs < sampling.min_p * probs.max(-1, keepdim=True).values, 0.0)
    if sampling.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > sampling.top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)


# ------------------------------------------------------------------------------- prompts


@dataclass
class Prompt:
    """Prompt ids (no BOS) and the time, on a bar line, where the continuation starts."""

    ids: list[int]
    seconds: float

    @classmethod
    def empty(cls) -> Prompt:
        return cls([], 0.0)


def load_prompt(tokenizer: PianoTokenizer, source: str | Path | bytes | None,
                seconds: float | None = None) -> Prompt:
    """Tokenize a prompt file (path or bytes), keeping its first `seconds` cut at a bar line."""
    if source is None:
        return Prompt.empty()
    score = tokenizer.prepare(load_score(source))
    ticks_per_bar = 4 * score.ticks_per_quarter
    if seconds is not None:
        bars = max(1, round(seconds / SECONDS_PER_BAR))
        score = _clip(score, bars * ticks_per_bar)
    return Prompt(tokenizer.encode_prepared(score), _next_bar_seconds(score))


def prompt_from_ids(tokenizer: PianoTokenizer, ids: list[int]) -> Prompt:
    """A prompt of token ids (e.g. a result to continue; EOS dropped), continuing on its next bar."""
    ids = [t for t in ids if t != tokenizer.eos_id]
    return Prompt(ids, _next_bar_seconds(tokenizer.decode_ids(ids)))


def _next_bar_seconds(score: symusic.Score) -> float:
    """Where the bar after the last onset starts, in seconds (0 for an empty score)."""
    onsets = [n.time for t in score.tracks for n in t.notes]
    if not onsets:
        return 0.0
    return (max(onsets) // (4 * score.ticks_per_quarter) + 1) * SECONDS_PER_BAR


def _clip(score: symusic.Score, end_tick: int) -> symusic.Score:
    """Notes (and pedals) that start before `end_tick`; durations are kept."""
    out = score.copy()
    for t in out.tracks:
        if len(t.notes):
            notes = t.notes.numpy()
            keep = notes["time"] < end_tick
            t.notes = symusic.Note.from_numpy(**{k: v[keep] for k, v in notes.items()}, ttype="tick")
        kept = [p for p in t.pedals if p.time < end_tick]
        t.pedals.clear()
        t.pedals.extend(kept)
    return out


def parse_form(form: str | None) -> list[str]:
    """Section letters of a form: 'AABA' -> A A B A; 'verse-chorus-bridge' -> V C B."""
    if not form:
        return []
    if "-" in form:
        parts = [p for p in form.lower().split("-") if p]
        letters = {"verse": "V", "chorus": "C", "bridge": "B", "intro": "I", "outro": "O"}
        if not all(p in letters for p in parts):
            raise ConfigError(f"unknown form {form!r}: use letters like AABA or words verse-chorus-bridge")
        return [letters[p] for p in parts]
    if not form.isalpha() or not form.isupper() or len(form) > 16:
        raise ConfigError(f"unknown form {form!r}: use capital letters like AABA, ABAB, ABAC")
    return list(form)


def section_bars_for(form: str | None, seconds: float) -> int:
    """Bars per section so that the whole form lasts about `seconds` (at least one bar each):
    an AABA over ten minutes gets 75-bar sections."""
    letters = parse_form(form)
    return max(1, round(seconds / SECONDS_PER_BAR / max(len(letters), 1)))


def tokens_for_seconds(seconds: float) -> int:
    """A token budget that `seconds` of even very dense music fits in (the length stops it first)."""
    return min(int(seconds * TOKENS_PER_SECOND_CAP) + 256, MAX_TOKENS_CAP)


# ------------------------------------------------------------------------------- requests


@dataclass
class Request:
    """What to generate. Stops at `max_tokens`, after `seconds` of new music or at the form's end;
    at EOS only when neither a length in seconds nor a form was asked for. `runtime` picks what
    computes the logits (see comagen.runtime.choose); the music depends only on the logits."""

    max_tokens: int = 1024
    seconds: float | None = None
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    variations: int = 1
    composer: int = 0
    guidance: float = 1.0
    windows: list[int] | None = None
    form: str | None = None
    section_bars: int = 4
    runtime: str = "auto"

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        if not 1 <= self.max_tokens <= MAX_TOKENS_CAP:
            raise ConfigError(f"max_tokens must be between 1 and {MAX_TOKENS_CAP}")
        if not 1 <= self.variations <= 16:
            raise ConfigError("variations must be between 1 and 16")
        if self.guidance < 0:
            raise ConfigError("guidance must be >= 0")
        if self.section_bars < 1:
            raise ConfigError("section_bars must be >= 1")


@dataclass(frozen=True)
class Progress:
    """A consistent picture of a running generation, safe to read from another thread."""

    rows: tuple[tuple[int, ...], ...]
    row_notes: tuple[int, ...]  # new notes per variation
    row_seconds: tuple[float, ...]  # new music per variation, in seconds
    steps: int
    elapsed: float
    stopped: bool
    runtime: str
    lengths: tuple[int, ...] = ()  # tokens per variation (`rows` may hold only their last ones)

    @property
    def stats(self) -> dict:
        """Throughput and length figures, as the CLI prints and the app shows them."""
        tokens = sum(self.lengths) if self.lengths else sum(len(r) for r in self.rows)
        music = max(self.row_seconds, default=0.0)
        return {"tokens": tokens, "steps": self.steps, "seconds_elapsed": round(self.elapsed, 3),
                "tokens_per_s": round(tokens / self.elapsed, 1) if self.elapsed else 0.0,
                "music_seconds": round(music, 2),
                "realtime_factor": round(music / self.elapsed, 2) if self.elapsed else 0.0,
                "notes": sum(self.row_notes), "runtime": self.runtime}


@dataclass
class _Row:
    """Per-variation bookkeeping: grammar, form plan, forced tokens, section memory."""

    grammar: GrammarState
    ids: list[int] = field(default_factory=list)
    finished: bool = False
    sections: list[str] = field(default_factory=list)
    section: int = -1
    section_start: int = 0
    section_bars: int = 0
    memory: dict[str, list[int]] = field(default_factory=dict)
    forced: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)


class Session:
    """A running generation: iterate it (it yields each step's index); from another thread read only
    `snapshot()`, which takes the lock the sampling loop holds while it changes the rows."""

    def __init__(self, bundle: Bundle, prompt: Prompt, request: Request) -> None:
        self.bundle, self.prompt, self.request = bundle, prompt, request
        self.tokenizer = bundle.tokenizer
        self.grammar = None if self.tokenizer.is_bpe else RemiGrammar(self.tokenizer)
        self.sections = parse_form(request.form)
        if self.sections and self.grammar is None:
            raise ConfigError("musical forms need a plain REMI tokenizer, not BPE")
        self.start = track(self.grammar, prompt.ids) if self.grammar else GrammarState()
        self.rows = [_Row(self.start, sections=list(self.sections)) for _ in range(request.variations)]
        strength = request.sampling.key_strength
        self.key = KeyPrior(self.grammar, prompt.ids, len(self.rows), strength) if self.grammar and strength else None
        self.runtime = choose_runtime(bundle, request.runtime, request.windows)
        self.elapsed = 0.0
        self.steps = 0
        self.stopped = False
        self._lock = threading.Lock()

    # ---- results
    def generated(self, row: int = 0) -> list[int]:
        return list(self.rows[row].ids)

    def score(self, row: int = 0, with_prompt: bool = True) -> symusic.Score:
        ids = (self.prompt.ids if with_prompt else []) + self.rows[row].ids
        return self.tokenizer.decode_ids(ids)

    def section_starts(self, row: int = 0) -> list[float]:
        """Start time in seconds of each form section of a row."""
        bar_times = []
        state = self.start
        for i, tok in enumerate(self.rows[row].ids):
            if i in self.rows[row].boundaries:
                bar_times.append(state.bars * SECONDS_PER_BAR)
            state = state.advance(self.grammar, tok)
        return bar_times

    def snapshot(self, tail: int | None = None) -> Progress:
        """The rows and figures so far, copied under the lock (immutable). With `tail`, only each
        row's last `tail` tokens are copied, so polling a long piece costs the same at every length."""
        with self._lock:
            rows = tuple(tuple(r.ids if tail is None else r.ids[max(len(r.ids) - tail, 0):]) for r in self.rows)
            notes = tuple(r.grammar.notes - self.start.notes for r in self.rows)
            seconds = tuple(max(r.grammar.seconds(self.grammar) - self.prompt.seconds, 0.0) if self.grammar else 0.0
                            for r in self.rows)
            return Progress(rows, notes, seconds, self.steps, self.elapsed, self.stopped, self.runtime.name,
                            tuple(len(r.ids) for r in self.rows))

    @property
    def stats(self) -> dict:
        return self.snapshot().stats

    def stop(self) -> None:
        """Ask a running iteration to end after the current token (what was made is kept)."""
        self.stopped = True

    # ---- the loop
    def __iter__(self) -> Iterator[int]:
        req, model = self.request, self.bundle.model
        device = next(model.parameters()).device
        rows = len(self.rows)
        guided = req.composer > 0 and req.guidance not in (0.0, 1.0)
        cond = req.composer if req.guidance > 0 else 0
        composers = torch.tensor([cond] * rows + ([0] * rows if guided else []), device=device)
        batch = len(composers)
        generator = torch.Generator().manual_seed(req.seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            stream = self.runtime.open(composers)
            context = [self.tokenizer.bos_id, *self.prompt.ids]
            logits = stream.prefill(torch.tensor([context] * batch, device=device))
            for r in self.rows:
                if self.sections:
                    self._enter_section(r, 0)
            index = 0
            while not all(r.finished for r in self.rows) and not self.stopped:
                if guided:
                    logits = logits[rows:] + req.guidance * (logits[:rows] - logits[rows:])
                with self._lock:
                    chosen = self._choose(logits[:rows].cpu(), generator)
                    self.elapsed = time.perf_counter() - t0
                    self.steps += 1
                yield index
                index += 1
                if all(r.finished for r in self.rows):
                    break
                feed = [t if t is not None else self.tokenizer.pad_id for t in chosen]
                feed = torch.tensor(feed * (2 if guided else 1), device=device)
                logits = stream.step(feed)
        with self._lock:
            self.elapsed = time.perf_counter() - t0

    def _choose(self, logits: torch.Tensor, generator: torch.Generator) -> list[int | None]:
        """Pick each row's token: forced by a form replay, or sampled under the grammar."""
        req = self.request
        allowed = torch.ones_like(logits, dtype=torch.bool)
        if self.grammar:
            allowed = torch.stack([r.grammar.allowed(self.grammar) for r in self.rows])
            for i, r in enumerate(self.rows):
                if r.forced and self.grammar.kind[r.forced[0]] == "Velocity":
                    allowed[i] = self.grammar.velocity_mask  # the variation: re-sample dynamics
                if (self.sections or req.seconds is not None) and not r.forced:
                    allowed[i, self.grammar.eos_id] = False  # play the whole form / the requested length
        if self.key:
            logits = self.key.apply(logits, allowed)
        sampled = sample_next(logits, allowed, req.sampling, generator).tolist()
        out: list[int | None] = []
        for i, r in enumerate(self.rows):
            if r.finished:
                out.append(None)
                continue
            token = sampled[i]
            if r.forced:
                forced = r.forced.pop(0)
                token = token if self.grammar.kind[forced] == "Velocity" else forced
            elif self.sections and token == self.grammar.bar_id and r.section_bars >= req.section_bars:
                if not self._next_section(r):
                    out.append(None)
                    continue
                token = r.forced.pop(0) if r.forced else token
            token = self._budget(r, token)
            if token is None:
                out.append(None)
                continue
            r.ids.append(token)
            if self.key:
                self.key.played(i, token)
            if self.grammar:
                r.grammar = r.grammar.advance(self.grammar, token)
                if token == self.grammar.bar_id:
                    r.section_bars += 1
                if r.grammar.state == ENDED:
                    r.finished = True
            if len(r.ids) >= req.max_tokens and not r.finished:
                r.finished = True
                self._trim_to_last_note(r)
            out.append(token)
        return out

    def _trim_to_last_note(self, r: _Row) -> None:
        """Drop a half-written note at the token cap, so the row still ends on a whole note."""
        if not self.grammar:
            return
        while r.ids and self.grammar.kind[r.ids[-1]] not in ("Duration", "EOS"):
            r.ids.pop()

    def _budget(self, r: _Row, token: int) -> int | None:
        """End a row, before `token`, once its music reaches the requested length."""
        req = self.request
        if req.seconds is None or not self.grammar or self.sections:
            return token
        if self.grammar.kind[token] in ("Bar", "Position") and r.grammar.state == AFTER_DURATION:
            after = r.grammar.advance(self.grammar, token)
            if after.seconds(self.grammar) >= self.prompt.seconds + req.seconds:
                r.finished = True
                return None
        return token

    def _enter_section(self, r: _Row, k: int) -> None:
        r.section, r.section_start, r.section_bars = k, len(r.ids), 0
        r.boundaries.append(len(r.ids))
        letter = r.sections[k]
        r.forced = list(r.memory[letter]) if letter in r.memory else [self.grammar.bar_id]

    def _next_section(self, r: _Row) -> bool:
        """Close the current section (remember it) and open the next; False when the form is done."""
        letter = r.sections[r.section]
        r.memory.setdefault(letter, r.ids[r.section_start:])
        if r.section + 1 >= len(r.sections):
            r.finished = True
            return False
        self._enter_section(r, r.section + 1)
        return True


def generate(bundle: Bundle, prompt: Prompt, request: Request) -> Session:
    """Run a whole generation and return the finished session."""
    session = Session(bundle, prompt, request)
    for _ in session:
        pass
    return session


def capture_attention(bundle: Bundle, ids: list[int], composer: int = 0, windows: list[int] | None = None,
                      last: int = 32) -> AttentionCapture:
    """Attention of the last `last` tokens of a sequence (re-run over just enough context)."""
    model = bundle.model
    if bundle.config.arch != "conformer":
        raise ComagenError("the attention view is for the conformer's multi-scale attention")
    reach = max(windows or bundle.config.windows) + last
    context = [bundle.tokenizer.bos_id, *ids][-reach:] if bundle.config.global_layers == [] \
        else [bundle.tokenizer.bos_id, *ids]
    device = next(model.parameters()).device
    with torch.inference_mode():
        _, capture = model(torch.tensor([context], device=device), torch.tensor([composer], device=device),
                           windows=windows, capture_last=min(last, len(context)))
    return capture
