"""Write the shipped prompt MIDIs: public-domain piano openings entered here as notes.

Nothing is copied from an edition or a recording: each opening is typed below as
(beat, length in beats, pitch, voice), then given a gentle phrase arch, voice balance and a
small seeded timing/velocity spread so the prompts do not sound mechanical. Sustain is written
as CC64 in ``track.controls`` because symusic's MIDI writer drops ``Track.pedals``.

Run: ``python training/make_prompts.py [--out assets/prompts]``.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import symusic

TPQ = 480
OUT_DIR = Path(__file__).resolve().parents[1] / "assets" / "prompts"
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Loudness of each voice before shaping: the tune sings over its accompaniment.
VOICE_VELOCITY = {"melody": 70, "inner": 50, "bass": 58}
SEED = 545


def pitch(name: str) -> int:
    """MIDI number of a name like C4, F#3, Bb2 or B#3 (60 = C4)."""
    letter, accidentals, octave = name[0], name[1:-1], int(name[-1])
    return 12 * (octave + 1) + STEPS[letter] + accidentals.count("#") - accidentals.count("b")


@dataclass
class Piece:
    """One opening: notes as (beat, beats, pitch name, voice), pedal spans in beats."""

    filename: str
    title: str
    composer: str
    bars: str
    qpm: float
    time_signature: tuple[int, int]
    dynamic: int  # velocity offset for the character of the piece (pp .. mf)
    notes: list[tuple[float, float, str, str]] = field(default_factory=list)
    pedals: list[tuple[float, float]] = field(default_factory=list)


def bach_prelude() -> Piece:
    """J. S. Bach, Prelude in C major BWV 846 (WTC I), bars 1-5."""
    piece = Piece("bach_prelude_c_major.mid", "Prelude in C major, BWV 846 (WTC I)",
                  "J. S. Bach", "1-5", 72, (4, 4), -4)
    chords = [("C3", "E3", "G3", "C4", "E4"), ("C3", "D3", "A3", "D4", "F4"),
              ("B2", "D3", "G3", "D4", "F4"), ("C3", "E3", "G3", "C4", "E4"),
              ("C3", "E3", "A3", "E4", "A4")]
    for bar, (low, tied, *figure) in enumerate(chords):
        for half in range(2):
            start = bar * 4 + half * 2
            piece.notes.append((start, 2.0, low, "bass"))
            piece.notes.append((start + 0.25, 1.75, tied, "inner"))
            for step, name in enumerate(figure * 2):
                piece.notes.append((start + 0.5 + 0.25 * step, 0.25, name, "melody"))
        piece.pedals.append((bar * 4, bar * 4 + 4))
    return piece


def fur_elise() -> Piece:
    """L. van Beethoven, Bagatelle in A minor WoO 59 'Für Elise', bars 1-8 with the upbeat.

    The upbeat sits at the end of a silent bar 0 so that bar lines stay where they belong.
    """
    piece = Piece("beethoven_fur_elise.mid", "Bagatelle in A minor, WoO 59 \"Für Elise\"",
                  "L. van Beethoven", "upbeat + 1-8", 76, (3, 8), 0)
    sixteenth = 0.25
    bar_beats = 1.5

    def run(bar: int, names: list[str], first: int = 0, voice: str = "melody") -> None:
        for step, name in enumerate(names):
            piece.notes.append((bar * bar_beats + (first + step) * sixteenth, sixteenth, name,
                                voice))

    motif = ["E5", "D#5", "E5", "B4", "D5", "C5"]
    run(0, ["E5", "D#5"], first=4)
    for bar, (top, arpeggio, answer) in {
        2: ("A4", ["A2", "E3", "A3"], ["C4", "E4", "A4"]),
        3: ("B4", ["E2", "E3", "G#3"], ["E4", "G#4", "B4"]),
        4: ("C5", ["A2", "E3", "A3"], ["E4", "E5", "D#5"]),
        6: ("A4", ["A2", "E3", "A3"], ["C4", "E4", "A4"]),
        7: ("B4", ["E2", "E3", "G#3"], ["E4", "C5", "B4"]),
    }.items():
        piece.notes.append((bar * bar_beats, 2 * sixteenth, top, "melody"))
        run(bar, arpeggio, voice="bass")
        run(bar, answer, first=3)
        piece.pedals.append((bar * bar_beats, (bar + 1) * bar_beats))
    run(1, motif)
    run(5, motif)
    piece.notes.append((8 * bar_beats, bar_beats, "A4", "melody"))
    run(8, ["A2", "E3", "A3"], voice="bass")
    piece.pedals.append((8 * bar_beats, 9 * bar_beats + 0.5))
    return piece


