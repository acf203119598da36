"""The result tabs: one per possible variation (piano roll, audio player, MIDI and WAV downloads, notes,
tokens, attention), and the updates that show a take's rendered results in them or clear them."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import gradio as gr

from studio.limits import MAX_VARIATIONS
from studio.present import Rendered


@dataclass
class Results:
    """The per-variation result components (one tab each)."""

    tabs: list = dc_field(default_factory=list)
    texts: list = dc_field(default_factory=list)
    rolls: list = dc_field(default_factory=list)
    audios: list = dc_field(default_factory=list)
    midis: list = dc_field(default_factory=list)
    attentions: list = dc_field(default_factory=list)
    notes: list = dc_field(default_factory=list)
    wavs: list = dc_field(default_factory=list)

    def all(self) -> list:
        # wavs last: the API's outputs before them keep their places
        return [*self.tabs, *self.texts, *self.rolls, *self.audios, *self.midis, *self.attentions, *self.notes,
                *self.wavs]

    def show(self, rendered: list[Rendered] | None, rows: int) -> dict:
        """Per-tab updates: the rendered results, or cleared tabs."""
        out: dict = {}
        for i in range(MAX_VARIATIONS):
            r = rendered[i] if rendered and i < len(rendered) else None
            out[self.tabs[i]] = gr.Tab(visible=i < max(rows, 1))
            out[self.rolls[i]] = r.roll if r else None
            out[self.audios[i]] = str(r.player) if r and r.player else None
            out[self.wavs[i]] = str(r.wav) if r and r.wav else None
            out[self.midis[i]] = str(r.midi) if r else None
            out[self.attentions[i]] = r.attention if r else None
            out[self.notes[i]] = r.note if r else ""
        return out


    def live(self, texts: list[str], rolls: list | None) -> dict:
        """A streamed frame's updates with a plain value for every output that takes one. Gradio rebuilds
        a component, schema and all, for each output a dict leaves out; with seven outputs a tab that
        cost the sampling thread a quarter of its speed in the server. Left out: the tabs (layout), and
        between redraws the live rolls of the variations being made."""
        out: dict = {}
        for i in range(MAX_VARIATIONS):
            made = i < len(texts)
            out[self.texts[i]] = texts[i] if made else ""
            out[self.audios[i]], out[self.midis[i]], out[self.wavs[i]] = None, None, None
            out[self.attentions[i]], out[self.notes[i]] = None, ""
            if rolls or not made:
                out[self.rolls[i]] = rolls[i] if rolls and made else None
        return out


def result_tabs(chosen: gr.State) -> Results:
    """One tab per possible variation: piano roll, player, MIDI and WAV downloads, notes, tokens, attention."""
    res = Results()
    with gr.Tabs():
        for i in range(MAX_VARIATIONS):
            with gr.Tab(f"Variation {i + 1}", visible=i == 0, id=i) as tab:
                res.rolls.append(gr.Image(label="piano roll (blue prompt, orange continuation, paler = softer)",
                                          type="numpy", format="png", interactive=False, elem_id=f"roll-{i}"))
                with gr.Row():
                    res.audios.append(gr.Audio(label="listen", type="filepath", interactive=False,
                                               elem_id=f"audio-{i}"))
                    res.midis.append(gr.File(label="MIDI download", interactive=False, elem_id=f"midi-{i}"))
                    res.wavs.append(gr.File(label="WAV download", interactive=False, elem_id=f"wav-{i}"))
                res.notes.append(gr.Markdown())
                res.texts.append(gr.Textbox(label="tokens", lines=5, max_lines=10, autoscroll=True,
                                            interactive=False, elem_id=f"tokens-{i}"))
                gr.Markdown("attention: where the last tokens looked, per layer and scale")
                res.attentions.append(gr.Image(label="attention", show_label=False, type="numpy", format="png",
                                               interactive=False))  # no label chip over the first panel's title
            tab.select(lambda i=i: i, None, chosen)
            res.tabs.append(tab)
    return res
