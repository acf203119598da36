"""comagen: a Conformer with multi-scale local attention that continues solo-piano MIDI."""

__version__ = "0.1.0"
