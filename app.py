"""comagen studio: continue a piano piece, watch it being written, hear it, download it.

    python app.py        # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

Layout and events only; what happens lives in the `studio` package beside this file. Environment:
COMAGEN_CHECKPOINT (the checkpoint shown first; default assets/checkpoints/flagship, else default),
COMAGEN_CHECKPOINTS (more folders of bundles, separated like PATH; runs/finetuned/ is always looked
in), COMAGEN_MAESTRO_DIR (adds MAESTRO pieces to the gallery),
COMAGEN_OUT_MAX_AGE (seconds an upload or result file lives on the server, default 3600),
COMAGEN_LIVE_VIEW (on: token text and piano roll while sampling; text; off: only the results),
COMAGEN_LIVE_SOUND (on: the page plays the notes as they are written; off), COMAGEN_WEB_DIR (studio.web).

Everything the server writes (results, and gradio's cache of uploads, result copies and streamed
images) lives under studio.OUT_ROOT, which `studio.start_cleaner` sweeps; a GRADIO_TEMP_DIR set by
hand moves gradio's cache out of it, and is then not swept (it may be shared). Not gradio's own
`delete_cache`: it only sees files of the page's original components, not of the per-session copies
gradio makes once an event updates them (all of ours).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import gradio as gr

import studio
from comagen.bundle.composers import NO_COMPOSER
from comagen.errors import ComagenError
from comagen.generation.settings import TUNED, bundle_settings
from comagen.logs import setup_logging
from comagen.render.pianoroll import piano_roll_image
from studio import infill as studio_infill
from studio import web
from studio.assets import CHECKPOINTS_DIR, FINETUNED_DIR, PROMPTS_DIR, SOUNDFONTS_DIR
from studio.audio_page import audio_tab_controls, wire_audio
from studio.controls import named_handler, settings_controls, settings_from_values
from studio.duet_socket import PLAY_SCRIPT, DuetTakes, duet_routes
from studio.result_tabs import Results, result_tabs
from studio.warmup import warm_up

PREFERRED = ("flagship", "default")  # shown first: the better model (its int8 step streams 6-13x real time)
QUEUE_CONCURRENCY = 1  # one generation at a time on a 2-core machine; the rest wait in turn
QUEUE_SIZE = 32


@dataclass
class Page:
    """The page's components that events read or update."""

    model_info: gr.Markdown
    history: gr.State
    chosen: gr.State
    checkpoint: gr.Dropdown
    prompt_choice: gr.Dropdown
    upload: gr.File
    keep: gr.Slider
    prompt_note: gr.Markdown
    prompt_roll: gr.Image
    controls: dict[str, gr.components.Component]
    buttons: dict[str, gr.Button]
    status: gr.Markdown
    stats: gr.Markdown
    results: Results
    play: dict[str, gr.components.Component]
    infill: dict[str, gr.components.Component] = dc_field(default_factory=dict)
    audio: dict[str, gr.components.Component] = dc_field(default_factory=dict)
    leans: gr.Accordion | None = None  # "keep to the prompt": hidden for a model that reads none of it

    def windows(self) -> list:
        return [c for name, c in self.controls.items() if name.startswith("window_")]


