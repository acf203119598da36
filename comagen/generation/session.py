"""Streamed generation: prefill a prompt, then sample token by token, always decodable.

One `Session` runs a batch of variations (plus, with classifier-free guidance, their
unconditional twins in the same batch) through the model's constant-memory streaming state,
yielding each step's index; `snapshot()` reports progress to other threads. Each row carries a REMI
grammar tracker, so only tokens that keep a legal succession can be drawn, and a `FormPlan`
(comagen.generation.forms) that plays a musical form's sections and repeats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import symusic
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ConfigError
from comagen.generation.forms import FormPlan, parse_form
from comagen.generation.guidance import mix, row_composers
from comagen.generation.leans import Leans
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.sampling import Uniforms, sample_rows
from comagen.music.grammar import AFTER_DURATION, ENDED, GrammarState, RemiGrammar, track
from comagen.music.midi import SECONDS_PER_BAR
from comagen.runtime import choose_runtime


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
    lengths: tuple[int, ...]  # tokens per variation (`rows` may hold only their last ones)

    @property
    def stats(self) -> dict:
        """Throughput and length figures, as the CLI prints and the app shows them."""
        tokens = sum(self.lengths)
        music = max(self.row_seconds, default=0.0)
        return {"tokens": tokens, "steps": self.steps, "seconds_elapsed": round(self.elapsed, 3),
                "tokens_per_s": round(tokens / self.elapsed, 1) if self.elapsed else 0.0,
                "music_seconds": round(music, 2),
                "realtime_factor": round(music / self.elapsed, 2) if self.elapsed else 0.0,
                "notes": sum(self.row_notes), "runtime": self.runtime}


@dataclass
class _Row:
    """One variation: its grammar state, the tokens it kept, whether it is done, its walk through the form."""

    grammar: GrammarState
    plan: FormPlan
    ids: list[int] = field(default_factory=list)
    finished: bool = False


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
        self.rows = [_Row(self.start, FormPlan(list(self.sections), request.section_bars, self.grammar))
                     for _ in range(request.variations)]
        self.leans = Leans.maybe(self.grammar, prompt.ids, len(self.rows), request.sampling)
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
            if i in self.rows[row].plan.boundaries:
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
        return self.snapshot(tail=0).stats  # the figures only: no row is copied

    def stop(self) -> None:
        """Ask a running iteration to end after the current token (what was made is kept)."""
        self.stopped = True

    # ---- the loop
    def __iter__(self) -> Iterator[int]:
        req, model = self.request, self.bundle.model
        device = next(model.parameters()).device
        rows = len(self.rows)
        composers = torch.tensor(row_composers(req, rows), device=device)
        batch = len(composers)
        twins = batch // rows  # 2 with guidance: the conditioned rows, then their unconditional twins
        uniforms = Uniforms(torch.Generator().manual_seed(req.seed))
        t0 = time.perf_counter()
        with torch.inference_mode():
            stream = self.runtime.open(composers)
            context = [self.tokenizer.bos_id, *self.prompt.ids]
            logits = stream.prefill(np.array([context] * batch, dtype=np.int64))
            for r in self.rows:
                r.plan.begin()
            index = 0
            while not all(r.finished for r in self.rows) and not self.stopped:
                if twins == 2:
                    logits = mix(logits, rows, req.guidance)
                with self._lock:
                    chosen = self._choose(logits[:rows], uniforms)
                    self.elapsed = time.perf_counter() - t0
                    self.steps += 1
                yield index
                index += 1
                if all(r.finished for r in self.rows):
                    break
                feed = [t if t is not None else self.tokenizer.pad_id for t in chosen]
                logits = stream.step(np.array(feed * twins, dtype=np.int64))
        with self._lock:
            self.elapsed = time.perf_counter() - t0

    def _allowed(self, logits: np.ndarray) -> np.ndarray:
        """What each row may sample: the grammar's next tokens, a replay's velocities, no early EOS."""
        if not self.grammar:
            return np.ones(logits.shape, dtype=bool)
        rows = [r.grammar.allowed_row(self.grammar) for r in self.rows]
        keep_going = self.sections or self.request.seconds is not None  # play the whole form / length
        for i, r in enumerate(self.rows):
            if r.plan.replaying_velocity():
                rows[i] = self.grammar.velocity_mask.numpy().copy()  # the variation: re-sample dynamics
            if keep_going and not r.plan.forced:
                rows[i][self.grammar.eos_id] = False
        return rows[0][None] if len(rows) == 1 else np.stack(rows)

    def _choose(self, logits: np.ndarray, uniforms: Uniforms) -> list[int | None]:
        """Pick each row's token: forced by a form replay, or sampled under the grammar."""
        allowed = self._allowed(logits)
        factors = None
        if self.leans:
            logits, factors = self.leans.shaped(logits, allowed, [r.grammar for r in self.rows])
        sampled = sample_rows(logits, allowed, self.request.sampling, uniforms.take(len(logits)), factors).tolist()
        return [None if r.finished else self._take(i, r, sampled[i]) for i, r in enumerate(self.rows)]

    def _take(self, i: int, r: _Row, token: int) -> int | None:
        """Row `i` keeps `token` (or what its form puts in its place); None when the row ends instead."""
        if r.plan.forced:
            token = r.plan.replay(token)
        elif r.plan.ends_section(token):
            if not r.plan.next_section(r.ids):
                r.finished = True
                return None
            token = r.plan.replay(token)
        token = self._budget(r, token)
        if token is None:
            return None
        r.ids.append(token)
        if self.leans:
            self.leans.played(i, token, r.grammar)
        if self.grammar:
            r.grammar = r.grammar.advance(self.grammar, token)
            r.plan.wrote(token)
            if r.grammar.state == ENDED:
                r.finished = True
        if len(r.ids) >= self.request.max_tokens and not r.finished:
            r.finished = True
            self._trim_to_last_note(r)
        return token

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


def generate(bundle: Bundle, prompt: Prompt, request: Request) -> Session:
    """Run a whole generation and return the finished session."""
    session = Session(bundle, prompt, request)
    for _ in session:
        pass
    return session
