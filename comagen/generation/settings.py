"""The one definition of what a user may ask of a generation: each setting's default, range and help.

The CLI's options (`add_cli_options`) and the app's controls are generated from `Settings`' fields,
so a setting added here appears in both without touching either. `Settings.request` turns the
user's values into the engine's `Request`; windows are checked once, by the model.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

from comagen.bundle.checkpoint import Bundle
from comagen.bundle.composers import NO_COMPOSER, Composers
from comagen.errors import ConfigError
from comagen.generation.forms import FORMS, section_bars_for
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling

NO_FORM = "none"
TUNED = tuple(f.name for f in fields(Sampling))  # the sampling settings a checkpoint's sampling.json may tune
TUNABLE = (*TUNED, "windows")  # ... and the windows it streams at (narrower than trained: a faster step)


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,  # noqa: A002
            step: float | None = None, choices: list[str] | None = None, group: str = "main") -> Any:
    """A dataclass field carrying what a control or an option needs: range, step, choices, help."""
    meta = {"help": help, "low": low, "high": high, "step": step, "choices": choices, "group": group}
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """A generation request as the user sees it: plain values, names rather than ids."""

    seconds: float = setting(20.0, "length (seconds of new music)", low=1, high=600, step=1)
    temperature: float = setting(1.0, "temperature (0 = greedy)", low=0, high=2, step=0.05)
    top_k: int = setting(0, "top-k (0 = off)", low=0, high=200, step=1)
    top_p: float = setting(0.95, "top-p (1 = off)", low=0.05, high=1, step=0.01)
    min_p: float = setting(0.0, "min-p (0 = off)", low=0, high=0.5, step=0.01)
    key_strength: float = setting(0.0, "key strength (0 = off; leans pitches toward the prompt's key)",
                                  low=0, high=4, step=0.1)
    register_strength: float = setting(0.0, "register strength (0 = off; leans pitches toward the part of the "
                                       "keyboard the prompt plays in)", low=0, high=4, step=0.1, group="leans")
    dynamics_strength: float = setting(0.0, "dynamics strength (0 = off; leans velocities toward the prompt's "
                                       "recent loudness)", low=0, high=4, step=0.1, group="leans")
    density_strength: float = setting(0.0, "pace strength (0 = off; leans note timing toward the prompt's gaps "
                                      "between onsets: its notes per second, chords and rests)", low=0, high=4,
                                      step=0.1, group="leans")
    pitch_temperature: float = setting(1.0, "pitch temperature factor (x the temperature for which key is struck)",
                                       low=0.1, high=3, step=0.05, group="leans")
    velocity_temperature: float = setting(1.0, "velocity temperature factor (x the temperature for how loud)",
                                          low=0.1, high=3, step=0.05, group="leans")
    duration_temperature: float = setting(1.0, "duration temperature factor (x the temperature for how long)",
                                          low=0.1, high=3, step=0.05, group="leans")
    timing_temperature: float = setting(1.0, "timing temperature factor (x the temperature for when the next "
                                        "note comes)", low=0.1, high=3, step=0.05, group="leans")
    seed: int = setting(0, "seed")
    variations: int = setting(1, "variations", low=1, high=16, step=1)
    composer: str = setting(NO_COMPOSER, "composer (a MAESTRO name, e.g. Chopin)", group="more")
    guidance: float = setting(1.0, "guidance (1 = plain conditioning, >1 = more of the composer)",
                              low=0, high=4, step=0.1, group="more")
    windows: tuple[int, ...] = setting((), "per-scale attention windows (empty = the checkpoint's streaming "
                                       "windows, else as trained)", low=1, step=1, group="more")
    form: str = setting(NO_FORM, "musical form", choices=[NO_FORM, *sorted(FORMS)], group="more")
    section_bars: int = setting(0, "bars per section (0 = from the length: the form spans it)", low=0, high=300,
                                step=1, group="more")

    def __post_init__(self) -> None:
        meta = next(f.metadata for f in fields(self) if f.name == "seconds")  # its own range
        low, high = meta["low"], meta["high"]
        if not low <= float(self.seconds) <= high:
            raise ConfigError(f"length must be between {low:g} and {high:g} seconds, not {self.seconds:g}")

    def request(self, composers: Composers, trained_windows: list[int] | None, *, max_tokens: int,
                seed: int | None = None, runtime: str = "auto", until_seconds: bool = True) -> Request:
        """The engine's request: composer name to id, the trained windows to None, "none" form to None;
        without `until_seconds` it runs to `max_tokens` (or EOS) rather than to `seconds`."""
        windows = [int(w) for w in self.windows] or None
        if windows == list(trained_windows or []):
            windows = None
        form = None if self.form in ("", NO_FORM) else self.form
        return Request(max_tokens=max_tokens, seconds=float(self.seconds) if until_seconds else None,
                       sampling=self.sampling(),
                       seed=int(self.seed) if seed is None else seed, variations=int(self.variations),
                       composer=composers.find(self.composer) if self.composer != NO_COMPOSER else 0,
                       guidance=float(self.guidance), windows=windows,
                       form=form, section_bars=int(self.section_bars) or section_bars_for(form, self.seconds),
                       runtime=runtime)


    def sampling(self) -> Sampling:
        """The sampling part of these settings, for the engine."""
        return Sampling(**{name: type(getattr(Sampling, name))(getattr(self, name)) for name in TUNED})


def tuned_settings(tuned: dict[str, float | list[int]], source: str = "the checkpoint's sampling.json") -> Settings:
    """The defaults for a checkpoint: its sampling.json's values (`Bundle.sampling`, plain numbers by name,
    the windows a list) over the global ones; a name that is no such setting, or a value it refuses, is
    one line naming `source` (the windows are the model's to check: `bundle_settings`)."""
    unknown = sorted(set(tuned) - set(TUNABLE))
    if unknown:
        raise ConfigError(f"{source}: {', '.join(unknown)} is not a sampling setting (expected among "
                          f"{', '.join(TUNABLE)})")
    settings = replace(Settings(), **{k: tuple(int(w) for w in v) if k == "windows" else v for k, v in tuned.items()})
    try:
        settings.sampling()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return settings


def bundle_settings(bundle: Bundle) -> Settings:
    """A bundle's tuned defaults (`tuned_settings`), its errors naming its sampling.json, and its streaming
    windows checked against its model here, where a wrong file is named rather than a request."""
    source = str(bundle.path / "sampling.json")
    settings = tuned_settings(bundle.sampling, source)
    if settings.windows:
        try:
            bundle.model.check_windows(list(settings.windows))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return settings


def knobs() -> list[Field]:
    """The settings' fields, in the order the CLI and the app show them."""
    return list(fields(Settings))


# ------------------------------------------------------------------------------ the CLI's options


def add_cli_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One `--name` option per setting (or per setting named in `only`), with its default and help."""
    for f in knobs():
        if only is not None and f.name not in only:
            continue
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        if f.name == "windows":
            parser.add_argument(flag, default="", help=f"{meta['help']}, e.g. 32,64")
        elif meta["choices"] and f.name == "form":
            parser.add_argument(flag, default=f.default, help=f"{meta['help']}: AABA, ABAB, verse-chorus-bridge, ...")
        elif f.name in TUNED:  # None until resolved: the checkpoint's tuned value when it has one
            parser.add_argument(flag, type=type(f.default), default=None, help=f"{meta['help']} "
                                f"(default: the checkpoint's, else {f.default})")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"{meta['help']} "
                                f"(default {f.default})")


def settings_from_cli(args: argparse.Namespace, defaults: Settings | None = None) -> Settings:
    """The settings a parsed command line asks for; a sampling option (or --windows) not given takes
    the checkpoint's tuned value (`defaults`, from `bundle_settings`), else the global default."""
    defaults = defaults or Settings()
    values = {f.name: getattr(args, f.name, f.default) for f in knobs()}  # a command may offer only some
    values.update({k: getattr(defaults, k) for k in TUNED if values[k] is None})
    values["windows"] = parse_windows(values["windows"]) or defaults.windows
    return Settings(**values)


def parse_windows(text: str | None) -> tuple[int, ...]:
    """'32,64' -> (32, 64); one clear line for anything else."""
    if not text:
        return ()
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"--windows must be comma-separated integers like 32,64, not {text!r}") from None
