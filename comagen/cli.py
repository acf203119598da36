"""`python -m comagen ...`: the command-line contract of DESIGN §7.

Every command prints one clear line on stderr and exits non-zero for a user mistake (a
`ComagenError`); with `--json` the last stdout line is exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from comagen.errors import ComagenError

if TYPE_CHECKING:
    from comagen.generation.prompt import Prompt
    from comagen.music.tokenizer import PianoTokenizer

COMMANDS: dict[str, Callable[[argparse.Namespace], dict | None]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], dict | None]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


def _tokenizer(args: argparse.Namespace):  # noqa: ANN202
    from comagen.music.tokenizer import PianoTokenizer

    return PianoTokenizer.load(args.tokenizer) if getattr(args, "tokenizer", None) else PianoTokenizer()


@command("roundtrip")
def roundtrip(args: argparse.Namespace) -> dict:
    from comagen.music.roundtrip import roundtrip_file

    result = roundtrip_file(_tokenizer(args), args.file).to_dict()
    if not args.json:
        for key, value in result.items():
            print(f"{key:>26}  {value}")
    return result


@command("tokenize")
def tokenize(args: argparse.Namespace) -> dict:
    import time

    from comagen.training.data import load_index, select_split, tokenize_pieces

    pieces = select_split(load_index(args.data), args.split)
    t0 = time.perf_counter()
    report = tokenize_pieces(pieces, _tokenizer(args), args.cache, workers=args.workers, progress=not args.quiet)
    result = {
        "cache_dir": str(report.cache_dir),
        "files": len(pieces),
        "tokenized": report.done,
        "already_cached": report.cached,
        "failed": [{"file": k, "error": v} for k, v in report.failed],
        "notes": report.notes,
        "tokens": report.tokens,
        "tokens_per_note": round(report.tokens / max(report.notes, 1), 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    for key, error in report.failed:
        print(f"skipped {key}: {error}", file=sys.stderr)
    if not args.json:
        print(f"{len(pieces)} files ({report.done} tokenized, {report.cached} cached, {len(report.failed)} failed), "
              f"{report.notes} notes, {report.tokens} tokens -> {report.cache_dir}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comagen", description="comagen: continue solo-piano MIDI")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("roundtrip", help="tokenize + decode a MIDI file and report timing errors")
    p.add_argument("file", type=Path)
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json (default: the built-in REMI settings)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("tokenize", help="pre-tokenize a MAESTRO-style folder into the cache")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=Path("cache"))
    p.add_argument("--split", default=None, help="train, validation, test (default: all)")
    p.add_argument("--tokenizer", type=Path)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")

    for extra in EXTRA_PARSERS:
        extra(sub)
    return parser


EXTRA_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = []


def run_for_user(work: Callable[[], dict | None], *, as_json: bool, interrupted: str = "interrupted") -> int:
    """Run a command: a user mistake is one line on stderr and exit 2; with `as_json` the result
    is one JSON object on the last stdout line. Shared by every command-line entry point."""
    try:
        result = work()
    except ComagenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    if as_json and result is not None:
        print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_for_user(lambda: COMMANDS[args.command](args), as_json=getattr(args, "json", False))


@command("evaluate")
def evaluate(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.training.data import load_index, load_tokenized, select_split
    from comagen.training.evaluate import evaluate_pieces

    if is_pianoroll(args.checkpoint):
        return _evaluate_pianoroll(args)
    bundle = load_bundle(args.checkpoint)
    pieces = select_split(load_index(args.data), args.split)
    pieces = sorted(pieces, key=lambda p: p.key)[: args.max_files]
    data = load_tokenized(pieces, bundle.tokenizer, args.cache, progress=not args.json)
    seq_len = args.seq_len or int(bundle.summary.get("seq_len") or bundle.config.max_seq_len)
    result = evaluate_pieces(bundle.model, data, bundle.tokenizer, bundle.composers, seq_len=seq_len,
                             max_tokens=args.max_tokens, progress=not args.json)
    result = {"checkpoint": str(args.checkpoint), "split": args.split, "seq_len": seq_len, **result}
    if not args.json:
        print(f"{result['files']} files, {result['notes']} notes, {result['tokens']} tokens: "
              f"{result['nll_per_token']:.4f} nats/token, {result['bits_per_note']:.4f} bits/note, "
              f"perplexity {result['perplexity']:.3f}")
        for kind, bits in result.get("bits_per_note_by_type", {}).items():
            print(f"  {kind:<10} {bits:7.3f} bits/note")
    return result


def _evaluate_pianoroll(args: argparse.Namespace) -> dict:
    """evaluate with a piano-roll bundle: frame NLL in nats per frame (--max-tokens: frames per file)."""
    from comagen.bundle.pianoroll import load_pianoroll
    from comagen.training.data import load_index, select_split
    from comagen.training.frame_data import load_frame_pieces
    from comagen.training.frame_nll import model_nll

    bundle = load_pianoroll(args.checkpoint)
    pieces = sorted(select_split(load_index(args.data), args.split), key=lambda p: p.key)[: args.max_files]
    data = load_frame_pieces(pieces, bundle.frames)
    nll = model_nll(bundle.model, data, args.max_tokens or 1_000_000, "cpu")
    if not args.json:
        print(f"{len(data)} files: {nll:.4f} nats per frame")
    return {"checkpoint": str(args.checkpoint), "split": args.split, "files": len(data), "nats_per_frame": nll}


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="NLL per token and bits per note of a checkpoint on MIDI files")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="a MAESTRO folder or any folder of MIDI files")
    p.add_argument("--split", default="test")
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="score at most N tokens per file")
    p.add_argument("--seq-len", type=int, default=None, help="window length (default: the training length)")
    p.add_argument("--cache", type=Path, default=Path("cache"))
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_evaluate_parser)


@command("generate")
def generate_cmd(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.prompt import load_prompt
    from comagen.generation.request import MAX_TOKENS_CAP, tokens_for_seconds
    from comagen.generation.session import generate
    from comagen.generation.settings import NO_FORM, bundle_settings, settings_from_cli

    if is_pianoroll(args.checkpoint):
        return _generate_pianoroll(args)
    bundle = load_bundle(args.checkpoint)
    settings = settings_from_cli(args, bundle_settings(bundle))  # options not given: the checkpoint's tuned defaults
    prompt = load_prompt(bundle.tokenizer, args.prompt, args.prompt_seconds)
    max_tokens = args.tokens or (MAX_TOKENS_CAP if settings.form != NO_FORM else tokens_for_seconds(settings.seconds))
    request = settings.request(bundle.composers, bundle.config.windows, max_tokens=min(max_tokens, MAX_TOKENS_CAP),
                               runtime=args.runtime, until_seconds=not args.tokens)
    session = generate(bundle, prompt, request)
    if session.runtime.note:
        print(f"note: {session.runtime.note}", file=sys.stderr)
    rows = [session.generated(r) for r in range(request.variations)]
    written = write_takes(Path(args.out), bundle.tokenizer, prompt, rows)
    score = session.score(0)
    result = {"out": written, "prompt_tokens": len(prompt.ids), "prompt_seconds": prompt.seconds,
              "continuation_seconds": round(max(score.to("second").end() - prompt.seconds, 0.0), 2),
              "composer": bundle.composers.names[request.composer], **session.stats}
    if request.form:
        result["section_starts"] = session.section_starts(0)
    if not args.json:
        print(f"wrote {', '.join(written)}: {result['tokens']} tokens, {result['notes']} notes, "
              f"{result['music_seconds']} s of music at {result['tokens_per_s']} tokens/s "
              f"({result['realtime_factor']}x real time)")
    return result


def write_takes(out: Path, tokenizer: PianoTokenizer, prompt: Prompt, rows: list[list[int]]) -> list[str]:
    """Each variation's continuation spliced into its prompt as MIDI: `out`, or OUT_1, OUT_2, ... for several."""
    from comagen.generation.prompt import continuation_score
    from comagen.music.midi import midi_bytes

    written = []
    for row, ids in enumerate(rows):
        path = out if len(rows) == 1 else out.with_name(f"{out.stem}_{row + 1}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(midi_bytes(continuation_score(tokenizer, prompt, ids)))
        written.append(str(path))
    return written


def is_pianoroll(checkpoint: Path) -> bool:
    from comagen.bundle.pianoroll import is_pianoroll_bundle

    return is_pianoroll_bundle(checkpoint)


def _generate_pianoroll(args: argparse.Namespace) -> dict:
    """generate with a piano-roll bundle through the app's own `FrameSession`: the same --seconds,
    --temperature, --top-k, --top-p, --seed, --form, --section-bars and --variations, new notes voiced
    from the prompt's velocities and onsets, spliced into the prompt file as the token models' are."""
    from comagen.bundle.pianoroll import frame_bundle
    from comagen.generation.frame_session import FrameSession
    from comagen.generation.prompt import load_prompt
    from comagen.generation.request import MAX_TOKENS_CAP
    from comagen.generation.settings import bundle_settings, settings_from_cli

    if args.tokens is not None:
        raise ComagenError("--tokens is for token models; a piano-roll model takes --seconds")
    bundle = frame_bundle(args.checkpoint)
    settings = settings_from_cli(args, bundle_settings(bundle))
    prompt = load_prompt(bundle.tokenizer, args.prompt, args.prompt_seconds)
    session = FrameSession(bundle, prompt, settings.request(bundle.composers, None, max_tokens=MAX_TOKENS_CAP))
    for _ in session:
        pass
    progress = session.snapshot()
    written = write_takes(Path(args.out), bundle.tokenizer, prompt, [list(ids) for ids in progress.rows])
    frames_per_s = round(session.steps / session.elapsed, 1) if session.elapsed else 0.0
    result = {"out": written, "prompt_seconds": prompt.seconds, "frames": session.steps,
              "frames_per_s": frames_per_s, **progress.stats}
    if not args.json:
        print(f"wrote {', '.join(written)}: {result['frames']} frames, {result['notes']} notes, "
              f"{result['music_seconds']} s of music at {frames_per_s} frames/s "
              f"({result['realtime_factor']}x real time)")
    return result


@command("attention")
def attention_cmd(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.attention import capture_attention
    from comagen.generation.prompt import load_prompt
    from comagen.generation.settings import parse_windows
    from comagen.render.attention_figure import attention_figure

    bundle = load_bundle(args.checkpoint)
    prompt = load_prompt(bundle.tokenizer, args.prompt, args.prompt_seconds)
    if not prompt.ids:
        raise ComagenError(f"{args.prompt}: no tokens to look at")
    capture = capture_attention(bundle, prompt.ids, windows=list(parse_windows(args.windows)) or None, last=args.last)
    labels = [bundle.tokenizer.token_text(t) for t in prompt.ids[-args.last:]]
    fig = attention_figure(capture, token_labels=labels)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    weights = capture.scale_weights.tolist()
    if not args.json:
        rounded = [[round(w, 3) for w in layer] for layer in weights]
        print(f"wrote {args.out}; learned scale weights per layer: {rounded}")
    return {"out": str(args.out), "windows": capture.windows, "scale_weights": weights}


def _generate_parsers(sub: argparse._SubParsersAction) -> None:
    from comagen.generation.settings import add_cli_options

    p = sub.add_parser("generate", help="continue a prompt (or start from nothing) and write MIDI")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--prompt", type=Path, default=None)
    p.add_argument("--prompt-seconds", type=float, default=None, help="keep the prompt's first S seconds")
    p.add_argument("--tokens", type=int, default=None, help="generate N tokens (instead of --seconds)")
    add_cli_options(p)
    p.add_argument("--runtime", default="auto",
                   help="what computes the logits: auto (the fastest the bundle's ONNX export measured, else "
                        "torch), onnx, onnx-fp32, onnx-int8 or torch")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("attention", help="draw the multi-scale attention of a checkpoint on a prompt")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--prompt", type=Path, required=True)
    p.add_argument("--prompt-seconds", type=float, default=None)
    p.add_argument("--windows", default=None)
    p.add_argument("--last", type=int, default=32, help="how many final queries to show")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_generate_parsers)


@command("export")
def export_cmd(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.runtime.export import export_bundle

    if is_pianoroll(args.checkpoint):
        return _export_pianoroll(args)
    result = export_bundle(load_bundle(args.checkpoint), args.out, int8=args.int8, threads=args.threads,
                           int8_only=args.int8_only)
    if not args.json:
        timing = ", ".join(f"{k} {v} ms" for k, v in result["step_ms"].items())
        print(f"wrote {', '.join(result['files'])} to {result['out']} in {result['seconds']} s "
              f"(batch-1 step: {timing}; auto runs {result['prefer']})")
    return result


def _export_pianoroll(args: argparse.Namespace) -> dict:
    """export with a piano-roll bundle: its TorchScript copy written again (into --out, default the
    bundle) and held to the eager model; ONNX and int8 are for the conformer's step."""
    import torch

    from comagen.bundle.pianoroll import TORCHSCRIPT, check_torchscript, load_pianoroll
    from comagen.model.pianoroll import trace

    bundle = load_pianoroll(args.checkpoint)
    out = Path(args.out or args.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.save(trace(bundle.model), str(out / TORCHSCRIPT))
    diff = check_torchscript(out, bundle.model)
    if not args.json:
        print(f"wrote {out / TORCHSCRIPT}: TorchScript equals eager within {diff:.1e}")
    return {"out": str(out), "files": [TORCHSCRIPT], "max_abs_diff": diff}


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a conformer's one-token step to ONNX for the CPU runtime")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="folder for the files (default: CHECKPOINT/runtime, "
                                                          "where generation looks for them)")
    p.add_argument("--int8", action="store_true", help="also write an int8 (weights) quantised step")
    p.add_argument("--int8-only", action="store_true", help="write the int8 step alone (a smaller bundle to ship)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads to time the step with (default: $COMAGEN_ONNX_THREADS or 1)")
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_export_parser)


@command("infill")
def infill_cmd(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.infill import infill
    from comagen.generation.settings import bundle_settings, settings_from_cli
    from comagen.music.midi import load_original, midi_bytes, piano

    bundle = load_bundle(args.checkpoint)
    settings = settings_from_cli(args, bundle_settings(bundle))
    request = settings.request(bundle.composers, bundle.config.windows, max_tokens=1)
    original = load_original(args.midi)  # the result is this file with the span replaced, the rest as it was
    result = infill(bundle, piano(original), args.start, args.end, request, candidates=args.candidates,
                    suffix_bars=args.suffix_bars)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(midi_bytes(result.into(original)))
    summary = {"out": str(args.out), **result.summary()}
    if not args.json:
        bits = ", ".join(f"{b:.2f}" for b in summary["bits_per_note"])
        print(f"wrote {args.out}: bars {summary['start_s']:g}-{summary['end_s']:g} s regenerated "
              f"({summary['span_notes']} notes), candidate {summary['chosen'] + 1} of {summary['candidates']} "
              f"kept; bits per note of the next {summary['suffix_notes']} notes after each: {bits}")
    return summary


def _infill_parser(sub: argparse._SubParsersAction) -> None:
    from comagen.generation.infill import MAX_CANDIDATES, NOT_FOR_INFILL, SUFFIX_BARS
    from comagen.generation.settings import add_cli_options, knobs

    p = sub.add_parser("infill", help="regenerate the bars between two times so they lead into what follows")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--midi", type=Path, required=True, help="the piece")
    p.add_argument("--start", type=float, required=True, help="span start in seconds (snapped to a bar line)")
    p.add_argument("--end", type=float, required=True, help="span end in seconds (snapped to a bar line)")
    p.add_argument("--candidates", type=int, default=8,
                   help=f"spans sampled; the one the following bars fit best is kept (1 to {MAX_CANDIDATES})")
    p.add_argument("--suffix-bars", type=int, default=SUFFIX_BARS, help="bars after the span that judge a candidate")
    add_cli_options(p, only=tuple(f.name for f in knobs() if f.name not in NOT_FOR_INFILL))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_infill_parser)


@command("duet")
def duet_cmd(args: argparse.Namespace) -> dict:
    from comagen.bundle.checkpoint import load_bundle
    from comagen.generation.settings import bundle_settings, settings_from_cli
    from comagen.generation.turns import Turns
    from comagen.live.ports import port_names
    from comagen.live.terminal import DuetIO, run_duet

    if args.list_ports:
        names = port_names()
        if not args.json:
            print("inputs:  " + (", ".join(names["inputs"]) or "(none)"))
            print("outputs: " + (", ".join(names["outputs"]) or "(none)"))
        return names
    if args.checkpoint is None or (args.in_port is None) == (args.in_file is None):
        raise ComagenError("a duet needs --checkpoint and one of --in PORT or --in-file FILE.mid (see --list-ports)")
    if args.out_port and args.synth:
        raise ComagenError("choose --out PORT or --synth, not both")
    bundle = load_bundle(args.checkpoint)
    settings = settings_from_cli(args, bundle_settings(bundle))
    io = DuetIO(args.in_port, args.in_file, args.out_port, args.audio_driver, args.audio_file)
    result = run_duet(bundle, settings, Turns(args.pause, args.answer_bars), io, args.take,
                      max_seconds=args.max_seconds, quiet=args.json)
    if not args.json:
        print(f"wrote {result['take']}: {result['notes']} notes in {result['answers']} answers; first answer "
              f"note after {result['first_note_ms']} ms")
    return result


def _duet_parser(sub: argparse._SubParsersAction) -> None:
    from comagen.generation.settings import add_cli_options
    from comagen.generation.turns import Turns

    p = sub.add_parser("duet", help="play with the model from a MIDI keyboard (or a MIDI file played live)")
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--in", dest="in_port", help="MIDI input port to play from (see --list-ports)")
    p.add_argument("--in-file", type=Path, help="a MIDI file played in real time as the player's part")
    p.add_argument("--out", dest="out_port", help="MIDI output port for the answers (else FluidSynth)")
    p.add_argument("--synth", action="store_true", help="sound through FluidSynth (the default without --out)")
    p.add_argument("--audio-driver", default=None, help="FluidSynth's audio driver (e.g. alsa, pulseaudio, file)")
    p.add_argument("--audio-file", type=Path, default=None, help="with --audio-driver file: the WAV it writes")
    p.add_argument("--list-ports", action="store_true", help="list MIDI ports and exit")
    p.add_argument("--pause", type=float, default=Turns.pause, help="seconds of silence that pass the turn")
    p.add_argument("--answer-bars", type=float, default=Turns.answer_bars, help="length of each answer in bars")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="end the duet after this long")
    p.add_argument("--take", type=Path, default=Path("duet.mid"), help="where the take (both parts) is written")
    add_cli_options(p, only=("temperature", "top_k", "top_p", "min_p", "seed"))
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_duet_parser)