def layout(checkpoints: studio.Checkpoints, default: str, gallery: dict[str, studio.GalleryItem],
           shipped: list[str], limits: studio.AppLimits) -> Page:
    """Header and buttons (above the fold), prompt and controls side by side, results below."""
    bundle = checkpoints.get(default)
    gr.Markdown("# comagen studio\nContinue a piano piece with a multi-scale-attention Conformer. "
                "Pick or upload a prompt, press **Generate**, listen, download, **Continue** or **Undo**.")
    model_info = gr.Markdown(studio.describe_checkpoint(bundle))
    with gr.Tabs(elem_id="modes"):
        with gr.Tab("Compose", id="compose"):
            with gr.Row():
                buttons = {"generate": gr.Button("Generate", variant="primary", elem_id="generate"),
                           "stop": gr.Button("Stop", variant="stop", elem_id="stop"),
                           "continue": gr.Button("Continue", elem_id="continue"),
                           "undo": gr.Button("Undo", elem_id="undo")}
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Prompt")
                    checkpoint = gr.Dropdown(checkpoints.choices, value=default, label="checkpoint")
                    prompt_choice = gr.Dropdown(list(gallery), value=shipped[0] if shipped else studio.NOTHING,
                                                label="gallery (type to search)", filterable=True)
                    upload = gr.File(label=f"or upload a .mid/.midi (up to {studio.UPLOAD_MAX_BYTES // 2**20} MB)",
                                     file_types=[".mid", ".midi"], type="filepath", elem_id="upload")
                    keep = gr.Slider(1, studio.PROMPT_MAX_SECONDS, value=8, step=1, label="keep the first N seconds")
                    prompt_note = gr.Markdown(elem_id="prompt-note")
                    prompt_roll = gr.Image(label="prompt", type="numpy", format="png", interactive=False, height=160)
                with gr.Column():
                    gr.Markdown("### Controls")
                    controls = settings_controls(bundle, "main", limits)
                    with gr.Accordion("keep to the prompt: dynamics, pace, temperature per decision",
                                      open=False) as leans:
                        controls.update(settings_controls(bundle, "leans", limits))
                    with gr.Accordion("composer, attention windows, form", open=False):
                        controls.update(settings_controls(bundle, "more", limits))
        with gr.Tab("Play", id="play", elem_id="play-tab"):
            play = play_tab()
        with gr.Tab("Audio (experimental)", id="audio", elem_id="audio-tab"):
            audio = audio_tab_controls()
    status = gr.Markdown(elem_id="status")
    chosen = gr.State(0)
    results = result_tabs(chosen)
    infill = infill_controls()
    return Page(model_info, gr.State([]), chosen, checkpoint, prompt_choice, upload, keep, prompt_note, prompt_roll,
                controls, buttons, status, gr.Markdown(elem_id="stats"), results, play, infill, audio, leans)


def play_tab() -> dict[str, gr.components.Component]:
    """A duet: the keyboard (drawn by play.js into #comagen-play), when the turn passes, and the buttons."""
    gr.Markdown("### Play with the model\nPress **Start duet** and play: on the keys below (mouse or touch), "
                "your computer's keys, or a MIDI keyboard. Stop for a moment (or press **Hand over**, Enter, "
                "or the soft pedal) and the model answers; play again to cut in. **Finish** shows the take "
                "(both parts) below like any result: roll, audio, MIDI, Continue. It plays with the checkpoint "
                "chosen on Compose, with that checkpoint's tuned sampling.")
    with gr.Row():
        out = {"pause": gr.Slider(0.3, 3.0, value=1.0, step=0.1, label="pause that hands the turn over (s)"),
               "bars": gr.Slider(1, 16, value=4, step=1, label="answer length (bars)")}
    with gr.Row():
        out.update(start=gr.Button("Start duet", variant="primary", elem_id="play-start"),
                   over=gr.Button("Hand over", elem_id="play-over"),
                   finish=gr.Button("Finish: show the take", elem_id="play-finish"))
    gr.HTML('<div id="play-status">Press Start duet, then play.</div><div id="comagen-play"></div>')
    out["take"] = gr.Textbox(visible="hidden", elem_id="play-take-id", label="duet take")
    return out


def wire_generation(page: Page, checkpoints: studio.Checkpoints, gallery: dict[str, studio.GalleryItem],
                    registry: studio.Registry) -> None:
    """Generate and Continue: one handler, two modes."""
    res, status, stats, history, seed = page.results, page.status, page.stats, page.history, page.controls["seed"]
    notes = gr.Textbox(visible="hidden", elem_id="live-notes", label="live notes")  # read by live.js
    outputs = [status, stats, seed, history, *res.all()]
    names = ["checkpoint", "prompt", "upload", "keep_seconds", *page.controls]
    inputs = [page.checkpoint, page.prompt_choice, page.upload, page.keep, *page.controls.values(), history,
              page.chosen]
    live, sound = studio.live_view_from_env(), web.live_sound_enabled()

    def run(mode: str, values: dict, past: list[studio.Take], pick: int, request: gr.Request) -> Iterator[dict]:
        try:
            b = checkpoints.get(values["checkpoint"])
            settings, random_seed = settings_from_values(values)
            req = studio.app_request(b, settings, random_seed)
            if mode == "continue":
                prompt, label = studio.continue_prompt(b, past, pick)
            else:
                prompt, label = studio.resolve_prompt(b, values["upload"], gallery, values["prompt"],
                                                      values["keep_seconds"])
            yield {status: "Starting ...", seed: req.seed,
                   **{res.texts[i]: "" for i in range(studio.MAX_VARIATIONS)},
                   **{res.tabs[i]: gr.Tab(visible=i < req.variations) for i in range(studio.MAX_VARIATIONS)}}
            for frame in studio.stream(b, prompt, req, label, registry=registry, key=request.session_hash, live=live,
                                       sound=sound):
                update = {status: frame.status, stats: "", seed: req.seed, notes: frame.notes or "",
                          **res.live(frame.texts, frame.rolls)}  # every output a value: see Results.live
                if frame.take:
                    new_history = ([] if mode == "generate" else list(past)) + [frame.take]
                    update.update(res.show(frame.results, len(frame.take.rows)))
                    update.update({stats: frame.stats, history: new_history})
                yield update
        except ComagenError as exc:
            yield {status: f"**Error:** {exc}"}
            raise gr.Error(str(exc), print_exception=False) from None

    def generate(values: dict, past: list[studio.Take], pick: int, request: gr.Request) -> Iterator[dict]:
        """Continue a prompt (an upload wins over the gallery choice); streams, then returns
        status, stats, seed used, and per variation: token text, piano roll, WAV, MIDI, attention."""
        yield from run("generate", values, past, pick, request)

    def extend(values: dict, past: list[studio.Take], pick: int, request: gr.Request) -> Iterator[dict]:
        """Continue the last result (the selected variation's tab) with the current settings."""
        yield from run("continue", values, past, pick, request)

    for mode, fn in (("generate", generate), ("continue", extend)):
        page.buttons[mode].click(named_handler(fn, names), inputs, [*outputs, notes], api_name=mode,
                                 concurrency_id="model",
                                 preprocess=False)  # named_handler checks the raw values, naming a bad one
    wire_stop_undo(page, checkpoints, registry, outputs)


