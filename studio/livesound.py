"""What the page's live sound reads while a take streams: the first variation's new notes so far, as
text in a hidden component (studio/browser/static/live.js plays them).

The text only grows within a take (gradio sends a growing string's new end, not all of it): a first
line `take <id>` (a new id tells the page to start afresh), then one line a note:
`start pitch velocity duration`, seconds from where the continuation starts.
"""

from __future__ import annotations

import uuid

from comagen.bundle.checkpoint import Bundle
from comagen.generation.prompt import Prompt
from comagen.music.notestream import NoteStream


class SoundFeed:
    """The growing text of one take's notes."""

    def __init__(self, bundle: Bundle, prompt: Prompt) -> None:
        self._notes = NoteStream(bundle.tokenizer, prompt.ids, prompt.seconds)
        self.text = f"take {uuid.uuid4().hex[:12]}\n"
        self.count = 0
        self.seconds = 0.0  # where the last note sent starts

    def update(self, ids: list[int]) -> str:
        """The text with the notes among `ids` (the first variation's tokens so far) added."""
        fresh = self._notes.update(ids)
        self.text += "".join(f"{n.start:.4f} {n.pitch} {n.velocity} {n.duration:.4f}\n" for n in fresh)
        self.count += len(fresh)
        self.seconds = fresh[-1].start if fresh else self.seconds
        return self.text
