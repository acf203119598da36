"""MODEL_CARD.md for a checkpoint: what it is, what it saw, what it measured, and its licence."""

from __future__ import annotations

from typing import Any

LICENCE = ["## Licence", "Weights trained on MAESTRO (CC BY-NC-SA 4.0, Hawthorne et al. 2019): the same terms "
           "apply to this checkpoint, non-commercial use with attribution, share alike.", ""]


def model_card(name: str, summary: dict[str, Any], model_cfg: dict[str, Any], extra: str = "") -> str:
    """Markdown card from a training summary (and any measured metrics in `extra`)."""
    bpn = summary.get("best_val_bits_per_note")
    lines = [
        f"# comagen checkpoint `{name}`",
        "",
        f"A `{model_cfg.get('arch')}` model ({summary.get('parameters', 0) / 1e6:.2f} M parameters, "
        f"dim {model_cfg.get('dim')}, depth {model_cfg.get('depth')}, heads {model_cfg.get('heads')}"
        + (f", windows {model_cfg.get('windows')}" if model_cfg.get("arch") == "conformer" else "") + ") "
        "that continues solo-piano performances as REMI tokens, conditioned on a composer id "
        "(0 = unconditional, so classifier-free guidance works).",
        "",
        "## Training",
        "- Data: MAESTRO v3.0.0 MIDI, **train split only**; picked on the validation split.",
        f"- Steps: {summary.get('step')}, tokens seen: {summary.get('tokens_seen', 0):,}, "
        f"crop length: {summary.get('seq_len')}",
        f"- Wall time: {summary.get('train_seconds', 0) / 60:.1f} min",
        f"- Best validation bits per note: {bpn:.4f}" if bpn is not None else "- Not yet evaluated",
        "",
        extra.strip(),
        "",
        *LICENCE,
    ]
    return "\n".join(lines)


def finetune_card(name: str, base: str, run: dict[str, Any], best_step: int, model_cfg: dict[str, Any]) -> str:
    """Card of a fine-tuned bundle: the base it started from, the folder (its name only), the file
    counts, the steps and minutes, and validation bits per note before and after."""
    kept = "" if run["improved"] else (" No step beat the base model on the held-out files, so these are the base "
                                       "model's weights unchanged.")
    lines = [
        f"# comagen checkpoint `{name}`",
        "",
        f"`{base}` fine-tuned on the MIDI files of a folder named `{run['data']}`: the same "
        f"`{model_cfg.get('arch')}` model (dim {model_cfg.get('dim')}, depth {model_cfg.get('depth')}), tokenizer "
        "and composer table, new weights." + kept,
        "",
        "## Fine-tuning",
        f"- Base model: `{base}`",
        f"- Data: folder `{run['data']}`: {len(run['train_files'])} file(s) trained on, "
        f"{len(run['validation_files'])} held out for validation ({', '.join(run['validation_files'])}), "
        f"{len(run['skipped'])} skipped as unusable",
        f"- Steps: {run['steps']} in {run['minutes']:.1f} min (stopped by {run['stopped']}); the best "
        f"validation was at step {best_step}",
        f"- Validation bits per note (held-out files): before **{run['before']:.3f}**, after **{run['after']:.3f}**",
        "",
        "## Licence",
        f"Derived from `{base}`: its licence terms (see its model card) apply, together with any terms "
        "of the fine-tuning files.",
        "",
    ]
    return "\n".join(lines)


def pianoroll_card(name: str, summary: dict[str, Any], model_cfg: dict[str, Any], extra: str = "") -> str:
    """MODEL_CARD.md of a piano-roll bundle."""
    best = summary.get("best_val_nats_per_frame")
    return "\n".join([
        f"# comagen checkpoint `{name}`",
        "",
        f"A piano-roll transformer ({summary.get('parameters', 0) / 1e6:.2f} M parameters, dim {model_cfg['dim']}, "
        f"depth {model_cfg['depth']}, heads {model_cfg['heads']}, feed-forward "
        f"{model_cfg['ff_mult'] * model_cfg['dim']}, memory {model_cfg['max_seq_len']} frames) that reads "
        f"{summary.get('frames_per_second', 16):g} frames a second of 128 held keys and gives each key of the next "
        "frame its own probability. No velocity, no composer.",
        "",
        "## Training",
        "- Data: MAESTRO v3.0.0 MIDI, **train split only**; picked on the validation split.",
        f"- Steps: {summary.get('step')}, frames seen: {summary.get('frames_seen', 0):,}, crop length: "
        f"{summary.get('seq_len')} frames",
        f"- Wall time: {summary.get('train_seconds', 0) / 60:.1f} min",
        f"- Best validation frame NLL: {best:.4f} nats per frame" if best is not None else "- Not yet evaluated",
        "",
        extra.strip(),
        "",
        *LICENCE,
    ])