def wire_stop_undo(page: Page, checkpoints: studio.Checkpoints, registry: studio.Registry, outputs: list) -> None:
    """Stop keeps what was made; Undo shows the take before the last again."""
    res, status, stats, history = page.results, page.status, page.stats, page.history

    def stop(request: gr.Request) -> None:
        registry.stop(request.session_hash)

    def undo(name: str, past: list[studio.Take]) -> dict:
        """Drop the last continuation and show the one before it again."""
        if not past:
            return {status: "Nothing to undo."}
        past = past[:-1]
        if not past:
            return {status: "Undone: back to an empty page.", stats: "", history: past, **res.show(None, 1),
                    **{res.texts[i]: "" for i in range(studio.MAX_VARIATIONS)}}
        b, last = checkpoints.get(name), past[-1]
        return {status: f"Undone: {len(past)} take(s) left.", stats: studio.stats_markdown(last, False),
                history: past, **res.show(studio.render_take(b, last), len(last.rows)),
                **{res.texts[i]: studio.token_text(b, ids) for i, ids in enumerate(last.rows)}}

    page.buttons["stop"].click(stop, None, None, api_name="stop", concurrency_limit=None)
    page.buttons["undo"].click(undo, [page.checkpoint, history], outputs, api_name="undo", concurrency_id="model")


def wire_prompt(demo: gr.Blocks, page: Page, checkpoints: studio.Checkpoints,
                gallery: dict[str, studio.GalleryItem]) -> None:
    """The prompt preview (bad uploads refused at once) and switching checkpoints."""
    note, roll, upload = page.prompt_note, page.prompt_roll, page.upload

    def preview(name: str, choice: str, up: str | None, keep_s: float) -> dict:
        """Check the prompt at once (bad uploads are refused here, with the reason)."""
        try:
            b = checkpoints.get(name)
            prompt, label = studio.resolve_prompt(b, up, gallery, choice, keep_s)
        except ComagenError as exc:
            return {note: f"**Upload refused:** {exc}. Using the gallery prompt instead."
                    if up else f"**Error:** {exc}", upload: None, roll: None}
        if not prompt.ids:
            return {note: "Starting from nothing.", roll: None}
        score = b.tokenizer.decode_ids(prompt.ids)
        return {note: f"Prompt **{label}**: {score.note_num()} notes, continuing at {prompt.seconds:.0f} s.",
                roll: piano_roll_image(score, None, width=600, row_px=2)}

    def switch(name: str) -> dict:
        """Load another checkpoint: its composers, window sliders and tuned sampling defaults; the
        history is cleared. Composer and guidance are hidden for a model without composers (the
        piano-roll model), as window sliders are beyond a model's scales, and the sampling controls it
        does not read (min-p, the leans: `studio.hidden_settings`)."""
        try:
            b = checkpoints.get(name)
            tuned, hidden = bundle_settings(b), studio.hidden_settings(b)
        except ComagenError as exc:
            return {page.model_info: f"**Error:** {exc}"}
        return {page.model_info: studio.describe_checkpoint(b), page.history: [],
                page.controls["composer"]: gr.Dropdown(choices=b.composers.names, value=NO_COMPOSER,
                                                       visible=len(b.composers) > 1),
                page.controls["guidance"]: gr.Slider(visible=len(b.composers) > 1),
                **{page.controls[k]: gr.Slider(value=getattr(tuned, k), visible=k not in hidden) for k in TUNED},
                page.leans: gr.Accordion(visible=not hidden),
                **{w: gr.Slider(**s) for w, s in zip(page.windows(), studio.window_sliders(b), strict=True)}}

    preview_io = dict(inputs=[page.checkpoint, page.prompt_choice, upload, page.keep], outputs=[note, upload, roll])
    upload.upload(preview, **preview_io, api_name=False)
    page.prompt_choice.change(preview, **preview_io, api_name=False)
    page.keep.release(preview, **preview_io, api_name=False)
    page.checkpoint.change(switch, page.checkpoint,
                           [page.model_info, page.history, page.controls["composer"], page.controls["guidance"],
                            page.leans,
                            *page.windows(),
                            *(page.controls[k] for k in TUNED)], api_name=False)
    demo.load(preview, **preview_io, api_name=False)


