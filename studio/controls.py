"""The page's generation controls, built from `Settings`' fields (default, range, help) with the
app's caps on top, and read back into `Settings`; and gradio handlers that keep named parameters.

One control per `Settings` field, so a field added there appears on the page without touching `app.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import Field

import gradio as gr

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError
from comagen.generation.settings import Settings, knobs
from studio.catalog import window_sliders
from studio.inputs import checked_values, setting_range
from studio.limits import AppLimits


def setting_control(f: Field, bundle: Bundle, limits: AppLimits) -> gr.components.Component:
    """The control for one `Settings` field, from its default, range and help (the app's caps on top)."""
    meta = f.metadata
    if f.name == "composer":
        return gr.Dropdown(bundle.composers.names, value=f.default, label=meta["help"], filterable=True)
    if meta["choices"]:
        return gr.Dropdown(meta["choices"], value=f.default, label=meta["help"])
    if isinstance(f.default, bool):
        return gr.Checkbox(value=f.default, label=meta["help"])
    if meta["low"] is None or meta["high"] is None:
        return gr.Number(value=f.default, precision=0 if isinstance(f.default, int) else None, label=meta["help"])
    value = bundle.sampling.get(f.name, f.default)  # the checkpoint's tuned sampling defaults, if it has them
    return gr.Slider(*setting_range(f, limits), value=value, step=meta["step"], label=meta["help"])


def settings_controls(bundle: Bundle, group: str,
                      limits: AppLimits) -> dict[str, gr.components.Component]:
    """The controls of one group of settings, in `Settings`' order; windows become one slider per
    possible scale (shown per checkpoint), and the seed is followed by the app's own random-seed box."""
    out: dict[str, gr.components.Component] = {}
    for f in knobs():
        if f.metadata["group"] != group:
            continue
        if f.name == "windows":
            for i, s in enumerate(window_sliders(bundle)):
                out[f"window_{i + 1}"] = gr.Slider(minimum=1, step=1, **{"maximum": 1024, **s})
            continue
        out[f.name] = setting_control(f, bundle, limits)
        if f.name == "seed":
            out["random_seed"] = gr.Checkbox(value=True, label="random seed (the one used is shown)")
    return out


def settings_from_values(values: dict) -> tuple[Settings, bool]:
    """The page's control values (by name) as `Settings`, and whether to draw a random seed."""
    names = {f.name for f in knobs()}
    scales = sorted((int(k.removeprefix("window_")), v) for k, v in values.items() if k.startswith("window_"))
    windows = tuple(int(v) for _, v in scales)
    chosen = {k: v for k, v in values.items() if k in names and k != "windows"}
    ints = {f.name for f in knobs() if isinstance(f.default, int)}
    chosen = {k: int(v or 0) if k in ints else v for k, v in chosen.items()}
    return Settings(**chosen, windows=windows), bool(values.get("random_seed", True))


def named_handler(fn: Callable[..., Iterator[dict]], names: list[str]) -> Callable[..., Iterator[dict]]:
    """`fn(values_by_name, history, variation, request)` as a gradio handler whose parameters carry
    the controls' names, so the HTTP API keeps named parameters however many controls there are. Its
    event takes the values raw (preprocess=False): they are checked here, a bad one refused in one
    line that names it (`studio.inputs`)."""
    def handler(*args: object) -> Iterator[dict]:
        *values, history, variation, request = args
        try:
            checked = checked_values(dict(zip(names, values, strict=True)))
        except ComagenError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        yield from fn(checked, history, variation, request)

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in [*names, "history", "variation"]]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    handler.__doc__, handler.__name__ = fn.__doc__, fn.__name__
    return handler