def moonlight() -> Piece:
    """L. van Beethoven, Sonata Op. 27 No. 2 'Moonlight', 1st movement, bars 1-4.

    Written in 4/4, which has the same bars as the original alla breve.
    """
    piece = Piece("beethoven_moonlight_sonata.mid",
                  "Piano Sonata No. 14 in C-sharp minor, Op. 27 No. 2, I. Adagio sostenuto",
                  "L. van Beethoven", "1-4", 54, (4, 4), -16)
    triplets = [
        [("G#3", "C#4", "E4")] * 4,
        [("G#3", "C#4", "E4")] * 4,
        [("A3", "C#4", "E4")] * 2 + [("A3", "D4", "F#4")] * 2,
        [("G#3", "B#3", "F#4"), ("G#3", "C#4", "E4"), ("G#3", "C#4", "D#4"),
         ("F#3", "B#3", "D#4")],
    ]
    basses = [[(0, 4, "C#2")], [(0, 4, "B1")], [(0, 2, "A1"), (2, 2, "F#1")], [(0, 4, "G#1")]]
    for bar in range(4):
        for beat, group in enumerate(triplets[bar]):
            for step, name in enumerate(group):
                piece.notes.append((bar * 4 + beat + step / 3, 1 / 3, name, "inner"))
        for beat, length, name in basses[bar]:
            octave_up = name[:-1] + str(int(name[-1]) + 1)
            piece.notes.append((bar * 4 + beat, length, name, "bass"))
            piece.notes.append((bar * 4 + beat, length, octave_up, "bass"))
            piece.pedals.append((bar * 4 + beat, bar * 4 + beat + length))
    return piece


def gymnopedie() -> Piece:
    """E. Satie, Gymnopédie No. 1, bars 1-8 (introduction and first phrase)."""
    piece = Piece("satie_gymnopedie_1.mid", "Gymnopédie No. 1", "E. Satie", "1-8", 76, (3, 4),
                  -12)
    for bar in range(8):
        bass, chord = (("G2", ("B3", "D4", "F#4")) if bar % 2 == 0
                       else ("D2", ("A3", "C#4", "F#4")))
        piece.notes.append((bar * 3, 1.0, bass, "bass"))
        piece.notes += [(bar * 3 + 1, 2.0, name, "inner") for name in chord]
        piece.pedals.append((bar * 3, bar * 3 + 3))
    melody = [(4, 1, "F#5"), (4, 2, "A5"), (5, 0, "G5"), (5, 1, "F#5"), (5, 2, "C#5"),
              (6, 0, "B4"), (6, 1, "C#5"), (6, 2, "D5")]
    piece.notes += [(bar * 3 + beat, 1.0, name, "melody") for bar, beat, name in melody]
    piece.notes.append((7 * 3, 3.0, "A4", "melody"))
    return piece