@command("audio-convert")
def audio_convert(args: argparse.Namespace) -> dict:
    """WAV -> beat-aligned (beats from the MIDI's 120 bpm grid or --bpm), or beat-aligned -> WAV."""
    import soundfile

    from comagen.audio.beatfile import read_beats, write_beats
    from comagen.audio.convert import beat_grid, from_beats, to_beats
    from comagen.audio.wavfile import read_wav
    from comagen.music.midi import GRID_BPM, load_score

    if args.beats:
        audio = read_beats(args.beats)
        soundfile.write(str(args.out), from_beats(audio), audio.sample_rate)
        return {"out": str(args.out), "beats": len(audio.blocks)}
    if args.wav is None or (args.midi is None) == (args.bpm is None):
        raise ComagenError("give --beats IN, or --wav IN with exactly one of --midi or --bpm")
    if args.midi:
        load_score(args.midi)  # a bad --midi is one line; its beats are the fixed grid of our renders
    samples, rate = read_wav(args.wav)
    grid = beat_grid(len(samples) / rate, GRID_BPM if args.midi else args.bpm)
    write_beats(args.out, to_beats(samples, rate, grid, args.samples_per_beat))
    return {"out": str(args.out), "beats": len(grid) - 1}


def _audio_convert_parser(sub: argparse._SubParsersAction) -> None:
    from comagen.audio.convert import DEFAULT_SAMPLES_PER_BEAT

    p = sub.add_parser("audio-convert", help="WAV <-> beat-aligned audio (a fixed number of samples per beat)")
    p.add_argument("--wav", type=Path, help="a WAV to convert to beat-aligned")
    p.add_argument("--midi", type=Path, help="the MIDI the WAV was rendered from (our renders: 120 bpm grid)")
    p.add_argument("--bpm", type=float, help="the WAV's tempo, for an uploaded recording")
    p.add_argument("--beats", type=Path, help="a beat-aligned file to convert back to WAV")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--samples-per-beat", type=int, default=DEFAULT_SAMPLES_PER_BEAT)
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_audio_convert_parser)


