"""Melformer (#25): what the audio codec and its transformer cost and reach, on validation (or test) renders.

    python bench/melformer.py --beats DIR [--checkpoint DIR] [--section input|recon|stream|bits|all]
        [--files 5] [--seconds 32] [--split validation|test] [--train-beats TRAIN_DIR] [--data MAESTRO] [--json]

DIR holds beat-aligned renders (training/render_audio.py); its validation/ (or test/, reported once) files are read.
- input: why the codec reads the waveform. A spectrogram codec needs its phase back: Griffin-Lim
  (32 iterations) on the *true* magnitudes is its ceiling; its CPU time per beat against the beat's
  0.5 s, beside the waveform decoder's.
- recon: the codec's reconstruction (SNR, multi-resolution STFT distance, mel distance, chroma correlation)
  at its bitrate, beside a plain mu-law baseline at the same bits per second; and note F1 against the MIDI
  each clip was rendered from (from --data), transcribed by basic-pitch (comagen/training/transcribe.py), beside
  the original render transcribed the same way (the transcriber's ceiling).
- stream: the continuation's speed on one thread: a beat sampled and decoded against the beat's length,
  and each clip's first 16 beats continued for 16: key consistency (correlation of mean chroma with the
  prompt's) and loudness difference, beside the real next beats (ceiling) and another piece (floor); then
  all four and the prompt transcribed, and the continuation benchmark's statistics (comagen/training/
  continuation.py) taken on those notes, as closeness (1 = the real next beats, 0 = another piece).
- bits (with --train-beats): the melformer's bits per beat beside a unigram and a bigram over the same codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root, not bench/ (bench/tokenize.py shadows stdlib)

import argparse
import json
import math
import time

import numpy as np
import soxr
import torch

from comagen.bundle.audio import load_audio_bundle
from comagen.errors import ComagenError
from comagen.model.vqvae import mel_distance, stft_loss
from comagen.report import add_data_options, emit
from comagen.training.beat_data import beat_files, load_stream
from comagen.training.continuation import CLOSENESS, Notes, closeness, compare
from comagen.training.transcribe import midi_notes, note_scores, source_midi, transcribe
from comagen.training.vqvae_run import reconstruct, snr_db

SPB = 4000  # the codec's rate: 8 kHz at 120 bpm
GL_FFT = 512
EVAL_CODES = 2048  # codes scored per render, as training/configs/melformer.json's eval_max_tokens


ROOT = Path(__file__).resolve().parents[1]


def clips(folder: Path, files: int, beats: int, split: str = "validation") -> list[torch.Tensor]:
    return [torch.from_numpy(load_stream(f, SPB)[: beats * SPB]) for f in beat_files(folder, split, files)]


def references(folder: Path, files: int, seconds: float, split: str, data: Path) -> list[Notes]:
    """The notes each clip was rendered from: its MIDI file's first `seconds` (renders keep the file's stem)."""
    return [midi_notes(source_midi(data, f.stem), seconds) for f in beat_files(folder, split, files)]


def griffin_lim(mag: torch.Tensor, length: int, iters: int = 32) -> torch.Tensor:
    """A waveform whose STFT magnitude approaches `mag` (the phase a spectrogram codec would have to invent)."""
    window = torch.hann_window(GL_FFT)
    phase = torch.exp(2j * math.pi * torch.rand(mag.shape))
    for _ in range(iters):
        wave = torch.istft(mag * phase, GL_FFT, GL_FFT // 4, window=window, length=length)
        spec = torch.stft(wave, GL_FFT, GL_FFT // 4, window=window, return_complex=True)
        phase = spec / spec.abs().clamp(min=1e-8)
    return torch.istft(mag * phase, GL_FFT, GL_FFT // 4, window=window, length=length)


def chroma(x: torch.Tensor) -> np.ndarray:
    """12 x frames: STFT bins 27.5 Hz-4 kHz folded onto pitch classes."""
    mag = torch.stft(x, 2048, 512, window=torch.hann_window(2048), return_complex=True).abs().numpy()
    freqs = np.fft.rfftfreq(2048, 1 / (SPB * 2))
    keep = (freqs > 27.5) & (freqs < 4000)
    pc = np.round(12 * np.log2(freqs[keep] / 440.0)).astype(int) % 12
    return np.stack([mag[keep][pc == c].sum(0) for c in range(12)])


def chroma_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Correlation of the two signals' chroma, frame by frame."""
    return float(np.corrcoef(chroma(a).ravel(), chroma(b).ravel())[0, 1])


