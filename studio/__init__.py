"""What the Gradio app does, without Gradio: the page's choices (`catalog`), where a piece starts
(`prompts`), the app's caps (`limits`), generation jobs that stream updates (`jobs`), what the page
shows of a piece (`present`), the history's `Take`, and the files the page links to (`outfiles`).

`app.py` only lays out components and forwards events here, so every behaviour a user sees can be
tested without a browser. The modules that build gradio components from these (`controls`,
`result_tabs`) are imported by `app.py` directly, so `import studio` never imports gradio.
"""

from studio.assets import CHECKPOINTS_DIR, PROMPTS_DIR
from studio.catalog import (
    NOTHING,
    Checkpoints,
    GalleryItem,
    build_gallery,
    describe_checkpoint,
    env_checkpoint_folders,
    env_settings,
    find_checkpoints,
    hidden_settings,
    maestro_prompts,
    window_sliders,
)
from studio.jobs import Registry, live_view_from_env, stream
from studio.limits import (
    LIMITS,
    MAX_SCALES,
    MAX_SECONDS,
    MAX_VARIATIONS,
    PROMPT_MAX_SECONDS,
    TOKEN_CAP,
    UPLOAD_MAX_BYTES,
    AppLimits,
    app_request,
)
from studio.outfiles import OUT_MAX_AGE, OUT_ROOT, clean_out_dir, out_max_age_from_env, start_cleaner
from studio.present import (
    LIVE_ROLL_TOKENS,
    LIVE_WIDTH,
    TEXT_TAIL,
    live_piece_roll,
    live_roll,
    render_take,
    stats_markdown,
    token_text,
)
from studio.prompts import continue_prompt, resolve_prompt
from studio.take import Take, played_take

__all__ = [
    "CHECKPOINTS_DIR", "LIMITS", "LIVE_ROLL_TOKENS", "LIVE_WIDTH", "MAX_SCALES", "MAX_SECONDS", "MAX_VARIATIONS",
    "NOTHING", "OUT_MAX_AGE", "OUT_ROOT", "PROMPTS_DIR", "PROMPT_MAX_SECONDS", "TEXT_TAIL", "TOKEN_CAP",
    "UPLOAD_MAX_BYTES", "AppLimits", "Checkpoints", "GalleryItem", "Registry", "Take", "app_request",
    "build_gallery", "clean_out_dir", "continue_prompt", "describe_checkpoint", "env_checkpoint_folders",
    "env_settings", "find_checkpoints",
    "hidden_settings", "live_piece_roll", "live_roll", "live_view_from_env", "maestro_prompts",
    "out_max_age_from_env", "played_take",
    "render_take", "resolve_prompt", "start_cleaner", "stats_markdown", "stream", "token_text", "window_sliders",
]
