"""Presentation: piano rolls, attention figures, training curves, audio previews."""
