"""The values an API call sends to Generate, Continue or Infill, checked by name before the handler runs.

Those events take their inputs raw (gradio's preprocessing off): gradio's own checks name no input
("Value 7 is greater than maximum value 1.") and a value of the wrong type fails with no message at all.
Here each input is checked against its range - a `Settings` field's, with the app's caps on top, the
same range its slider has - and a bad one is one line that names it. Whether a checkpoint, gallery
prompt or composer exists is checked where it is looked up; an upload's path was checked by gradio
(only files uploaded to this server get through).
"""

from __future__ import annotations

import math
from dataclasses import Field

from comagen.errors import ConfigError
from comagen.generation.infill import MAX_CANDIDATES
from comagen.generation.settings import knobs
from studio.limits import LIMITS, PROMPT_MAX_SECONDS, AppLimits

SEED_MAX = 2**63 - 1  # torch's generators take seeds up to here
TEXTS = ("checkpoint", "prompt", "composer")  # looked up by name further on


def setting_range(f: Field, limits: AppLimits) -> tuple[float, float]:
    """A `Settings` field's range on the page: its own, narrowed by the app's caps."""
    meta = f.metadata
    cap = {"seconds": limits.max_seconds, "variations": limits.max_variations}.get(f.name, meta["high"])
    return meta["low"], min(meta["high"], cap)


def number_ranges(limits: AppLimits) -> dict[str, tuple[float, float, bool]]:
    """(lowest, highest, whole numbers only) of every numeric input but the window sliders."""
    out = {f.name: (*setting_range(f, limits), isinstance(f.default, int))
           for f in knobs() if f.metadata["low"] is not None and f.metadata["high"] is not None}
    out.update(seed=(0, SEED_MAX, True), keep_seconds=(1, PROMPT_MAX_SECONDS, False),
               infill_start=(0, math.inf, False), infill_end=(0, math.inf, False),
               infill_candidates=(1, MAX_CANDIDATES, True))
    return out


def checked_number(name: str, value: object, low: float, high: float, whole: bool) -> float:
    """`value` if it is a finite number (a whole one if `whole`) from `low` to `high`; else one line."""
    fits = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and low <= value <= high and (not whole or float(value).is_integer())
    if not fits:
        span = f"of at least {_shown(low)}" if math.isinf(high) else f"from {_shown(low)} to {_shown(high)}"
        raise ConfigError(f"{name} must be {'a whole number' if whole else 'a number'} {span}, not {value!r}")
    return value  # type: ignore[return-value]


def _shown(bound: float) -> str:
    """A range's end as written: whole ones in full (2**63 - 1 is no 9.22337e+18)."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def checked_value(name: str, value: object, limits: AppLimits = LIMITS) -> object:
    """One raw input, checked (an upload becomes its path on the server); unknown names pass as they are."""
    ranges = number_ranges(limits)
    choices = {f.name: f.metadata["choices"] for f in knobs() if f.metadata["choices"]}
    if name in ranges:
        return checked_number(name, value, *ranges[name])
    if name.startswith("window_"):  # each checkpoint has its own cap: the model checks it
        return checked_number(name, value, 1, math.inf, True)
    if name in choices and value not in choices[name]:
        raise ConfigError(f"{name} must be one of {', '.join(choices[name])}, not {value!r}")
    if name == "random_seed" and not isinstance(value, bool):
        raise ConfigError(f"random_seed must be true or false, not {value!r}")
    if name in TEXTS and not (isinstance(value, str) or value is None and name == "prompt"):
        raise ConfigError(f"{name} must be a name (text), not {value!r}")
    if name == "upload" and value is not None:
        return value["path"]  # type: ignore[index]  # gradio's FileData, its path already checked by gradio
    return value


def checked_values(values: dict[str, object], limits: AppLimits = LIMITS) -> dict[str, object]:
    """Every raw input by name, checked; the first bad one is a `ConfigError` naming it."""
    return {name: checked_value(name, value, limits) for name, value in values.items()}
