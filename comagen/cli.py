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

from comagen.errors import ComagenError

COMMANDS: dict[str, Callable[[argparse.Namespace], dict | None]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], dict | None]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


def _tokenizer(args: argparse.Namespace):  # noqa: ANN202
    from comagen.tokenizer import PianoTokenizer

    return PianoTokenizer.load(args.tokenizer) if getattr(args, "tokenizer", None) else PianoTokenizer()


@command("roundtrip")
def roundtrip(args: argparse.Namespace) -> dict:
    from comagen.roundtrip import roundtrip_file

    result = roundtrip_file(_tokenizer(args), args.file).to_dict()
    if not args.json:
        for key, value in result.items():
            print(f"{key:>26}  {value}")
    return result


@command("tokenize")
def tokenize(args: argparse.Namespace) -> dict:
    import time

    from comagen.data import load_index, select_split, tokenize_pieces

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except ComagenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if getattr(args, "json", False) and result is not None:
        print(json.dumps(result))
    return 0


@command("evaluate")
def evaluate(args: argparse.Namespace) -> dict:
    from comagen.checkpoint import load_bundle
    from comagen.data import load_index, load_tokenized, select_split
    from comagen.evaluate import evaluate_pieces

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
    return result


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
