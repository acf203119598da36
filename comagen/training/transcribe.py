"""Piano audio back to notes, so an audio codec can be scored on the notes it keeps (#25): basic-pitch's
ONNX model (shipped inside its wheel; nothing is downloaded) through ONNX Runtime, and note F1 against the
MIDI the audio was rendered from (mir_eval's onset-only matching, 50 ms). The notes come back as the
continuation benchmark's `Notes`, so a transcribed continuation goes through the symbolic statistics too.

basic-pitch, librosa and mir_eval are development dependencies (`bash scripts/setup.sh --dev`); basic-pitch
is installed without its declared TensorFlow, which it only needs for its other model formats.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soxr

from comagen.errors import AudioError
from comagen.music.midi import load_score
from comagen.training.continuation import Notes

ONSET_TOLERANCE = 0.05  # seconds: mir_eval's and MIREX's default for note onsets
BATCH = 8  # 2 s windows run at a time


def _basic_pitch() -> tuple[ModuleType, ModuleType, ModuleType]:
    """basic_pitch's inference, note_creation and constants modules, or one line saying how to install it.
    Its import logs a warning for each model runtime it lacks (TensorFlow, CoreML, TFLite): muted, as we
    only ever load its ONNX model."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from basic_pitch import constants, inference, note_creation
    except ImportError as exc:
        raise AudioError(f"note transcription needs basic-pitch ({exc}); run: bash scripts/setup.sh --dev") from None
    finally:
        logging.disable(previous)
    return inference, note_creation, constants


@lru_cache(maxsize=4)
def _session(threads: int) -> Any:
    """The ONNX Runtime session of basic-pitch's shipped model, built once per thread count."""
    import onnxruntime as ort

    inference, _, _ = _basic_pitch()
    model = Path(inference.__file__).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not model.is_file():
        raise AudioError(f"{model}: basic-pitch's ONNX model is missing from its package; reinstall basic-pitch")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def transcribe(wave: np.ndarray, rate: int, threads: int = 1, onset_threshold: float = 0.5,
               frame_threshold: float = 0.3, min_note_ms: float = 127.7) -> Notes:
    """The notes basic-pitch hears in a mono waveform (its own defaults: the thresholds and 127.7 ms
    shortest note of `basic_pitch.inference.predict`); velocity is its amplitude x 127."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or not len(wave) or rate <= 0:
        raise AudioError(f"transcribe needs a non-empty mono waveform and a positive rate (got shape "
                         f"{wave.shape}, rate {rate})")
    inference, note_creation, const = _basic_pitch()
    audio = soxr.resample(wave, rate, const.AUDIO_SAMPLE_RATE).astype(np.float32)
    overlap_frames = 30  # as basic_pitch.inference.run_inference: windows overlap, half the overlap is cut
    overlap = overlap_frames * const.FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, np.float32), audio])
    windows = [w for w, _ in inference.window_audio_file(padded, const.AUDIO_N_SAMPLES - overlap)]
    session, outputs = _session(threads), {"note": [], "onset": [], "contour": []}
    for i in range(0, len(windows), BATCH):
        batch = np.stack(windows[i:i + BATCH]).astype(np.float32)
        found = session.run(["StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0"],
                            {"serving_default_input_2:0": batch})
        for key, value in zip(("note", "onset", "contour"), found, strict=True):
            outputs[key].append(value)
    output = {k: inference.unwrap_output(np.concatenate(v), len(audio), overlap_frames) for k, v in outputs.items()}
    min_len = int(np.round(min_note_ms / 1000 * (const.AUDIO_SAMPLE_RATE / const.FFT_HOP)))
    _, events = note_creation.model_output_to_notes(output, onset_thresh=onset_threshold, frame_thresh=frame_threshold,
                                                    min_note_len=min_len, include_pitch_bends=False)
    seconds = len(wave) / rate
    if not events:
        return Notes(*(np.zeros(0) for _ in range(4)), seconds)
    start, end, pitch, amplitude = (np.array([e[i] for e in events], dtype=float) for i in range(4))
    order = np.argsort(start, kind="stable")
    return Notes(start[order], (end - start)[order], pitch[order], np.round(amplitude[order] * 127), seconds)


def midi_notes(midi: str | Path, seconds: float, start: float = 0.0) -> Notes:
    """The notes of a MIDI file with onsets in [start, start + seconds): what a render of it should give back."""
    return Notes.from_score(load_score(midi), start, seconds)


def source_midi(data: str | Path, stem: str) -> Path:
    """The MAESTRO file a render named `stem` came from (renders keep the MIDI file's stem), or one line."""
    found = sorted(Path(data).glob(f"*/{stem}.mid*"))
    if not found:
        raise AudioError(f"{stem}: no MIDI file of that name under {data}/*/ (is --data the MAESTRO folder?)")
    return found[0]


def note_scores(reference: Notes, estimate: Notes, tolerance: float = ONSET_TOLERANCE) -> dict[str, float]:
    """Precision, recall and F1 of `estimate`'s notes against `reference`'s: a note matches when its pitch is
    within 50 cents and its onset within `tolerance` seconds (mir_eval, offsets ignored). No reference note and
    no estimated note is a perfect 1; one side empty is 0."""
    try:
        from mir_eval.transcription import precision_recall_f1_overlap
        from mir_eval.util import midi_to_hz
    except ImportError as exc:
        raise AudioError(f"note F1 needs mir_eval ({exc}); run: bash scripts/setup.sh --dev") from None
    if not len(reference.time) or not len(estimate.time):
        score = float(not len(reference.time) and not len(estimate.time))
        return {"precision": score, "recall": score, "f1": score}

    def parts(notes: Notes) -> tuple[np.ndarray, np.ndarray]:
        ends = notes.time + np.maximum(notes.duration, 1e-3)  # mir_eval refuses a note that ends where it starts
        return np.stack([notes.time, ends], axis=1), midi_to_hz(notes.pitch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = precision_recall_f1_overlap(*parts(reference), *parts(estimate), onset_tolerance=tolerance,
                                                 offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}