@command("audio-continue")
def audio_continue(args: argparse.Namespace) -> dict:
    """Continue a WAV for N beats with a melformer bundle: encode, continue, decode, back at the prompt's tempo."""
    import numpy as np
    import soundfile
    import torch

    from comagen.audio.continuation import check_beats, continue_audio
    from comagen.audio.convert import beat_grid
    from comagen.audio.wavfile import read_wav
    from comagen.bundle.audio import load_audio_bundle

    torch.set_num_threads(args.threads)
    samples, rate = read_wav(args.wav)
    grid = beat_grid(len(samples) / rate, args.bpm)  # a bad BPM is one line before the checkpoint loads
    check_beats(args.beats)
    models = load_audio_bundle(args.checkpoint, need=("codec", "melformer")).models
    beats = list(continue_audio(models["codec"], models["melformer"], samples, rate, args.bpm, args.beats,
                                args.temperature, args.top_k, args.seed))
    prompt = samples[: int(round(grid[-1] * rate))]
    tail = np.repeat(np.concatenate(beats), prompt.shape[1], axis=1)
    soundfile.write(str(args.out), np.concatenate((prompt, tail)), rate)
    return {"out": str(args.out), "prompt_beats": len(grid) - 1, "beats": len(beats),
            "seconds": round((len(prompt) + len(tail)) / rate, 3)}


def _audio_continue_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audio-continue", help="continue piano audio for N beats (experimental: VQ-VAE + melformer)")
    p.add_argument("--checkpoint", type=Path, required=True, help="an audio bundle with codec and melformer")
    p.add_argument("--wav", type=Path, required=True, help="the prompt")
    p.add_argument("--bpm", type=float, default=120.0, help="the prompt's tempo (our renders: 120)")
    p.add_argument("--beats", type=int, required=True, help="beats to add")
    p.add_argument("--out", type=Path, required=True, help="the WAV: the prompt's whole beats, then the new ones")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest codes (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_audio_continue_parser)
