"""The experimental Audio tab's components and its one event (what it does is `studio.audio_tab`)."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from studio import audio_tab
from studio.catalog import Checkpoints, GalleryItem
from studio.prompts import resolve_prompt


def audio_tab_controls() -> dict[str, gr.components.Component]:
    """Upload and tempo, beats and seed, the button, then status, player, spectrogram and download."""
    gr.Markdown("### Continue piano *audio* (experimental)\nA VQ-VAE turns each beat of sound into codes and "
                "a small transformer (the melformer, trained 30 min on one CPU thread) continues them; each "
                "beat is decoded as soon as its codes exist. It continues the Compose tab's prompt, rendered by "
                "FluidSynth, or a WAV you upload (give its tempo). Expect piano-like texture, not music yet.")
    with gr.Row():
        out = {"wav": gr.File(label=f"or upload a WAV (mono or stereo, up to {audio_tab.UPLOAD_MAX_SECONDS:.0f} s)",
                              file_types=[".wav"], type="filepath", elem_id="audio-upload"),
               "bpm": gr.Number(value=120, label="tempo of the uploaded WAV (bpm)", elem_id="audio-bpm"),
               "beats": gr.Slider(1, audio_tab.TAB_MAX_BEATS, value=16, step=1, label="beats to add",
                                  elem_id="audio-beats"),
               "seed": gr.Number(value=0, precision=0, label="audio seed", elem_id="audio-seed")}
    out["button"] = gr.Button("Continue the audio", variant="primary", elem_id="audio-go")
    out["status"] = gr.Markdown(elem_id="audio-status")
    out["audio"] = gr.Audio(label="prompt, then the continuation", type="numpy", interactive=False,
                            elem_id="audio-out")
    out["spectrogram"] = gr.Image(label="spectrogram", type="numpy", format="png", interactive=False,
                                  elem_id="audio-spectrogram")
    out["download"] = gr.File(label="WAV", interactive=False, elem_id="audio-wav")
    return out


def wire_audio(ctl: dict[str, gr.components.Component], compose: list[gr.components.Component],
               checkpoints: Checkpoints, gallery: dict[str, GalleryItem]) -> None:
    """The button: `compose` is the Compose tab's checkpoint, gallery choice, MIDI upload and kept seconds."""
    status, audio, figure, download = ctl["status"], ctl["audio"], ctl["spectrogram"], ctl["download"]

    def run(name: str, choice: str, midi: str | None, keep: float, wav: str | None, bpm: float | None,
            beats: int, seed: float | None) -> Iterator[dict]:
        """Continue the uploaded WAV (or the Compose prompt's render) for `beats` beats, streaming the audio."""
        def prompt() -> tuple:
            bundle = checkpoints.get(name)
            return (bundle, *resolve_prompt(bundle, midi, gallery, choice, keep))

        for frame in audio_tab.tab_stream(wav, bpm, beats, seed, prompt):
            yield {status: frame.status, audio: frame.audio, figure: frame.spectrogram,
                   download: str(frame.wav) if frame.wav else None}

    ctl["button"].click(run, [*compose, ctl["wav"], ctl["bpm"], ctl["beats"], ctl["seed"]],
                        [status, audio, figure, download], api_name="audio_continue", concurrency_id="model")
