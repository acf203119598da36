"""MODEL_CARD.md for a checkpoint: what it is, what it saw, what it measured, and its licence."""

from __future__ import annotations

from typing import Any


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
        "## Licence",
        "Weights trained on MAESTRO (CC BY-NC-SA 4.0, Hawthorne et al. 2019): the same terms apply "
        "to this checkpoint, non-commercial use with attribution, share alike.",
        "",
    ]
    return "\n".join(lines)