def key_closeness(prompt: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """(correlation of the two passages' mean chroma: key consistency, |loudness difference| in dB)."""
    key = float(np.corrcoef(chroma(prompt).mean(1), chroma(after).mean(1))[0, 1])
    loud = 20 * math.log10(float(after.pow(2).mean().sqrt() + 1e-9) / float(prompt.pow(2).mean().sqrt() + 1e-9))
    return key, abs(loud)


def mu_law(x: torch.Tensor, bits_per_second: float) -> torch.Tensor:
    """8-bit mu-law at the sample rate that spends `bits_per_second`, back up to the codec's rate."""
    low_rate = bits_per_second / 8
    small = soxr.resample(x.numpy(), SPB * 2, low_rate)
    mu = 255.0
    q = np.round(np.sign(small) * np.log1p(mu * np.abs(small).clip(0, 1)) / np.log1p(mu) * 127) / 127
    back = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
    out = soxr.resample(back.astype(np.float32), low_rate, SPB * 2)
    return torch.from_numpy(np.pad(out, (0, max(0, len(x) - len(out))))[: len(x)])


def input_rows(waves: list[torch.Tensor], codec: torch.nn.Module | None) -> list[dict]:
    rows, beats = [], sum(len(w) for w in waves) / SPB
    t0, recon = time.process_time(), []
    for w in waves:
        mag = torch.stft(w, GL_FFT, GL_FFT // 4, window=torch.hann_window(GL_FFT), return_complex=True).abs()
        recon.append(griffin_lim(mag, len(w)))
    rows.append(_row("spectrogram + Griffin-Lim (true magnitudes)", waves, recon,
                     (time.process_time() - t0) / beats))
    if codec is not None:
        t0 = time.process_time()
        codes = [codec.encode(w[None]) for w in waves]
        t1 = time.process_time()
        recon = [codec.decode(c)[0] for c in codes]
        rows.append(_row("waveform VQ-VAE (decoder only timed)", waves, recon, (time.process_time() - t1) / beats))
        rows[-1]["encode_ms_per_beat"] = round(1000 * (t1 - t0) / beats, 1)
    return rows


def _row(name: str, waves: list[torch.Tensor], recons: list[torch.Tensor], cpu_per_beat: float | None,
         refs: list[Notes] | None = None) -> dict:
    pairs = list(zip(recons, waves, strict=True))
    row = {"method": name,
           "snr_db": round(float(np.mean([snr_db(r, w) for r, w in pairs])), 2),
           "stft_distance": round(float(np.mean([float(stft_loss(r[None], w[None])) for r, w in pairs])), 3),
           "mel_distance": round(float(np.mean([mel_distance(r, w, SPB * 2) for r, w in pairs])), 3),
           "chroma_corr": round(float(np.mean([chroma_corr(r, w) for r, w in pairs])), 3)}
    if refs is not None:
        row.update(note_rows(recons, refs))
    if cpu_per_beat is not None:
        row["cpu_ms_per_beat"] = round(1000 * cpu_per_beat, 1)
    return row


def note_rows(recons: list[torch.Tensor], refs: list[Notes]) -> dict:
    """Note precision, recall and F1 (onsets within 50 ms) of each clip's transcription against its MIDI,
    pooled over clips as the mean of per-clip scores."""
    scores = [note_scores(ref, transcribe(r.numpy(), SPB * 2)) for r, ref in zip(recons, refs, strict=True)]
    return {f"note_{k}": round(float(np.mean([s[k] for s in scores])), 3) for k in ("precision", "recall", "f1")}


def recon_rows(waves: list[torch.Tensor], codec: torch.nn.Module, refs: list[Notes] | None = None) -> list[dict]:
    """The codec and the mu-law baselines; with `refs` (each clip's MIDI notes) also note F1, and last the
    original render transcribed the same way (the transcriber's ceiling at the codec's 8 kHz)."""
    bps = codec.codes_per_beat * math.log2(codec.cfg.codebook_size) * 2  # 120 bpm: 2 beats a second
    with torch.no_grad():
        coded = [reconstruct(codec, w) for w in waves]
    rows = [_row(f"VQ-VAE ({bps:.0f} bit/s)", waves, coded, None, refs)]
    for rate, note in ((bps / 8, f"{bps:.0f} bit/s"), (500, "4,000 bit/s"), (8000, "64,000 bit/s, for scale")):
        rows.append(_row(f"mu-law 8 bit at {rate:,.0f} Hz ({note})", waves, [mu_law(w, rate * 8) for w in waves],
                         None, refs))
    if refs is not None:
        rows.append({"method": "original render, 8 kHz mono (ceiling)", **note_rows(waves, refs)})
    return rows


def stream_rows(waves: list[torch.Tensor], bundle_models: dict, beats: int = 8) -> list[dict]:
    from comagen.audio.continuation import continue_audio

    prompt = waves[0][: 8 * SPB].numpy()[:, None]
    t0 = time.perf_counter()
    done = list(continue_audio(bundle_models["codec"], bundle_models["melformer"], prompt, SPB * 2, 120.0, beats))
    wall = (time.perf_counter() - t0) / len(done)
    return [{"beats": len(done), "ms_per_beat": round(1000 * wall, 1), "beat_ms": 500,
             "x_realtime": round(0.5 / wall, 2)}]


def continuation_rows(waves: list[torch.Tensor], models: dict, beats: int = 16) -> tuple[list[dict], list[dict]]:
    """Each clip's first `beats` beats continued for `beats` more, beside the real next beats (ceiling) and
    another clip's (floor): key consistency and loudness on the audio, then the symbolic continuation
    benchmark's statistics on the transcribed notes of prompt and continuation."""
    from comagen.audio.continuation import continue_audio

    found: dict[str, list[tuple[float, float]]] = {"melformer continuation": [], "real next beats (ceiling)": [],
                                                    "real next beats through the codec": [],
                                                    "another piece (floor)": []}
    stats: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    for i, wave in enumerate(waves):
        prompt, n = wave[: beats * SPB], beats * SPB
        with torch.no_grad():
            made = np.concatenate(list(continue_audio(models["codec"], models["melformer"], prompt.numpy()[:, None],
                                                      SPB * 2, 120.0, beats, seed=i)))[:, 0]
            coded = reconstruct(models["codec"], wave[n:2 * n])
        other = waves[(i + 1) % len(waves)]
        heard = transcribe(prompt.numpy(), SPB * 2)
        for name, after in zip(found, (torch.from_numpy(made[:n]), wave[n:2 * n], coded, other[n:2 * n]),
                               strict=True):
            found[name].append(key_closeness(prompt, after))
            stats[name].append(compare(heard, transcribe(after.numpy(), SPB * 2)))
    audio = [{"continuation": name, "key_consistency": round(float(np.mean([k for k, _ in v])), 3),
              "loudness_diff_db": round(float(np.mean([d for _, d in v])), 2)} for name, v in found.items()]
    means = {name: {k: float(np.mean([s[k] for s in v])) for k in CLOSENESS} for name, v in stats.items()}
    real, floor = means["real next beats (ceiling)"], means["another piece (floor)"]
    notes = []
    for name, m in means.items():
        row = {"continuation": name, **{k: round(v, 3) for k, v in m.items()}}
        if name not in ("real next beats (ceiling)", "another piece (floor)"):
            close = {k: closeness(m[k], real[k], floor[k]) for k in CLOSENESS}
            row.update({f"{k}_closeness": round(v, 2) for k, v in close.items()})
            row["mean_closeness"] = round(float(np.nanmean(list(close.values()))), 2)
        notes.append(row)
    return audio, notes


def bits_rows(folder: Path, split: str, files: int, train_folder: Path, models: dict) -> list[dict]:
    """The melformer's bits per beat on `files` renders of `split` (picked and cut as the run scores validation)
    beside an add-one unigram and bigram fitted on the codes of its train renders (`train_folder`)."""
    from comagen.training.melformer_run import code_bits, encode_files, ngram_bits

    codec, melformer, cpu = models["codec"], models["melformer"], torch.device("cpu")
    found = beat_files(folder, split)
    picks = np.linspace(0, len(found) - 1, min(files, len(found))).astype(int)
    scored = [c[:EVAL_CODES] for c in encode_files(codec, [found[i] for i in picks], cpu)]
    train = encode_files(codec, beat_files(train_folder, "train"), cpu)
    per_beat, size = codec.codes_per_beat, codec.cfg.codebook_size
    rows = [{"model": name, "bits_per_beat": round(ngram_bits(train, scored, size, order) * per_beat, 2)}
            for name, order in (("unigram", 1), ("bigram", 2))]
    with torch.no_grad():
        bits = code_bits(melformer, scored, melformer.cfg.max_seq_len, cpu) * per_beat
    return [*rows, {"model": "melformer", "bits_per_beat": round(bits, 2)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=Path, required=True, help="beat-aligned renders (training/render_audio.py)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="an audio bundle (codec, or codec + melformer)")
    parser.add_argument("--section", choices=("input", "recon", "stream", "bits", "all"), default="all")
    parser.add_argument("--train-beats", type=Path, default=None,
                        help="bits: the melformer's train renders, for the n-grams (DIR/train)")
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=32.0)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="test: render it with render_audio.py --split test; report it once")
    add_data_options(parser, ROOT)  # --data: the MIDI each render came from, for note F1 (missing: no note F1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    waves = clips(args.beats, args.files, int(args.seconds * 2), args.split)
    models = load_audio_bundle(args.checkpoint).models if args.checkpoint else {}
    codec = models.get("codec")
    meta = {"files": len(waves), "seconds_each": args.seconds, "split": args.split, "threads": 1}
    tables = {}
    if args.section in ("input", "all"):
        tables["input"] = ("Codec input: waveform or spectrogram", input_rows(waves, codec))
    if codec is not None and args.section in ("recon", "all"):
        refs = (references(args.beats, args.files, args.seconds, args.split, args.data)
                if (args.data / "maestro-v3.0.0.csv").is_file() else None)
        title = "Codec reconstruction at its bitrate" + ("" if refs else " (no MAESTRO at --data: no note F1)")
        tables["recon"] = (title, recon_rows(waves, codec, refs))
    if "melformer" in models and args.section in ("stream", "all"):
        tables["stream"] = ("Audio continuation speed (one thread)", stream_rows(waves, models))
        audio, notes = continuation_rows(waves, models)
        tables["continuation"] = ("Continuation against the prompt (16 beats after 16)", audio)
        tables["continuation_notes"] = ("The same, transcribed: continuation statistics and closeness", notes)
    if "melformer" in models and args.train_beats and args.section in ("bits", "all"):
        tables["bits"] = (f"Bits per beat on {args.split} (first {EVAL_CODES} codes of each render)",
                          bits_rows(args.beats, args.split, args.files, args.train_beats, models))
    for title, rows in tables.values():
        emit(title, rows, {}, as_json=False)
    print(" ".join(f"{k}: {v}" for k, v in meta.items()))
    if args.json:
        print(json.dumps({"title": "Melformer", **meta, **{k: rows for k, (_, rows) in tables.items()}}))

if __name__ == "__main__":
    try:
        main()
    except ComagenError as exc:  # a missing render, MIDI file or transcriber: one line
        sys.exit(f"error: {exc}")