def wire_play(page: Page, checkpoints: studio.Checkpoints, takes: DuetTakes) -> None:
    """Start, Hand over and Finish: the duet itself runs over play.js's socket; Finish brings its take
    into the page's history, shown like any result."""
    res, status, stats, history, ctl = page.results, page.status, page.stats, page.history, page.play
    ctl["start"].click(None, [page.checkpoint, ctl["pause"], ctl["bars"]], None,
                       js="(c, p, b) => { comagenPlay.start({checkpoint: c, pause: p, answer_bars: b}); }")
    ctl["over"].click(None, None, None, js="() => { comagenPlay.takeOver(); }")

    def show(key: str) -> dict:
        """The finished duet `key` as the page's take: roll in two colours, audio, MIDI."""
        try:
            played = takes.get(key)
            b = checkpoints.get(played.checkpoint)
        except ComagenError as exc:
            return {status: f"**Error:** {exc}"}
        take = studio.played_take(b.tokenizer, played.score, "duet")
        return {status: "Your duet: you in blue, the model in orange.", stats: studio.stats_markdown(take, False),
                history: [take], **res.show(studio.render_take(b, take), 1),
                res.texts[0]: studio.token_text(b, take.rows[0])}

    ctl["finish"].click(show, ctl["take"], [status, stats, history, *res.all()], api_name=False,
                        js="async () => [await comagenPlay.finish()]", concurrency_id="model")


def infill_controls() -> dict[str, gr.components.Component]:
    """Start and end of a span over the result's piano roll (seconds, a bar a step), K and the button."""
    gr.Markdown("### Infill\nRegenerate the bars between two times of the result on show so that they lead "
                "into what follows (several spans are sampled; the one the following bars fit best is kept).")
    with gr.Row():
        out = {"infill_start": gr.Slider(0, 2, value=0, step=2, label="infill start (s)", elem_id="infill-start"),
               "infill_end": gr.Slider(0, 2, value=2, step=2, label="infill end (s)", elem_id="infill-end"),
               "infill_candidates": gr.Slider(1, studio_infill.MAX_CANDIDATES, value=studio_infill.DEFAULT_CANDIDATES,
                                              step=1, label="infill candidates")}
    out["button"] = gr.Button("Infill", elem_id="infill")
    return out


def wire_infill(page: Page, checkpoints: studio.Checkpoints) -> None:
    """The Infill button (a new take in the history, shown like any result) and span sliders that
    follow the length of the result on show."""
    res, status, stats, history, seed, ctl = (page.results, page.status, page.stats, page.history,
                                              page.controls["seed"], page.infill)
    names = ["checkpoint", "infill_start", "infill_end", "infill_candidates", *page.controls]
    inputs = [page.checkpoint, ctl["infill_start"], ctl["infill_end"], ctl["infill_candidates"],
              *page.controls.values(), history, page.chosen]

    def infill(values: dict, past: list[studio.Take], pick: int, request: gr.Request) -> Iterator[dict]:
        """Regenerate the shown result's bars between infill_start and infill_end (seconds) with the
        current sampling settings; returns the new take like Generate does."""
        try:
            b = checkpoints.get(values["checkpoint"])
            settings, random_seed = settings_from_values(values)
            yield {status: "Infilling ..."}
            take, rendered, note = studio_infill.infill_take(b, past, pick, values["infill_start"],
                                                             values["infill_end"], values["infill_candidates"],
                                                             settings, random_seed)
            yield {status: "Done.", stats: note, history: [*past, take], seed: take.seed, **res.show(rendered, 1),
                   res.texts[0]: studio.token_text(b, take.rows[0])}
        except ComagenError as exc:
            yield {status: f"**Error:** {exc}"}
            raise gr.Error(str(exc), print_exception=False) from None

    def follow(name: str, past: list[studio.Take], pick: int) -> dict:
        """Span sliders over the result on show, the middle bars picked to start with."""
        length = studio_infill.piece_seconds(checkpoints.get(name), past, pick)
        start = max(2 * round(length / 4) - 2, 0)
        return {ctl["infill_start"]: gr.Slider(maximum=max(length, 2), value=start),
                ctl["infill_end"]: gr.Slider(maximum=max(length, 2), value=min(start + 4, max(length, 2)))}

    outputs = [status, stats, seed, history, *res.all()]
    ctl["button"].click(named_handler(infill, names), inputs, outputs, api_name="infill", concurrency_id="model",
                        preprocess=False)
    history.change(follow, [page.checkpoint, history, page.chosen], [ctl["infill_start"], ctl["infill_end"]],
                   api_name=False)


