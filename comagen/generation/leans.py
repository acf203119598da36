"""Everything that shapes the model's logits before a token is drawn, in one pass a step.

A continuation should sound like the pianist continuing: the key prior leans which pitch classes,
the register prior where on the keyboard, the dynamics prior how loud, the density prior the pace
(comagen.generation.keyprior, register, dynamics, density), and each kind of decision may have its
own temperature. Pitch, velocity and duration decisions follow from the REMI grammar state (after a
position, a pitch, a velocity); every other step decides *when* the next note comes. With every
strength 0 and every factor 1 this is a no-op, so sampling is exactly the plain engine's. The pass
works on a copy of the logits, a few dozen operations on vectors of 12-128 values: compiled where the
machine has a C compiler (comagen.native: right after an ONNX step, each numpy call pays for cold
caches), in numpy otherwise, which stays the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from comagen import native
from comagen.generation.density import TIMING_STATES, DensityPrior
from comagen.generation.dynamics import DynamicsPrior
from comagen.generation.keyprior import KeyPrior, lean_pitches, span_of
from comagen.generation.register import RegisterPrior
from comagen.generation.sampling import Sampling
from comagen.music.grammar import (
    AFTER_DURATION,
    AFTER_PITCH,
    AFTER_POSITION,
    AFTER_VELOCITY,
    GrammarState,
    RemiGrammar,
)

PITCH_STATES = (AFTER_POSITION, AFTER_DURATION)  # where the grammar allows a pitch
DECISION_OF_STATE = {AFTER_POSITION: "pitch", AFTER_PITCH: "velocity", AFTER_VELOCITY: "duration"}  # else timing


class Leans(native.KeepsAddresses):
    """The active leans and temperature factors of one generation of `rows` streams."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, sampling: Sampling) -> None:
        s = sampling
        self.key = KeyPrior(grammar, prompt_ids, rows, s.key_strength) if s.key_strength else None
        self.register = RegisterPrior(grammar, prompt_ids, rows, s.register_strength) if s.register_strength else None
        self.dynamics = DynamicsPrior(grammar, prompt_ids, rows, s.dynamics_strength) if s.dynamics_strength else None
        self.density = DensityPrior(grammar, prompt_ids, rows, s.density_strength) if s.density_strength else None
        self.factors = s.decision_temperatures()
        self.pitch_span = span_of(grammar)
        self._pitch_ids = frozenset(grammar.pitch_ids.tolist())
        self._pitch: tuple[np.ndarray, np.ndarray] | None = None  # key + register and its exp, until a pitch plays
        span = self.pitch_span  # the compiled pitch lean reads one run of ids: (start, length), or None
        self._span = (span.start, span.stop - span.start) if isinstance(span, slice) and native.LIB else None
        self._class_array = None if self.key is None else self.key.classes.astype(np.int64)  # each pitch's class
        self.take_addresses()

    def take_addresses(self) -> None:
        """Where each pitch's class and `_pitch`'s arrays start in memory, and their row stride, for C."""
        self._classes = None if self._class_array is None else self._class_array.ctypes.data
        lean, weight = self._pitch or (np.zeros((0, 0)), np.zeros((0, 0)))
        self._pitch_at = (lean.ctypes.data, weight.ctypes.data, lean.strides[0])

    @classmethod
    def maybe(cls, grammar: RemiGrammar | None, prompt_ids: list[int], rows: int, sampling: Sampling) -> Leans | None:
        """The leans a request asks for, or None when it asks for none (or there is no grammar to read)."""
        if grammar is None:
            return None
        leans = cls(grammar, prompt_ids, rows, sampling)
        active = leans.key or leans.register or leans.dynamics or leans.density or leans.factors
        return leans if active else None

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor, states: list[GrammarState]) -> torch.Tensor:
        """The leaned logits [B, V] for rows at grammar `states` (`leaned` on torch tensors)."""
        out = self.leaned(logits.float().numpy(), allowed.numpy(), states)
        return logits if out is None else torch.from_numpy(out)

    def shaped(self, logits: np.ndarray, allowed: np.ndarray,
               states: list[GrammarState]) -> tuple[np.ndarray, np.ndarray | None]:
        """What a sampler draws from for rows at grammar `states`: the (leaned) logits [B, V] and each
        row's temperature factor (None: all 1)."""
        leaned = self.leaned(logits, allowed, states)
        return (logits if leaned is None else leaned), self.temperature_factors(states)

    def leaned(self, logits: np.ndarray, allowed: np.ndarray, states: list[GrammarState]) -> np.ndarray | None:
        """A leaned copy of logits [B, V] for rows at grammar `states`, or None where nothing leans: the
        pitch leans act only on steps where a pitch may come, and most steps decide a velocity, a
        duration or a position, and cost nothing."""
        kinds = {s.state for s in states}
        pitch = (self.key or self.register) and not kinds.isdisjoint(PITCH_STATES)
        dynamics = self.dynamics and AFTER_PITCH in kinds
        density = self.density and not kinds.isdisjoint(TIMING_STATES)
        if not (pitch or dynamics or density):
            return None
        out = logits.copy()
        if pitch:
            self._lean_pitches(out, allowed)
        if dynamics:
            self.dynamics.apply(out, states)
        if density:
            self.density.apply(out, allowed, states)
        return out

    def _pitch_lean(self) -> tuple[np.ndarray, np.ndarray]:
        """Key and register as one lean on the pitch tokens [B, G], and its exp; kept until a pitch is played."""
        if self._pitch is None:
            if self._span is not None:  # compiled: one call a row
                self._pitch = self._compiled_pitch_lean()
            else:
                parts = [p.lean() for p in (self.key, self.register) if p]
                lean = parts[0] if len(parts) == 1 else parts[0] + parts[1]
                self._pitch = lean, np.exp(lean)
            self.take_addresses()
        return self._pitch

    def _compiled_pitch_lean(self) -> tuple[np.ndarray, np.ndarray]:
        """`_pitch_lean`'s arrays made by the compiled `pitch_lean`, from the priors' histograms."""
        key = None if self.key is None else self.key.histogram.log_p()
        register = None if self.register is None else self.register.histogram.log_p()
        rows, n = len(key if register is None else register), self._span[1]
        lean, weight = np.empty((rows, n)), np.empty((rows, n))
        for r in range(rows):
            native.LIB.pitch_lean(None if key is None else key.ctypes.data + 8 * r * key.shape[1],
                                  self._classes, 0.0 if key is None else self.key.strength,
                                  None if register is None else register.ctypes.data + 8 * r * n,
                                  0.0 if register is None else self.register.strength, n,
                                  lean.ctypes.data + 8 * r * n, weight.ctypes.data + 8 * r * n)
        return lean, weight

    def _lean_pitches(self, out: np.ndarray, allowed: np.ndarray) -> None:
        """`lean_pitches` on the rows [B, V], in place: compiled a row at a time where the pitch tokens are
        one run and the logits float32 (comagen.native), else in numpy."""
        lean, weight = self._pitch_lean()
        if self._span is None or not native.reads(out, allowed):
            lean_pitches(out, allowed, self.pitch_span, lean, weight)
            return
        (start, n), (lean_at, weight_at, stride), width = self._span, self._pitch_at, out.shape[1]
        for r in range(len(out)):
            native.LIB.kept_mass(out.ctypes.data + 4 * (r * width + start), allowed.ctypes.data + r * width + start,
                                 n, lean_at + r * stride, weight_at + r * stride)

    def temperature_factors(self, states: list[GrammarState]) -> np.ndarray | None:
        """Per row, the factor on the temperature for the decision its state makes (None: all 1)."""
        if self.factors is None:
            return None
        return np.array([self.factors[DECISION_OF_STATE.get(s.state, "timing")] for s in states])

    def played(self, row: int, token: int, before: GrammarState) -> None:
        """Tell every lean what a row played (`before`: its grammar state before `token`)."""
        if token in self._pitch_ids:
            self._pitch = None  # the key and register leans change
        if self.key:
            self.key.played(row, token)
        if self.register:
            self.register.played(row, token)
        if self.dynamics:
            self.dynamics.played(row, token)
        if self.density:
            self.density.played(row, token, before)