def minuet() -> Piece:
    """C. Petzold, Minuet in G major BWV Anh. 114 (Notebook for Anna Magdalena Bach), bars 1-8."""
    piece = Piece("petzold_minuet_g_major.mid", "Minuet in G major, BWV Anh. 114",
                  "C. Petzold (long attributed to J. S. Bach)", "1-8", 112, (3, 4), 0)
    right = [
        [(1, "D5"), (0.5, "G4"), (0.5, "A4"), (0.5, "B4"), (0.5, "C5")],
        [(1, "D5"), (1, "G4"), (1, "G4")],
        [(1, "E5"), (0.5, "C5"), (0.5, "D5"), (0.5, "E5"), (0.5, "F#5")],
        [(1, "G5"), (1, "G4"), (1, "G4")],
        [(1, "C5"), (0.5, "D5"), (0.5, "C5"), (0.5, "B4"), (0.5, "A4")],
        [(1, "B4"), (0.5, "C5"), (0.5, "B4"), (0.5, "A4"), (0.5, "G4")],
        [(1, "F#4"), (0.5, "G4"), (0.5, "A4"), (0.5, "B4"), (0.5, "G4")],
        [(3, "A4")],
    ]
    left = [
        [(2, ("G3", "B3", "D4")), (1, ("A3",))], [(3, ("B3",))], [(3, ("C4",))],
        [(3, ("B3",))], [(3, ("A3",))], [(3, ("G3",))],
        [(1, ("D4",)), (1, ("B3",)), (1, ("G3",))],
        [(1, ("D4",)), (0.5, ("D3",)), (0.5, ("C4",)), (0.5, ("B3",)), (0.5, ("A3",))],
    ]
    for voice, hand in (("melody", right), ("bass", left)):
        for bar, notes in enumerate(hand):
            beat = bar * 3.0
            for length, names in notes:
                for name in (names,) if isinstance(names, str) else names:
                    piece.notes.append((beat, length, name, voice))
                beat += length
    return piece


def velocity(piece: Piece, beat: float, voice: str, total: float, rng: random.Random) -> int:
    """Voice level + phrase arch (swell to the middle) + downbeat lean + a little spread."""
    beats_per_bar = piece.time_signature[0] * 4 / piece.time_signature[1]
    arch = 12 * math.sin(math.pi * min(beat / total, 1.0))
    downbeat = 5 if abs(beat / beats_per_bar - round(beat / beats_per_bar)) < 1e-6 else 0
    value = VOICE_VELOCITY[voice] + piece.dynamic + arch + downbeat + rng.uniform(-4, 4)
    return max(1, min(127, round(value)))


def to_score(piece: Piece, rng: random.Random) -> symusic.Score:
    """Build the one-track piano score, with small seeded timing spread and CC64 pedalling."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, piece.qpm))
    score.time_signatures.append(symusic.TimeSignature(0, *piece.time_signature))
    track = symusic.Track(name="Piano", program=0)
    total = max(beat + length for beat, length, _, _ in piece.notes)
    jitter = round(TPQ * 0.02)  # about 10 ms at these tempos
    for beat, length, name, voice in sorted(piece.notes):
        onset = max(0, round(beat * TPQ) + rng.randint(-jitter, jitter))
        # Slightly detached, as a player lifts between notes; the pedal joins what must ring.
        duration = max(round(length * TPQ * 0.92), 1)
        track.notes.append(symusic.Note(onset, duration, pitch(name), velocity(
            piece, beat, voice, total, rng)))
    for start, end in piece.pedals:
        # Syncopated (legato) pedalling: press just after the new harmony, lift at its end.
        track.controls.append(symusic.ControlChange(round((start + 0.1) * TPQ), 64, 100))
        track.controls.append(symusic.ControlChange(round(end * TPQ) - 1, 64, 0))
    track.controls.sort()
    score.tracks.append(track)
    return score


PIECES = (bach_prelude, fur_elise, moonlight, gymnopedie, minuet)


def main() -> None:
    """Write every prompt into the output folder and print its length in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    for make in PIECES:
        piece = make()
        score = to_score(piece, rng)
        path = args.out / piece.filename
        score.dump_midi(path)
        seconds = symusic.Score(path).to("second").end()
        print(f"{path.name}: {piece.composer}, {piece.title}, bars {piece.bars}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
