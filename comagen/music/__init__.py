"""MIDI in and out, REMI tokens and their legal succession."""
