"""One exception family for everything a user can get wrong, so callers print one clear line."""


class ComagenError(Exception):
    """Base class: a user-facing problem with a message fit to print as is."""


class MidiError(ComagenError):
    """A file that is not usable as a piano MIDI prompt or training piece."""


class NotMidiError(MidiError):
    """The bytes are not a Standard MIDI File at all."""


class CorruptMidiError(MidiError):
    """The file claims to be MIDI but cannot be parsed."""


class EmptyMidiError(MidiError):
    """The file parses but holds no pitched notes."""


class DrumOnlyError(MidiError):
    """All notes sit on the drum channel: nothing to play on a piano."""


class MidiTooLongError(MidiError):
    """The file is beyond the size or duration the caller accepts."""


class DatasetError(ComagenError):
    """A MAESTRO-style folder is missing, or lacks its CSV index."""


class ConfigError(ComagenError):
    """A config file or key=value override names an unknown key or a bad value."""


class CheckpointError(ComagenError):
    """A checkpoint bundle is missing, truncated or not ours."""


class AudioError(ComagenError):
    """An audio file (WAV or beat-aligned) that is missing, truncated, too long or not ours."""
