"""comagen studio: continue a piano piece, watch it being written, hear it, download it.

    python app.py        # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

Layout and events only; what happens lives in `comagen.studio`. Environment: COMAGEN_CHECKPOINT
(default assets/checkpoints/default), COMAGEN_MAESTRO_DIR (adds MAESTRO pieces to the gallery),
COMAGEN_OUT_MAX_AGE (seconds an upload or result file lives on the server, default 3600).

Everything the server writes (results, and gradio's cache of uploads, result copies and streamed
images) lives under studio.OUT_ROOT, which `studio.start_cleaner` sweeps; a GRADIO_TEMP_DIR set by
hand moves gradio's cache out of it, and is then not swept (it may be shared). Not gradio's own
`delete_cache`: it only sees files of the page's original components, not of the per-session copies
gradio makes once an event updates them (all of ours).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import gradio as gr

from comagen import studio
from comagen.errors import ComagenError
from comagen.generate import FORMS

QUEUE_CONCURRENCY = 1  # one generation at a time on a 2-core machine; the rest wait in turn
QUEUE_SIZE = 32


def build_demo(checkpoints: studio.Checkpoints, default: str, gallery: dict[str, studio.GalleryItem]) -> gr.Blocks:
    """The page: prompt and controls on top, streamed results per variation below."""
    registry = studio.Registry()
    bundle = checkpoints.get(default)
    shipped = [label for label, item in gallery.items() if item.path and item.path.parent == studio.PROMPTS_DIR]

    with gr.Blocks(title="comagen studio") as demo:
        gr.Markdown("# comagen studio\nContinue a piano piece with a multi-scale-attention Conformer. "
                    "Pick or upload a prompt, press **Generate**, listen, download, **Continue** or **Undo**.")
        model_info = gr.Markdown(studio.describe_checkpoint(bundle))
        history = gr.State([])
        chosen = gr.State(0)
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Prompt")
                checkpoint = gr.Dropdown(checkpoints.names, value=default, label="checkpoint")
                prompt_choice = gr.Dropdown(list(gallery), value=shipped[0] if shipped else studio.NOTHING,
                                            label="gallery (type to search)", filterable=True)
                upload = gr.File(label=f"or upload a .mid/.midi (up to {studio.UPLOAD_MAX_BYTES // 2**20} MB)",
                                 file_types=[".mid", ".midi"], type="filepath", elem_id="upload")
                keep = gr.Slider(1, studio.PROMPT_MAX_SECONDS, value=8, step=1, label="keep the first N seconds")
                prompt_note = gr.Markdown(elem_id="prompt-note")
                prompt_roll = gr.Image(label="prompt", type="numpy", format="png", interactive=False, height=160)
            with gr.Column():
                gr.Markdown("### Controls")
                seconds = gr.Slider(2, studio.MAX_SECONDS, value=20, step=1, label="length (seconds of new music)")
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature (0 = greedy)")
                with gr.Row():
                    top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1, value=0.95, step=0.01, label="top-p")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="seed")
                    random_seed = gr.Checkbox(value=True, label="random seed (the one used is shown)")
                variations = gr.Slider(1, studio.MAX_VARIATIONS, value=1, step=1, label="variations")
                with gr.Accordion("composer, attention windows, form", open=False):
                    composer = gr.Dropdown(bundle.composers.names, value="<none>", label="composer", filterable=True)
                    guidance = gr.Slider(0, 4, value=1.0, step=0.1,
                                         label="guidance (1 = plain conditioning, >1 = more of the composer)")
                    windows = [gr.Slider(minimum=1, step=1, **{"maximum": 1024, **s})
                               for s in studio.window_sliders(bundle)]
                    form = gr.Dropdown(["none", *sorted(FORMS)], value="none", label="musical form")
                    section_bars = gr.Slider(1, 16, value=4, step=1, label="bars per section")
        with gr.Row():
            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            continue_btn = gr.Button("Continue", elem_id="continue")
            undo_btn = gr.Button("Undo", elem_id="undo")
        status = gr.Markdown(elem_id="status")
        tabs, texts, rolls, audios, midis, attentions, notes = [], [], [], [], [], [], []
        with gr.Tabs():
            for i in range(studio.MAX_VARIATIONS):
                with gr.Tab(f"Variation {i + 1}", visible=i == 0, id=i) as tab:
                    rolls.append(gr.Image(label="piano roll (blue prompt, orange continuation, paler = softer)",
                                          type="numpy", format="png", interactive=False, elem_id=f"roll-{i}"))
                    with gr.Row():
                        audios.append(gr.Audio(label="listen", type="filepath", interactive=False,
                                               elem_id=f"audio-{i}"))
                        midis.append(gr.File(label="MIDI download", interactive=False, elem_id=f"midi-{i}"))
                    notes.append(gr.Markdown())
                    texts.append(gr.Textbox(label="tokens", lines=5, max_lines=10, autoscroll=True,
                                            interactive=False, elem_id=f"tokens-{i}"))
                    attentions.append(gr.Image(label="attention: where the last tokens looked, per layer and scale",
                                               type="numpy", format="png", interactive=False))
                tab.select(lambda i=i: i, None, chosen)
                tabs.append(tab)
        stats = gr.Markdown(elem_id="stats")

        controls = [checkpoint, prompt_choice, upload, keep, seconds, temperature, top_k, top_p, seed, random_seed,
                    variations, composer, guidance, *windows, form, section_bars]
        results = [*tabs, *texts, *rolls, *audios, *midis, *attentions, *notes]
        outputs = [status, stats, seed, history, *results]

        def show(results_list: list[studio.Rendered] | None, rows: int) -> dict:
            """Per-tab updates: the rendered results, or cleared tabs."""
            out: dict = {}
            for i in range(studio.MAX_VARIATIONS):
                r = results_list[i] if results_list and i < len(results_list) else None
                out[tabs[i]] = gr.Tab(visible=i < max(rows, 1))
                out[rolls[i]] = r.roll if r else None
                out[audios[i]] = str(r.wav) if r and r.wav else None
                out[midis[i]] = str(r.midi) if r else None
                out[attentions[i]] = r.attention if r else None
                out[notes[i]] = r.note if r else ""
            return out

        def run(mode: str, name: str, choice: str, up: str | None, keep_s: float, settings: studio.Settings,
                past: list[studio.Take], pick: int, request: gr.Request) -> Iterator[dict]:
            try:
                b = checkpoints.get(name)
                req = settings.request(b)
                if mode == "continue":
                    prompt, label = studio.continue_prompt(b, past, pick)
                else:
                    prompt, label = studio.resolve_prompt(b, up, gallery, choice, keep_s)
                yield {status: "Starting ...", seed: req.seed,
                       **{texts[i]: "" for i in range(studio.MAX_VARIATIONS)},
                       **{tabs[i]: gr.Tab(visible=i < req.variations) for i in range(studio.MAX_VARIATIONS)}}
                for frame in studio.stream(b, prompt, req, label, registry=registry, key=request.session_hash):
                    update = {status: frame.status, **{texts[i]: t for i, t in enumerate(frame.texts)}}
                    if frame.rolls:
                        update.update({rolls[i]: r for i, r in enumerate(frame.rolls)})
                    if frame.take:
                        new_history = ([] if mode == "generate" else list(past)) + [frame.take]
                        update.update(show(frame.results, len(frame.take.rows)))
                        update.update({stats: frame.stats, history: new_history, seed: req.seed})
                    yield update
            except ComagenError as exc:
                yield {status: f"**Error:** {exc}"}
                raise gr.Error(str(exc), print_exception=False) from None

        def generate(checkpoint: str, prompt: str, upload: str | None, keep_seconds: float, seconds: float,
                     temperature: float, top_k: int, top_p: float, seed: int, random_seed: bool, variations: int,
                     composer: str, guidance: float, window_1: int, window_2: int, window_3: int, window_4: int,
                     form: str, section_bars: int, history: list[studio.Take], variation: int,
                     request: gr.Request) -> Iterator[dict]:
            """Continue a prompt (an upload wins over the gallery choice); streams, then returns
            status, stats, seed used, and per variation: token text, piano roll, WAV, MIDI, attention."""
            settings = studio.Settings(seconds, temperature, top_k, top_p, int(seed or 0), random_seed,
                                       int(variations), composer, guidance,
                                       [window_1, window_2, window_3, window_4], form, int(section_bars))
            yield from run("generate", checkpoint, prompt, upload, keep_seconds, settings, history, variation, request)

        def extend(checkpoint: str, prompt: str, upload: str | None, keep_seconds: float, seconds: float,
                   temperature: float, top_k: int, top_p: float, seed: int, random_seed: bool, variations: int,
                   composer: str, guidance: float, window_1: int, window_2: int, window_3: int, window_4: int,
                   form: str, section_bars: int, history: list[studio.Take], variation: int,
                   request: gr.Request) -> Iterator[dict]:
            """Continue the last result (the selected variation's tab) with the current settings."""
            settings = studio.Settings(seconds, temperature, top_k, top_p, int(seed or 0), random_seed,
                                       int(variations), composer, guidance,
                                       [window_1, window_2, window_3, window_4], form, int(section_bars))
            yield from run("continue", checkpoint, prompt, upload, keep_seconds, settings, history, variation, request)

        def stop(request: gr.Request) -> None:
            registry.stop(request.session_hash)

        def undo(name: str, past: list[studio.Take]) -> dict:
            """Drop the last continuation and show the one before it again."""
            if not past:
                return {status: "Nothing to undo."}
            past = past[:-1]
            if not past:
                return {status: "Undone: back to an empty page.", stats: "", history: past, **show(None, 1),
                        **{texts[i]: "" for i in range(studio.MAX_VARIATIONS)}}
            b, last = checkpoints.get(name), past[-1]
            return {status: f"Undone: {len(past)} take(s) left.", stats: studio.stats_markdown(last, False),
                    history: past, **show(studio.render_take(b, last), len(last.rows)),
                    **{texts[i]: studio.token_text(b, ids) for i, ids in enumerate(last.rows)}}

        def preview(name: str, choice: str, up: str | None, keep_s: float) -> dict:
            """Check the prompt at once (bad uploads are refused here, with the reason)."""
            try:
                b = checkpoints.get(name)
                prompt, label = studio.resolve_prompt(b, up, gallery, choice, keep_s)
            except ComagenError as exc:
                return {prompt_note: f"**Upload refused:** {exc}. Using the gallery prompt instead."
                        if up else f"**Error:** {exc}", upload: None, prompt_roll: None}
            if not prompt.ids:
                return {prompt_note: "Starting from nothing.", prompt_roll: None}
            score = b.tokenizer.decode_ids(prompt.ids)
            return {prompt_note: f"Prompt **{label}**: {score.note_num()} notes, continuing at {prompt.seconds:.0f} s.",
                    prompt_roll: studio.live_roll(score, None, width=600, row_px=2)}

        def switch(name: str) -> dict:
            """Load another checkpoint: its composers and window sliders; the history is cleared."""
            try:
                b = checkpoints.get(name)
            except ComagenError as exc:
                return {model_info: f"**Error:** {exc}"}
            return {model_info: studio.describe_checkpoint(b), history: [],
                    composer: gr.Dropdown(choices=b.composers.names, value="<none>"),
                    **{w: gr.Slider(**s) for w, s in zip(windows, studio.window_sliders(b), strict=True)}}

        preview_io = dict(inputs=[checkpoint, prompt_choice, upload, keep], outputs=[prompt_note, upload, prompt_roll])
        generate_btn.click(generate, [*controls, history, chosen], outputs, api_name="generate", concurrency_id="model")
        continue_btn.click(extend, [*controls, history, chosen], outputs, api_name="continue", concurrency_id="model")
        stop_btn.click(stop, None, None, api_name="stop", concurrency_limit=None)
        undo_btn.click(undo, [checkpoint, history], outputs, api_name="undo", concurrency_id="model")
        upload.upload(preview, **preview_io, api_name=False)
        prompt_choice.change(preview, **preview_io, api_name=False)
        keep.release(preview, **preview_io, api_name=False)
        checkpoint.change(switch, checkpoint, [model_info, history, composer, *windows], api_name=False)
        demo.load(preview, **preview_io, api_name=False)

        examples = [[choice, 8, 20, 1.0, 0, 0.95, 1, "none"] for choice in shipped[:2]]
        if len(shipped) > 2:
            examples += [[shipped[2], 6, 16, 0.9, 40, 0.95, 2, "none"], [shipped[-1], 4, 16, 1.0, 0, 0.95, 1, "AABA"]]
        if examples:
            gr.Examples(examples, [prompt_choice, keep, seconds, temperature, top_k, top_p, variations, form],
                        label="Examples (good settings to start from)")
    return demo


def main() -> None:
    env_checkpoint, maestro_dir = studio.env_settings()
    os.environ.setdefault("GRADIO_TEMP_DIR", str(studio.OUT_ROOT / "gradio"))  # before any component exists
    folders = studio.find_checkpoints(extra=env_checkpoint)
    if not folders:
        raise SystemExit(f"no checkpoint found under {studio.CHECKPOINTS_DIR}; set COMAGEN_CHECKPOINT")
    checkpoints = studio.Checkpoints(folders)
    try:
        studio.OUT_MAX_AGE = studio.out_max_age_from_env()
        default = checkpoints.names[0] if env_checkpoint or "default" not in folders else "default"
        demo = build_demo(checkpoints, default, studio.build_gallery(maestro_dir=maestro_dir))
    except ComagenError as exc:
        raise SystemExit(str(exc)) from None
    studio.OUT_ROOT.mkdir(parents=True, exist_ok=True)
    studio.start_cleaner()  # files expire on an idle server too
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size=4 * studio.UPLOAD_MAX_BYTES, allowed_paths=[str(studio.OUT_ROOT)])


if __name__ == "__main__":
    main()