def build_demo(checkpoints: studio.Checkpoints, default: str, gallery: dict[str, studio.GalleryItem],
               limits: studio.AppLimits = studio.LIMITS, prompts_dir: Path = PROMPTS_DIR,
               takes: DuetTakes | None = None) -> gr.Blocks:
    """The page: buttons, prompt and controls on top, streamed results per variation below."""
    shipped = [label for label, item in gallery.items() if item.path and item.path.parent == prompts_dir]
    with gr.Blocks(title="comagen studio", head=web.head_html() + PLAY_SCRIPT) as demo:
        page = layout(checkpoints, default, gallery, shipped, limits)
        wire_generation(page, checkpoints, gallery, studio.Registry())
        wire_prompt(demo, page, checkpoints, gallery)
        wire_infill(page, checkpoints)
        wire_play(page, checkpoints, takes or DuetTakes())
        wire_audio(page.audio, [page.checkpoint, page.prompt_choice, page.upload, page.keep], checkpoints, gallery)
        examples = [[choice, 8, 20, 1.0, 0, 0.95, 1, "none"] for choice in shipped[:2]]
        if len(shipped) > 2:
            examples += [[shipped[2], 6, 16, 0.9, 40, 0.95, 2, "none"], [shipped[-1], 4, 16, 1.0, 0, 0.95, 1, "AABA"]]
        if examples:
            c = page.controls
            gr.Examples(examples, [page.prompt_choice, page.keep, c["seconds"], c["temperature"], c["top_k"],
                                   c["top_p"], c["variations"], c["form"]],
                        label="Examples (good settings to start from)")
    return demo


def main() -> None:
    setup_logging()
    env_checkpoint, maestro_dir = studio.env_settings()
    os.environ.setdefault("COMAGEN_SOUNDFONT_DIR", str(SOUNDFONTS_DIR))  # the library takes it from here
    os.environ.setdefault("GRADIO_TEMP_DIR", str(studio.OUT_ROOT / "gradio"))  # before any component exists
    folders = studio.find_checkpoints(CHECKPOINTS_DIR, extra=env_checkpoint,
                                      more=[*studio.env_checkpoint_folders(), FINETUNED_DIR])
    if not folders:
        raise SystemExit(f"no checkpoint found under {CHECKPOINTS_DIR}; set COMAGEN_CHECKPOINT")
    checkpoints, takes = studio.Checkpoints(folders), DuetTakes()
    try:
        studio.out_max_age_from_env()  # a bad COMAGEN_OUT_MAX_AGE stops the start, in one line
        default = checkpoints.names[0] if env_checkpoint else next(
            (name for name in PREFERRED if name in folders), checkpoints.names[0])
        demo = build_demo(checkpoints, default, studio.build_gallery(PROMPTS_DIR, maestro_dir=maestro_dir),
                          takes=takes)
    except ComagenError as exc:
        raise SystemExit(str(exc)) from None
    studio.OUT_ROOT.mkdir(parents=True, exist_ok=True)
    studio.start_cleaner()  # files expire on an idle server too
    warm_up(checkpoints, default)  # the first Generate finds the runtime ready
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size=4 * studio.UPLOAD_MAX_BYTES, allowed_paths=[str(studio.OUT_ROOT)],
                app_kwargs={"routes": [*web.web_routes(), *duet_routes(checkpoints, takes)]},  # live sound, duets
                show_error=True)  # what gradio refuses before a handler runs (a path not uploaded here) says why


if __name__ == "__main__":
    main()
